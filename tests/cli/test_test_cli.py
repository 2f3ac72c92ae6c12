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
    assert main(["test", str(contract)]) == 1
    out = capsys.readouterr().out
    assert "is not subscribed by word_counter" in out and "expected an error containing 'boom'" in out
