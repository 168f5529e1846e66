"""The environment ``make run`` built, shared with commands typed in a second terminal.

``python -m app.devserver`` writes the settings it gave its processes (a private Redis, the
local endpoint's URL and key, the database, storage, secrets) to ``instance/devserver.env``
(mode 600) and deletes it when it stops. ``flask --app app ...`` and ``python -m deploy ...``
load it in development while that devserver runs, so ``jobs submit``, ``admin health`` and
``doctor`` reach the running stack with no extra setup. A variable already set in the
environment wins; ``APP_ENV`` other than development turns the loading off. It lives in
``deploy`` because both the app and the deploy CLI read it (``deploy`` imports nothing from
``app``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILE_NAME = "devserver.env"
PID_NAME = "DEVSERVER_PID"
OVERRIDE = "DEVSERVER_ENV_FILE"  # another instance folder's file (tests, --instance-dir)


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(OVERRIDE) or REPO / "instance" / FILE_NAME)


def write(path: Path, values: Mapping[str, str], pid: int) -> None:
    """Write ``values`` for second-terminal commands, readable only by this user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `make run` while it runs (deleted when it stops): the environment of",
        "# its stack, loaded by `flask --app app ...` and `python -m deploy ...` in development.",
        f"{PID_NAME}={pid}",
    ]
    lines += [f"{name}={value}" for name, value in sorted(values.items()) if "\n" not in value]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    path.chmod(0o600)


def read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def _alive(pid_text: str | None) -> bool:
    if not pid_text or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Fill ``environ`` (default ``os.environ``) from a running devserver's file; return
    the file's path, or None when there is none, its devserver has stopped, or ``APP_ENV``
    says this is not development."""
    env = os.environ if environ is None else environ
    if env.get("APP_ENV", "development") != "development":
        return None
    path = default_path(env)
    try:
        values = read(path)
    except OSError:
        return None
    if not _alive(values.pop(PID_NAME, None)):
        return None
    for name, value in values.items():
        env.setdefault(name, value)
    return path


def remove(path: Path, pid: int) -> None:
    """Delete the file if it is still this devserver's."""
    try:
        if read(path).get(PID_NAME) == str(pid):
            path.unlink()
    except OSError:
        pass
