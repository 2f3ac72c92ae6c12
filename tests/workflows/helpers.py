"""Building test orchestrators with a workflow of the test's choosing, on an in-memory bus and FSM store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.spec import Contract
from framework.contract.subcontracts import Workflow
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.catalog import bind_effects, node_class
from framework.runtime.kinds.base import Node, NodeRuntime
from framework.runtime.metrics import Metrics
from tests.workflows.flow_nodes import FlowOrchestrator

CONTRACTS = Path(__file__).parent / "contracts"


def with_workflow(contract: Contract, workflow: dict[str, Any]) -> Contract:
    spec = Workflow.model_validate({"kind": "workflow", "workflow_name": "flow", **workflow})
    return contract.model_copy(update={"subcontracts": contract.subcontracts.model_copy(update={"workflow": spec})})


class Published(list[OnexEnvelopeV1]):
    def types(self, workflow_id: str | None = None) -> list[str]:
        return [e.event_type for e in self if workflow_id is None or e.payload.get("workflow_id") == workflow_id]


async def build(workflow: dict[str, Any]) -> tuple[FlowOrchestrator, Published, MemoryEventBus]:
    """A FlowOrchestrator running ``workflow`` beside a Calculator, recording what it publishes."""
    bus = MemoryEventBus()
    await bus.start()
    resources: dict[str, Any] = {}
    runtime = NodeRuntime(
        bus=bus,
        env="test",
        instance="test",
        metrics=Metrics(),
        bind_effects=bind_effects,
        fsm_store=MemoryFSMStore(),
        resources=resources,
    )
    contracts = [
        with_workflow(load_contract(CONTRACTS / "flow.yaml"), workflow),
        load_contract(CONTRACTS / "calculator.yaml"),
    ]
    nodes: list[Node] = [node_class(c)(c, runtime) for c in contracts]
    resources["nodes"] = {n.name: n for n in nodes}
    orchestrator = nodes[0]
    assert isinstance(orchestrator, FlowOrchestrator)
    published = Published()
    original = orchestrator.publish

    async def recording(event: str, payload: dict[str, Any], **kwargs: Any) -> OnexEnvelopeV1:
        envelope = await original(event, payload, **kwargs)
        published.append(envelope)
        return envelope

    orchestrator.publish = recording  # type: ignore[method-assign]
    return orchestrator, published, bus
