"""Runs every command of docs/getting-started.md, in order, in an empty directory."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs/getting-started.md"
BIN = Path(sys.executable).parent


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_command_of_the_guide(tmp_path: Path) -> None:
    cmds = commands()
    assert cmds[0].startswith("onex new") and any(c.startswith("onex run") for c in cmds)
    env = {**os.environ, "ONEX_DATA_DIR": str(tmp_path / ".onex"), "LOG_LEVEL": "WARNING"}
    for cmd in cmds:
        argv = shlex.split(cmd)
        argv[0] = str(BIN / argv[0])
        if cmd.startswith("onex run"):
            proc = subprocess.Popen(
                argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            assert proc.stdout is not None
            seen = []
            deadline = time.monotonic() + 120
            for line in proc.stdout:
                seen.append(line)
                if line.startswith("onex: hosting") or time.monotonic() > deadline:
                    break
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0 and "onex: hosting 1 node (word_stats)" in "".join(seen), "".join(seen) + rest
            continue
        done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
            argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
