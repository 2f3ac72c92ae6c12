"""onex new: for every kind, the scaffold validates, generates cleanly, passes its test and runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.cli.main import main
from generators import node_module
from tests.pg import migrated_database

BIN = Path(sys.executable).parent
KINDS = ["EFFECT", "COMPUTE", "REDUCER", "ORCHESTRATOR", "REGISTRY"]


def onex(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [str(BIN / "onex"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def run_until_hosting(contract: str, cwd: Path, postgres_dsn: str) -> tuple[int, str]:
    """Start onex run, wait for its 'onex: hosting' line, then SIGINT it; (exit code, output). Kinds that persist
    use the test session's PostgreSQL (a fresh database), as the README's POSTGRES_DSN does."""
    proc = subprocess.Popen(
        [str(BIN / "onex"), "run", contract, "--bus", "memory", "--port", "0", "--data-dir", str(cwd / ".onex")],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOG_LEVEL": "WARNING", "POSTGRES_DSN": postgres_dsn},
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("onex: hosting") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest


@pytest.mark.parametrize("kind", KINDS)
async def test_scaffold_works_straight_away(kind: str, tmp_path: Path, postgres_dsn: str) -> None:
    name = f"my_{kind.lower()}"
    done = onex("new", name, "--kind", kind, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    contract = f"contracts/{name}.yaml"
    for args in (["validate", contract], ["generate", "--check", contract], ["test", contract]):
        done = onex(*args, cwd=tmp_path)
        assert done.returncode == 0, f"onex {' '.join(args)}: {done.stdout}{done.stderr}"
    test = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/nodes/test_{name}.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    async with migrated_database(postgres_dsn, migrate=False) as dsn:
        code, output = run_until_hosting(contract, tmp_path, dsn)
    assert "onex: hosting 1 node" in output, output
    assert code == 0, output


def test_names_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "BadName", "--kind", "effect", "--dir", str(tmp_path)]) == 2
    assert "is not snake_case" in capsys.readouterr().err
    assert main(["new", "taken", "--kind", "compute", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["new", "taken", "--kind", "compute", "--dir", str(tmp_path)]) == 2
    assert "is taken" in capsys.readouterr().err


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_failure_midway_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from framework.cli import new  # noqa: PLC0415 - the module whose steps are made to fail

    project = tmp_path / "project"

    # 1. rendering the generated module fails, after the scaffold's files were rendered
    def broken_render(*args: object, **kwargs: object) -> dict[str, str]:
        raise RuntimeError("generator broke")

    monkeypatch.setattr(node_module, "render", broken_render)
    assert main(["new", "half_done", "--kind", "effect", "--dir", str(project)]) == 3
    assert "generator broke" in capsys.readouterr().err
    assert not project.exists(), _tree(project)
    monkeypatch.undo()

    # 2. moving into place fails after some files were moved; an existing project keeps what it had
    (project / "contracts").mkdir(parents=True)
    (project / "contracts" / "other.yaml").write_text("kept\n", encoding="utf-8")
    before = _tree(project)
    moved: list[Path] = []
    real_place = new._place

    def place_then_break(source: Path, target: Path) -> None:
        if len(moved) == 2:
            raise OSError("disk full")
        real_place(source, target)
        moved.append(target)

    monkeypatch.setattr(new, "_place", place_then_break)
    assert main(["new", "half_done", "--kind", "compute", "--dir", str(project)]) == 3
    assert "disk full" in capsys.readouterr().err
    assert len(moved) == 2
    assert _tree(project) == before
    assert (project / "contracts" / "other.yaml").read_text(encoding="utf-8") == "kept\n"
    monkeypatch.undo()

    # 3. and then it works, writing every file at once
    assert main(["new", "half_done", "--kind", "compute", "--dir", str(project)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {project / 'nodes/half_done/_generated.py'}" in out
    assert {"contracts/half_done.yaml", "nodes/half_done/handler.py", "tests/nodes/test_half_done.py"} <= set(
        _tree(project)
    )
    assert not [p for p in _tree(project) if ".onex-new-" in p]
