#!/usr/bin/env python3
"""Set up (or reuse) the project's virtual environment, then run the bridge or the tests.

    python3 bootstrap.py up      # install into .venv, then run the bridge (`onex up`)
    python3 bootstrap.py test    # install into .venv with the dev tools, then run every check and the tests

Needs only Python 3.11+ and pip. The environment lives in .venv (override with ONEX_VENV) and is reinstalled when
pyproject.toml changes. Extra arguments go to the command that runs: `python3 bootstrap.py test -k loader`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ONEX_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def say(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - say so clearly when run by an older python3
        sys.exit(f"[bootstrap] Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    stamp = VENV / f".onex-installed-{extra or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    say(f"installing {target} (editable) into {VENV}; this takes a minute the first time")
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", target], check=True)
    stamp.write_text(digest)


def run(cmd: list[str]) -> int:
    say("running: " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "up":
        ensure_venv("")
        return run([str(BIN / "onex"), "up", *rest])
    ensure_venv("dev")
    checks = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],
        [str(BIN / "onex"), "schema", "--check"],
        [str(BIN / "onex"), "validate", "--strict"],
        [str(BIN / "onex"), "generate", "--check"],
    ]
    for cmd in checks:
        if run(cmd) != 0:
            say(f"failed: {' '.join(cmd)}")
            return 1
    return run([str(BIN / "python"), "-m", "pytest", *rest])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"[bootstrap] failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})")
    except KeyboardInterrupt:
        sys.exit(130)
