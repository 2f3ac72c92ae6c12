"""The shipped contracts and subcontracts: schema comment lines for editors, the committed JSON Schema, and a clean
strict validation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from framework.cli.main import main
from framework.contract.guard import parse_guard
from framework.contract.loader import iter_yaml_files, load_document
from framework.contract.schema import SCHEMA_FILES, language_schemas
from framework.contract.validate import load_contract, validate_paths
from framework.shipped import shipped_dir

CONTRACTS = shipped_dir("contracts")
SUBCONTRACTS = shipped_dir("subcontracts")


def yaml_files(root: Path) -> list[Path]:
    """The YAML files under ``root``; any finding met on the way (an unusable entry) fails."""
    found = list(iter_yaml_files(root))
    paths = [p for p in found if isinstance(p, Path)]
    assert len(paths) == len(found), [f for f in found if not isinstance(f, Path)]
    return paths


SHIPPED = sorted([*yaml_files(CONTRACTS), *yaml_files(SUBCONTRACTS)])
PREFIX = "# yaml-language-server: $schema="


def test_there_are_shipped_files() -> None:
    assert len(yaml_files(CONTRACTS)) >= 4
    assert len(yaml_files(SUBCONTRACTS)) >= 4


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_every_shipped_file_names_its_schema_on_the_first_line(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(PREFIX), f"{path} must start with '{PREFIX}...'"
    target = (path.parent / first.removeprefix(PREFIX).strip()).resolve()
    assert target.is_file(), f"{path}: the schema {target} does not exist"
    data = load_document(path).data
    expected = "contract.schema.json" if "node_type" in data else "subcontract.schema.json"
    assert target.name == expected
    assert target.parent == CONTRACTS.resolve()


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schema_is_current(name: str) -> None:
    committed = (CONTRACTS / name).read_text(encoding="utf-8")
    assert committed == language_schemas()[name], "stale: run 'onex schema'"
    assert json.loads(committed)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_check_passes_on_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--check"]) == 0
    assert capsys.readouterr().out == f"schema in {CONTRACTS} is up to date\n"


def test_shipped_files_validate_clean_in_strict_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["validate", "--strict", str(CONTRACTS), str(SUBCONTRACTS)])
    out = capsys.readouterr().out
    assert out == f"{len(SHIPPED)} files checked: 0 errors, 0 warnings\n"
    assert code == 0


@pytest.mark.parametrize("path", sorted(yaml_files(CONTRACTS)), ids=lambda p: p.stem)
def test_each_shipped_contract_loads_on_its_own(path: Path) -> None:
    contract = load_contract(path)
    assert contract.name == path.stem


# --- the examples of docs/contracts.md ----------------------------------------------------------------------------

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def _yaml_examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", REFERENCE.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_language_reference_has_examples() -> None:
    assert len(_yaml_examples()) >= 8


def _expressions(data: Any) -> list[str]:
    if isinstance(data, dict):
        found = [v for k, v in data.items() if k in ("guard", "when") and isinstance(v, str)]
        return found + [e for v in data.values() for e in _expressions(v)]
    if isinstance(data, list):
        return [e for v in data for e in _expressions(v)]
    return []


@pytest.mark.parametrize("index", range(len(_yaml_examples())))
def test_examples_in_the_language_reference_are_valid(index: int, tmp_path: Path) -> None:
    """Whole contracts and subcontracts validate, their $refs resolved against the shipped files as if they were
    shipped too; fragments load as contract YAML; every guard in them parses."""
    text = _yaml_examples()[index]
    (tmp_path / "subcontracts").mkdir()
    for shipped in SUBCONTRACTS.iterdir():
        (tmp_path / "subcontracts" / shipped.name).symlink_to(shipped)
    folder = "subcontracts/example" if re.match(r"kind: ", text) else "contracts"
    path = tmp_path / folder / "example.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    if "../shared/" in text:  # an example of a reference to a file of the reader's own
        return
    data = load_document(path).data
    for expression in _expressions(data):
        parse_guard(expression)
    if isinstance(data, dict) and ("node_type" in data or "kind" in data):
        report = validate_paths([path], import_implementation=False, cross_check=False)
        assert [f.format() for f in report.findings] == []
