"""Golden tests: the exact output of ``onex validate`` on one fixture per finding code, the valid fixtures, and the
generated codes doc. ``UPDATE_GOLDEN=1`` rewrites the ``.out`` files and the doc instead of comparing."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from framework.cli.main import main
from framework.contract.codes import CODES
from framework.contract.findings import Level
from framework.contract.spec import Contract, NodeType
from framework.contract.subcontracts import (
    AggregationType,
    CallAction,
    CommandTarget,
    EmitAction,
    EventClass,
    HttpTarget,
    LocalTarget,
    NodeTarget,
    SetAction,
)
from framework.contract.validate import validate_paths
from tests.contract import codes_doc
from tests.contract.codes_doc import INVALID, Fixture, fixtures, read_out

VALID = INVALID.parent / "valid"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
FINDING = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<level>error|warning) (?P<code>[A-Z]\d{3}) .+$")
SUMMARY = re.compile(r"^(?P<files>\d+) files? checked: (?P<errors>\d+) errors?, (?P<warnings>\d+) warnings?$")

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def onex(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """Runs ``onex`` in-process in a directory; returns the exit code and stdout. Imports of handler modules from
    that directory are undone afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def run(cwd: Path, *argv: str) -> tuple[int, str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().out

    yield run
    for name in set(sys.modules) - before:
        if name in ("golden_handlers", "valid_handlers"):
            del sys.modules[name]


def findings_of(stdout: str) -> list[re.Match[str]]:
    return [m for m in map(FINDING.match, stdout.splitlines()) if m is not None]


# --- invalid fixtures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", fixtures(), ids=lambda f: f.name)
def test_invalid_fixture_output(fixture: Fixture, onex: Run) -> None:
    code, stdout = onex(INVALID, "validate", fixture.name)
    actual = f"# exit {code}\n{stdout}"
    if UPDATE:
        fixture.out.write_text(actual, encoding="utf-8")
    assert fixture.out.is_file(), f"{fixture.out.name} is missing: run with UPDATE_GOLDEN=1"
    assert actual == fixture.out.read_text(encoding="utf-8")


def test_fixtures_were_found() -> None:
    assert len(fixtures()) >= len(CODES)


def test_every_code_has_a_fixture_that_triggers_it() -> None:
    by_code: dict[str, list[Fixture]] = {}
    for fixture in fixtures():
        by_code.setdefault(fixture.code, []).append(fixture)
    assert sorted(set(CODES) - set(by_code)) == [], "codes without a golden fixture"
    assert sorted(set(by_code) - set(CODES)) == [], "fixtures named after no registered code"
    for code, cases in by_code.items():
        for fixture in cases:
            _, stdout = read_out(fixture)
            printed = {m["code"] for m in findings_of(stdout)}
            assert code in printed, f"{fixture.name} does not trigger {code}: {stdout}"


def test_every_printed_code_is_registered_with_its_level() -> None:
    seen = 0
    for fixture in fixtures():
        for m in findings_of(read_out(fixture)[1]):
            assert m["code"] in CODES, f"{fixture.name}: unregistered code {m['code']}"
            assert m["level"] == CODES[m["code"]].level.value, f"{fixture.name}: {m.group(0)}"
            seen += 1
    assert seen >= len(CODES)


def test_every_out_line_is_a_finding_or_the_summary_and_the_exit_code_agrees() -> None:
    for fixture in fixtures():
        exit_code, stdout = read_out(fixture)
        lines = stdout.splitlines()
        summary = SUMMARY.match(lines[-1])
        assert summary is not None, f"{fixture.name}: last line is not the summary"
        found = findings_of(stdout)
        assert len(found) == len(lines) - 1, f"{fixture.name}: a line is neither a finding nor the summary"
        errors = sum(m["level"] == "error" for m in found)
        warnings = sum(m["level"] == "warning" for m in found)
        assert (int(summary["errors"]), int(summary["warnings"])) == (errors, warnings)
        assert exit_code == (1 if errors else 0)
        for m in found:  # paths are relative to the golden directory and name the fixture
            assert m["path"].startswith(Path(fixture.name).stem), m.group(0)


def test_no_orphan_out_files() -> None:
    expected = {f.out.name for f in fixtures()}
    assert {p.name for p in INVALID.glob("*.out")} == expected


def test_fixtures_outside_the_working_directory_print_absolute_paths(onex: Run, tmp_path: Path) -> None:
    code, stdout = onex(tmp_path, "validate", str(INVALID / "F004_dead_end.yaml"))
    assert code == 1
    assert stdout.startswith(f"{INVALID / 'F004_dead_end.yaml'}:6:6: error F004 ")


# --- valid fixtures -----------------------------------------------------------------------------------------------


def test_valid_fixtures_are_clean_in_strict_mode(onex: Run) -> None:
    files = [p for p in VALID.rglob("*") if p.suffix in (".yaml", ".yml")]
    code, stdout = onex(VALID, "validate", "--strict", ".")
    assert stdout == f"{len(files)} files checked: 0 errors, 0 warnings\n"
    assert code == 0


def test_valid_fixtures_as_json(onex: Run) -> None:
    code, stdout = onex(VALID, "validate", "--format", "json", "--strict", "contracts", "subcontracts")
    assert code == 0
    assert json.loads(stdout) == {"files": 12, "errors": 0, "warnings": 0, "findings": []}


def _raw(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_valid_fixtures_cover_the_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VALID)
    report = validate_paths([VALID], import_implementation=False)
    assert report.errors == report.warnings == 0
    contracts: list[Contract] = [c for _, c in report.contracts]
    assert {c.node_type for c in contracts} == set(NodeType)
    assert {e.adapter for c in contracts for e in c.effects} == {"postgres", "kafka", "blake3", "http"}
    assert {e.operation for c in contracts for e in c.effects if e.adapter == "postgres"} == {
        "insert",
        "upsert",
        "select",
        "update",
        "delete",
    }
    steps = [s for c in contracts if c.subcontracts.workflow for s in c.subcontracts.workflow.steps]
    assert {type(s.target) for s in steps} == {NodeTarget, CommandTarget, HttpTarget, LocalTarget}
    assert any(s.when for s in steps) and any(s.parallel_group for s in steps) and any(s.retry for s in steps)
    aggregations = [c.subcontracts.aggregation for c in contracts if c.subcontracts.aggregation]
    assert {s.type for a in aggregations for s in a.strategies} == set(AggregationType)
    fsms = [c.subcontracts.fsm for c in contracts if c.subcontracts.fsm]
    actions = [a for f in fsms for s in f.states for a in (*s.on_entry, *s.on_exit)]
    actions += [a for f in fsms for t in f.transitions for a in t.actions]
    assert {type(a) for a in actions} == {EmitAction, SetAction, CallAction}
    assert any(t.guard for f in fsms for t in f.transitions)
    assert any(len(t.from_) > 1 for f in fsms for t in f.transitions)
    events = [e for c in contracts for cat in c.subcontracts.events for e in cat.events]
    assert {e.event_class for e in events} == set(EventClass)
    assert {c.subcontracts.state.backend for c in contracts if c.subcontracts.state} == {"postgres", "memory"}
    assert all(c.subcontracts.retry is not None for c in contracts if c.node_type is NodeType.ORCHESTRATOR)

    # every subcontract kind appears both inline and through $ref, and some $refs carry a #/pointer
    inline: set[str] = set()
    by_ref: set[str] = set()
    pointers: list[str] = []
    for path in sorted((VALID / "contracts").iterdir()):
        data = _raw(path)
        for kind, value in data.get("subcontracts", {}).items():
            for item in value if isinstance(value, list) else [value]:
                (by_ref if "$ref" in item else inline).add(kind)
        pointers += re.findall(r"\$ref: \"?([^\s\"}]+#/[^\s\"}]+)", path.read_text(encoding="utf-8"))
    workflow = (VALID / "subcontracts" / "workflow" / "checkout.yaml").read_text(encoding="utf-8")
    pointers += re.findall(r"\$ref: \"?([^\s\"}]+#/[^\s\"}]+)", workflow)
    kinds = {"fsm", "events", "aggregation", "workflow", "retry", "state"}
    assert by_ref == kinds
    assert {"fsm", "events", "state"} <= inline
    assert _raw(VALID / "subcontracts" / "workflow" / "checkout.yaml")["steps"][3]["retry"]["max_attempts"] == 4
    assert len(pointers) >= 3 and any(".json#/" in p for p in pointers)


def test_values_through_pointer_refs_come_from_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VALID)
    report = validate_paths([VALID / "contracts" / "checkout.yaml"], import_implementation=False, cross_check=False)
    [(doc, contract)] = report.contracts
    assert contract.subcontracts.retry is not None and contract.subcontracts.retry.max_attempts == 10
    assert contract.models["CheckoutRequest"]["required"] == ["order_id", "lines"]
    pos = doc.position(("subcontracts", "retry", "max_attempts"))
    assert (pos.path, pos.line) == ("shared/policies.json", 5)
    assert (VALID / "shared" / "policies.json").resolve() in doc.files


# --- the generated doc --------------------------------------------------------------------------------------------


def test_codes_doc_is_current() -> None:
    text = codes_doc.render()
    if UPDATE:
        codes_doc.write()
    assert codes_doc.DOC_PATH.is_file(), "docs/validation-codes.md is missing: run with UPDATE_GOLDEN=1"
    assert codes_doc.DOC_PATH.read_text(encoding="utf-8") == text, "stale: run with UPDATE_GOLDEN=1"


def test_codes_doc_documents_every_code_with_its_example() -> None:
    text = codes_doc.render()
    for code in CODES.values():
        section = text.split(f"\n### {code.code}\n", 1)[1].split("\n### ", 1)[0]
        assert code.explanation in section
        assert f"({code.level.value})" in section
        assert "```text" in section and f" {code.code} " in section.split("```text", 1)[1]
    assert text.count("\n### ") == len(CODES)
    assert Level.WARNING.value in text and "golden_handlers.py" in text
