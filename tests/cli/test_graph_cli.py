"""onex graph: FSM of a contract, topology of a directory, Mermaid and DOT; images need Graphviz."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framework.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_fsm_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(REPO / "contracts/node_registry.yaml")]) == 0
    assert capsys.readouterr().out.startswith("stateDiagram-v2")


def test_topology_dot_to_file(tmp_path: Path) -> None:
    out = tmp_path / "topology.dot"
    assert main(["graph", str(REPO / "tests/runtime/contracts"), "--format", "dot", "--output", str(out)]) == 0
    assert '"e_words_counted" -> "n_count_recorder";' in out.read_text()


def test_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fsm.svg"
    code = main(["graph", str(REPO / "contracts/node_registry.yaml"), "--output", str(out)])
    if shutil.which("dot") is None:
        assert code == 1
        assert "apt-get install graphviz" in capsys.readouterr().err
    else:
        assert code == 0 and out.read_text().lstrip().startswith("<")


def test_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "/nonexistent/x.yaml"]) == 2
