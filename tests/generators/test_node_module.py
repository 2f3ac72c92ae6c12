"""Golden-directory tests of the node module generator: a contract in (tests/generators/golden/<case>/contract.yaml,
or a contract of the runtime tests), the expected files out (golden/<case>/expected/<path>.expected).
UPDATE_GOLDEN=1 rewrites them; review the diff."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.contract.validate import load_contract
from generators import node_module

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "word_counter": REPO / "tests/runtime/contracts/word_counter.yaml",
    "count_recorder": REPO / "tests/runtime/contracts/count_recorder.yaml",
    "stamp_ledger": GOLDEN / "stamp_ledger/contract.yaml",
}


def _render(contract_path: Path) -> dict[str, str]:
    contract = load_contract(contract_path)
    source = contract_path.relative_to(REPO).as_posix()
    return node_module.render(contract, source=source, sha256=hashlib.sha256(contract_path.read_bytes()).hexdigest())


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    expected_dir = GOLDEN / case / "expected"
    files = _render(CASES[case])
    if os.environ.get("UPDATE_GOLDEN"):
        for rel, text in files.items():
            target = expected_dir / (rel + ".expected")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    on_disk = {
        p.relative_to(expected_dir).as_posix().removesuffix(".expected"): p.read_text(encoding="utf-8")
        for p in expected_dir.rglob("*.expected")
    }
    assert files == on_disk


def test_render_is_pure_and_stable() -> None:
    assert _render(CASES["count_recorder"]) == _render(CASES["count_recorder"])


def test_header_names_generator_source_hash() -> None:
    text = next(iter(_render(CASES["word_counter"]).values()))
    head = text.splitlines()[:3]
    assert "generators.node_module" in head[0] and "tests/runtime/contracts/word_counter.yaml" in head[0]
    assert hashlib.sha256(CASES["word_counter"].read_bytes()).hexdigest() in head[1]
    assert "DO NOT EDIT" in head[2]


def test_generated_code_passes_ruff_and_mypy(tmp_path: Path) -> None:
    paths = []
    for contract in [*CASES.values(), *sorted((REPO / "contracts").glob("*.yaml"))]:
        for rel, text in _render(contract).items():
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            (target.parent / "__init__.py").write_text("", encoding="utf-8")
            paths.append(str(target))
    (tmp_path / "nodes" / "__init__.py").write_text("", encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    for cmd in (["ruff", "check", *paths], ["ruff", "format", "--check", *paths]):
        done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
            [str(bin_dir / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    env = {**os.environ, "MYPYPATH": str(REPO)}
    mypy = [str(bin_dir / "mypy"), "--strict", "--config-file", str(REPO / "pyproject.toml"), *paths]
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        mypy, cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_effect_base_works_at_run_time(tmp_path: Path) -> None:
    """A handler subclassing the generated base runs under onex test with typed payloads and effects."""
    text = next(iter(_render(CASES["count_recorder"]).values()))
    namespace: dict[str, object] = {}
    exec(compile(text, "count_recorder_generated", "exec"), namespace)
    base = namespace["CountRecorderBase"]
    assert isinstance(base, type)
    with pytest.raises(TypeError, match="handle_words_counted"):
        base(None, None)  # abstract: the typed handler must be implemented


def test_a_handler_that_overrides_a_dispatcher_needs_no_typed_handler() -> None:
    """A hand-written handler may take the envelope itself (override ``on_counted``): then the typed handler that
    dispatcher calls is not required of it; a handler that overrides neither stays abstract."""
    text = next(iter(_render(CASES["count_recorder"]).values()))
    namespace: dict[str, object] = {}
    exec(compile(text, "count_recorder_generated", "exec"), namespace)
    base = namespace["CountRecorderBase"]
    assert isinstance(base, type)

    async def on_counted(self: object, event: object) -> None:
        return None

    raw = type("Raw", (base,), {"on_counted": on_counted})
    assert not getattr(raw, "__abstractmethods__", None)
    lazy = type("Lazy", (base,), {})
    assert set(getattr(lazy, "__abstractmethods__", ())) == {"handle_words_counted"}


def test_sql_is_fixed_only_where_the_contract_fixes_the_shape() -> None:
    text = next(iter(_render(CASES["stamp_ledger"]).values()))
    for effect in ("RECORD", "SAVE", "FIND", "FIND_ANY", "RESIZE", "FORGET", "RECORD_UNTYPED"):
        assert f"\n{effect}_SQL = PostgresStatement(" in text
    assert "RECORD_ANY_SQL" not in text
    assert 'ON CONFLICT ("namespace", "file_hash") DO UPDATE SET' in text
    assert "class FindRow(TypedDict):" in text and "    created_at: datetime\n" in text
    assert "    file_path: str | None\n" in text
