"""The node scaffold generator of ``onex new``: a name and a kind → a contract, a handler package and a test.

Pure: ``render(name, kind) -> {relative path: text}``. The generated module (``_generated.py``) is not part of it:
``onex new`` renders it from the scaffolded contract with :mod:`generators.node_module`, as ``onex generate`` does.
"""

from __future__ import annotations

import keyword
import re

from generators.naming import pascal
from generators.templating import fill

KINDS = ("EFFECT", "COMPUTE", "REDUCER", "ORCHESTRATOR", "REGISTRY")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_FSM_KINDS = {"ORCHESTRATOR", "REGISTRY"}


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node, or None."""
    if not NAME_PATTERN.match(name):
        return (
            f"node name {name!r} is not snake_case: lowercase letters and digits in words joined by single '_', "
            "starting with a letter (e.g. order_pricer)"
        )
    if len(name) > 50:
        return f"node name {name!r} is longer than 50 characters"
    if keyword.iskeyword(name):
        return f"node name {name!r} is a Python keyword"
    return None


def files(name: str) -> tuple[str, ...]:
    """The paths ``render`` writes (and ``onex new`` refuses to overwrite)."""
    return (f"contracts/{name}.yaml", f"nodes/{name}", f"tests/nodes/test_{name}.py")


def render(name: str, kind: str) -> dict[str, str]:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    kebab = name.replace("_", "-")
    event_in, event_out = f"{kebab}-requested", f"{kebab}-done"
    class_name = pascal(name) + "Node"
    base = pascal(name) + "Base"
    handler = "handle" if kind == "COMPUTE" else "on_requested"
    effects_block = models_block = subcontracts_block = expect_block = ""
    if kind == "EFFECT":
        effects_block = (
            "effects:\n"
            "  - {name: fingerprint, adapter: blake3, description: BLAKE3 digest of the text}\n"
            f"  - {{name: announce, adapter: kafka, event: {event_out}}}\n"
        )
        expect_block = "      effects:\n        - {effect: fingerprint, args: [hello]}\n        - {effect: announce}\n"
    if kind == "COMPUTE":
        models_block = (
            "models:\n"
            "  Input:\n    type: object\n    required: [item_id, text]\n"
            "    properties: {item_id: {type: string}, text: {type: string}}\n"
            "  Output:\n    type: object\n    required: [item_id, length]\n"
            "    properties: {item_id: {type: string}, length: {type: integer, minimum: 0}}\n"
        )
    if kind == "REDUCER":
        subcontracts_block = (
            f"  aggregation:\n    aggregation_name: {name}\n"
            "    strategies: [{type: NAMESPACE_GROUPING, group_by: item_id}]\n"
            f"  state: {{backend: postgres, table: {name}_state, key: [namespace, aggregation_type, group_key]}}\n"
        )
    if kind == "REGISTRY":
        subcontracts_block = "  state: {backend: postgres, table: node_registrations, key: [node_id], ttl_s: 90}\n"
    if kind == "ORCHESTRATOR":
        subcontracts_block = (
            f"  workflow:\n    workflow_name: {name}\n    steps:\n"
            "      - {name: process, target: {handler: process}}\n"
        )
    if kind in _FSM_KINDS:
        subcontracts_block += fill("scaffold/fsm.yaml.tmpl", fsm_name=name)
        expect_block = "      state: processing\n"
    contract = fill(
        "scaffold/contract.yaml.tmpl",
        name=name,
        kind=kind,
        description=f"The {name} node ({kind}): answers each {event_in} with a {event_out}.",
        class_name=class_name,
        event_in=event_in,
        event_out=event_out,
        handler=handler,
        effects_block=effects_block,
        models_block=models_block,
        subcontracts_block=subcontracts_block,
        expect_block=expect_block,
    )
    if kind == "COMPUTE":
        contract = contract.replace(f"  - {{event: {event_in}, handler: handle}}", f"  - {{event: {event_in}}}")
        contract = contract.replace("\nsubscriptions:", "\ninput_model: Input\noutput_model: Output\nsubscriptions:")
    models = {"EFFECT": ["Done", "Request"], "COMPUTE": ["Input", "Output"]}.get(kind, ["Done"])
    imports = ", ".join(sorted([base, *models]))
    values = {
        "name": name,
        "kind": kind,
        "class_name": class_name,
        "base": base,
        "handler": handler,
        "imports": imports,
    }
    if kind == "EFFECT":
        handler_text = fill("scaffold/handler_effect.py.tmpl", typed=f"handle_{name}_requested", **values)
    elif kind == "COMPUTE":
        handler_text = fill("scaffold/handler_compute.py.tmpl", **values)
        handler_text = handler_text.replace("payload: Request) -> Done |", "payload: Input) -> Output |")
        handler_text = handler_text.replace("return Done(", "return Output(")
    else:
        fsm_code = ""
        if kind in _FSM_KINDS:
            fsm_code = (
                "        if self.fsm is not None:\n"
                "            instance = await self.fsm.get_or_create(payload.item_id)\n"
                '            await self.fire(instance, "start")\n'
            )
        extra = ""
        if kind == "ORCHESTRATOR":
            extra = (
                "\n    async def process(self, request: Any) -> Any:\n"
                '        """The workflow\'s one step (a method of this class: target {handler: process})."""\n'
                "        return request\n"
            )
        handler_text = fill(
            "scaffold/handler_stateful.py.tmpl",
            payload_of=f"{name}_requested_payload",
            publish_fn=f"{name}_done",
            fsm_code=fsm_code,
            extra_methods=extra,
            **values,
        )
    return {
        f"contracts/{name}.yaml": contract,
        f"nodes/{name}/__init__.py": fill("scaffold/init.py.tmpl", name=name),
        f"nodes/{name}/__main__.py": fill("scaffold/main.py.tmpl", name=name),
        f"nodes/{name}/handler.py": handler_text,
        f"tests/nodes/test_{name}.py": fill("scaffold/test_node.py.tmpl", name=name),
    }
