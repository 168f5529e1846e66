"""``python -m gpu_worker.pipelines``: the catalogue the app reads, and a new-pipeline scaffold.

python -m gpu_worker.pipelines catalogue --output app/pipelines.json
python -m gpu_worker.pipelines catalogue --check app/pipelines.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_worker import pipelines


def render_catalogue() -> str:
    """The catalogue as the file holds it: in declaration order, indented."""
    return json.dumps(pipelines.catalogue(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.pipelines")
    commands = parser.add_subparsers(dest="command", required=True)
    cat = commands.add_parser("catalogue", help="print (or write) every pipeline's declaration")
    cat.add_argument("--output", type=Path, help="write it to this file")
    cat.add_argument("--check", type=Path, help="exit 1 if this file is not current")
    args = parser.parse_args(argv)

    if args.command == "catalogue":
        text = render_catalogue()
        if args.check:
            current = args.check.read_text() if args.check.exists() else ""
            if current != text:
                print(
                    f"{args.check} is not current: run "
                    f"python -m gpu_worker.pipelines catalogue --output {args.check} "
                    "(or make catalogue)",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.output:
            args.output.write_text(text)
            print(f"wrote {len(pipelines.names())} pipelines to {args.output}")
        else:
            sys.stdout.write(text)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
