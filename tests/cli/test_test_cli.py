"""onex test: runs tests: blocks; a failure names its line and shows a diff, exit 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framework.cli.main import main

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests/runtime/contracts"


def test_e2e_contracts_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(E2E)]) == 0
    out = capsys.readouterr().out
    assert "PASS count_recorder.fingerprints_and_announces" in out and "0 failed" in out


def test_failure_has_line_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("word_counter.yaml", "catalog.yaml"):
        shutil.copy(E2E / name, tmp_path / name)
    contract = tmp_path / "word_counter.yaml"
    contract.write_text(contract.read_text().replace("{doc_id: d1, words: 4}", "{doc_id: d1, words: 5}"))
    line = next(i for i, text in enumerate(contract.read_text().splitlines(), 1) if "name: counts_words" in text)
    assert main(["test", str(contract)]) == 1
    out = capsys.readouterr().out
    assert f"word_counter.yaml:{line}: FAIL word_counter.counts_words" in out
    assert '-      "words": 5' in out and '+      "words": 4' in out
    assert "1 failed" in out


def test_unsubscribed_event_and_missing_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("word_counter.yaml", "catalog.yaml"):
        shutil.copy(E2E / name, tmp_path / name)
    contract = tmp_path / "word_counter.yaml"
    text = contract.read_text().split("tests:")[0]
    contract.write_text(
        text + "tests:\n"
        "  - {name: wrong_event, given: {event: words-counted, payload: {}}}\n"
        "  - name: no_error\n"
        "    given: {event: text-submitted, payload: {doc_id: a, text: b}}\n"
        "    expect: {error: boom}\n"
    )
    # a case that names what the contract does not declare is a contract error (T001): nothing runs
    line = text.count("\n") + 2
    assert main(["test", str(contract)]) == 1
    err = capsys.readouterr().err
    assert f"word_counter.yaml:{line}:33: error T001 test 'wrong_event' delivers 'words-counted'" in err
    assert "fix them first" in err
    contract.write_text(
        contract.read_text().replace("  - {name: wrong_event, given: {event: words-counted, payload: {}}}\n", "")
    )
    assert main(["test", str(contract)]) == 1
    out = capsys.readouterr().out
    assert "expected an error containing 'boom'" in out


def test_the_shipped_contracts_carry_tests_and_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """CI runs every shipped contract's tests: block through `onex test` (its default paths)."""
    assert main(["test"]) == 0
    out = capsys.readouterr().out
    for name in ("metadata_stamping", "bridge_orchestrator", "bridge_reducer", "node_registry"):
        assert f"PASS {name}." in out, f"{name} has no passing test case"
    assert "0 failed" in out
