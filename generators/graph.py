"""Diagrams from contracts, as text: a contract's FSM, and the topology of a set of contracts (which node publishes
and which consumes each event), in Mermaid and in Graphviz DOT. Pure: contracts in, text out."""

from __future__ import annotations

import json
from collections.abc import Sequence

from framework.contract.spec import Contract
from framework.contract.subcontracts import FSM


def _q(text: str) -> str:
    return json.dumps(text)


def _transition_label(trigger: str, guard: str | None) -> str:
    return f"{trigger} [{guard}]" if guard else trigger


def fsm_mermaid(fsm: FSM) -> str:
    lines = ["stateDiagram-v2", f"    %% FSM {fsm.state_machine_name}", f"    [*] --> {fsm.initial_state}"]
    for t in fsm.transitions:
        label = _transition_label(t.trigger, t.guard).replace(":", "#58;")
        for source in t.from_:
            lines.append(f"    {source} --> {t.to}: {label}")
    for s in fsm.states:
        if s.terminal:
            lines.append(f"    {s.name} --> [*]")
    return "\n".join(lines) + "\n"


def fsm_dot(fsm: FSM) -> str:
    lines = [f"digraph {_q(fsm.state_machine_name)} {{", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    lines.append('    "__start" [shape=point, label=""];')
    for s in fsm.states:
        shape = ", peripheries=2" if s.terminal else ""
        lines.append(f"    {_q(s.name)} [label={_q(s.name)}{shape}];")
    lines.append(f'    "__start" -> {_q(fsm.initial_state)};')
    for t in fsm.transitions:
        for source in t.from_:
            lines.append(f"    {_q(source)} -> {_q(t.to)} [label={_q(_transition_label(t.trigger, t.guard))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edges(contracts: Sequence[Contract]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    nodes = [c.name for c in contracts]
    events: list[str] = []
    edges: list[tuple[str, str]] = []
    for c in contracts:
        for e in c.publishes:
            events.append(e)
            edges.append((f"node:{c.name}", f"event:{e}"))
        for s in c.subscriptions:
            events.append(s.event)
            edges.append((f"event:{s.event}", f"node:{c.name}"))
    return nodes, list(dict.fromkeys(events)), list(dict.fromkeys(edges))


def _id(ref: str) -> str:
    kind, _, name = ref.partition(":")
    return ("n_" if kind == "node" else "e_") + name.replace("-", "_")


def topology_mermaid(contracts: Sequence[Contract]) -> str:
    nodes, events, edges = _edges(contracts)
    lines = ["flowchart LR"]
    kinds = {c.name: str(c.node_type) for c in contracts}
    lines += [f'    {_id("node:" + n)}["{n} ({kinds[n]})"]' for n in nodes]
    lines += [f'    {_id("event:" + e)}(["{e}"])' for e in events]
    lines += [f"    {_id(a)} --> {_id(b)}" for a, b in edges]
    return "\n".join(lines) + "\n"


def topology_dot(contracts: Sequence[Contract]) -> str:
    nodes, events, edges = _edges(contracts)
    kinds = {c.name: str(c.node_type) for c in contracts}
    lines = ["digraph topology {", "    rankdir=LR;"]
    lines += [f"    {_q(_id('node:' + n))} [shape=box, label={_q(f'{n} ({kinds[n]})')}];" for n in nodes]
    lines += [f"    {_q(_id('event:' + e))} [shape=ellipse, label={_q(e)}];" for e in events]
    lines += [f"    {_q(_id(a))} -> {_q(_id(b))};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
