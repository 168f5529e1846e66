"""``python -m tests.support.local_hub``: the tests' local hub, serving a tiny upscaler.

For trying ``upscale`` (or your own model) end to end under ``make run`` with no network: it
serves ``local/tiny-esrgan`` holding ``RealESRGAN_x2.pth``, a tiny checkpoint in Real-ESRGAN
x2's layout made at start, and prints the two settings that point the worker at it. The
output is not a good upscale (the weights are random); everything around it is real.
"""

from __future__ import annotations

import argparse
import time

from bench.sr_weights import realesrgan_x2_pth
from tests.support.hf_hub import FakeHub

REPO = "local/tiny-esrgan"
FILE = "RealESRGAN_x2.pth"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.local_hub", description=__doc__)
    parser.add_argument("--features", type=int, default=16, help="RRDBNet width (16)")
    args = parser.parse_args(argv)
    with FakeHub() as hub:
        hub.add_repo(REPO, {FILE: realesrgan_x2_pth(features=args.features, blocks=1)})
        print("local hub up; in another terminal run:", flush=True)
        print(f"  HF_ENDPOINT={hub.url} UPSCALE_MODEL={REPO}:{FILE} make run", flush=True)
        print("Ctrl-C stops it.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
