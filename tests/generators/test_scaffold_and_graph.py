"""The pure scaffold and graph generators."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.contract.validate import load_contract
from generators import graph, scaffold

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["Bad", "a__b", "x-y", "class", "1x", "a_"])
def test_bad_names(name: str) -> None:
    assert scaffold.name_problem(name)


def test_render_lists_the_scaffold() -> None:
    files = scaffold.render("order_pricer", "EFFECT")
    assert set(files) == {
        "contracts/order_pricer.yaml",
        "nodes/order_pricer/__init__.py",
        "nodes/order_pricer/__main__.py",
        "nodes/order_pricer/handler.py",
        "tests/nodes/test_order_pricer.py",
    }


def test_fsm_graphs() -> None:
    fsm = load_contract(REPO / "contracts/node_registry.yaml").subcontracts.fsm
    assert fsm is not None
    mermaid = graph.fsm_mermaid(fsm)
    assert mermaid.startswith("stateDiagram-v2\n") and "[*] --> unregistered" in mermaid
    dot = graph.fsm_dot(fsm)
    assert dot.startswith('digraph "registration" {') and '"unregistered" -> "healthy"' in dot


def test_topology_graphs() -> None:
    contracts = [load_contract(p) for p in sorted((REPO / "tests/runtime/contracts").glob("*er.yaml"))]
    mermaid = graph.topology_mermaid(contracts)
    assert "n_word_counter --> e_words_counted" in mermaid and "e_words_counted --> n_count_recorder" in mermaid
    assert '"n_word_counter" -> "e_words_counted";' in graph.topology_dot(contracts)
