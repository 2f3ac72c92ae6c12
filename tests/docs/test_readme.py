"""The README's promise: from nothing to a stamped file, a validated contract and a tested node of one's own, with
its commands alone. Runs the bash blocks of those sections, line by line, in an empty directory beside this venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent


def bash_lines(section: str) -> list[str]:
    """The command lines of the first bash block under the heading ``## section``."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S)
    assert block is not None, f"no bash block under '## {section}'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run(lines: list[str], cwd: Path) -> str:
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    done = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)  # noqa: PLW1510
    assert done.returncode == 0, f"{script}\n--- exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def test_stamp_a_file_and_validate_the_contracts(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(VENV)
    for name in ("contracts", "subcontracts"):
        (tmp_path / name).symlink_to(ROOT / name)
    out = run(bash_lines("Stamp a file"), tmp_path)
    assert (tmp_path / "hello.txt").read_text(encoding="utf-8").startswith("# ONEX:uid=")
    assert "hello.txt" in out
    validate = [line for line in bash_lines("Validate a contract") if "my_node.yaml" not in line]
    assert validate, "the README shows how to validate the shipped contracts"
    assert "0 errors" in run(validate, tmp_path)


def test_write_a_node(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".venv").symlink_to(VENV)
    lines = [line.replace("/tmp/my_project", str(tmp_path / "my_project")) for line in bash_lines("Write a node")]
    out = run(lines, tmp_path / "repo")
    assert (tmp_path / "my_project" / "contracts" / "word_stats.yaml").is_file()
    assert re.search(r"1 test case: 1 passed, 0 failed", out), out
