"""Building test orchestrators with a workflow of the test's choosing, on an in-memory bus and FSM store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.adapters.postgres_fsm_store import PostgresFSMStore
from framework.contract.spec import Contract
from framework.contract.subcontracts import Workflow
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import Store
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


async def build(
    workflow: dict[str, Any],
    *,
    store: Store | None = None,
    instance: str = "test",
    bus: MemoryEventBus | None = None,
    lease_s: float = 30.0,
    record: bool = True,
) -> tuple[FlowOrchestrator, Published, MemoryEventBus]:
    """A FlowOrchestrator running ``workflow`` beside a Calculator, recording what it publishes (unless ``record``
    is false: a benchmark must not keep every envelope). With ``store`` (a PostgreSQL store), its workflows, steps
    and FSM transitions are kept there, as under a host with a database."""
    if bus is None:
        bus = MemoryEventBus()
        await bus.start()
    resources: dict[str, Any] = {} if store is None else {"store": store}
    runtime = NodeRuntime(
        bus=bus,
        env="test",
        instance=instance,
        metrics=Metrics(),
        bind_effects=bind_effects,
        fsm_store=MemoryFSMStore() if store is None else PostgresFSMStore(store),
        resources=resources,
        workflow_lease_s=lease_s,
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
    if not record:
        return orchestrator, published, bus
    original = orchestrator.publish

    async def recording(event: str, payload: dict[str, Any], **kwargs: Any) -> OnexEnvelopeV1:
        envelope = await original(event, payload, **kwargs)
        published.append(envelope)
        return envelope

    orchestrator.publish = recording  # type: ignore[method-assign]
    return orchestrator, published, bus
