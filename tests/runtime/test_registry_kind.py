"""The REGISTRY kind without servers: capability matching, the registration FSM it drives, and its rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.validate import load_contract
from framework.errors import NodeRuleError, TransitionNotAllowed
from framework.runtime.catalog import bind_effects, node_class
from framework.runtime.fsm import FSMDefinition, FSMEngine
from framework.runtime.kinds import RegistryNode
from framework.runtime.kinds.base import NodeRuntime
from framework.runtime.kinds.registry import has_capability
from framework.runtime.metrics import Metrics
from nodes.node_registry.node import NodeBridgeRegistry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def runtime() -> AsyncIterator[NodeRuntime]:
    async with MemoryEventBus() as bus:
        yield NodeRuntime(
            bus=bus, env="dev", instance="t", metrics=Metrics(), bind_effects=bind_effects, fsm_store=MemoryFSMStore()
        )


@pytest.mark.parametrize(
    ("name", "offered"),
    [
        ("stamping", True),
        ("disabled", False),
        ("nothing", False),
        ("metadata-stamp-created", True),
        ("publishes", True),
        ("hash", False),
    ],
)
def test_a_capability_is_a_truthy_key_or_a_member_of_a_list(name: str, offered: bool) -> None:
    capabilities = {"stamping": True, "disabled": False, "nothing": None, "publishes": ["metadata-stamp-created"]}
    assert has_capability(capabilities, name) is offered


async def test_the_registration_fsm_registers_once_expires_and_registers_again() -> None:
    contract = load_contract(ROOT / "contracts" / "node_registry.yaml")
    assert contract.subcontracts.fsm is not None
    engine = FSMEngine(FSMDefinition(contract.subcontracts.fsm), MemoryFSMStore())
    node = await engine.get_or_create("n1")
    who = {"node_id": "n1", "node_type": "EFFECT"}
    first = await node.fire("introspection", who)
    assert [(e.event, e.payload) for e in first.emitted] == [("node-registered", who)]
    assert (await node.fire("introspection", who)).emitted == ()  # a refresh, not a registration
    assert (await node.fire("heartbeat", {"health_status": "degraded"})).state == "unhealthy"
    assert (await node.fire("heartbeat", {"health_status": "healthy"})).state == "healthy"
    assert (await node.fire("ttl_elapsed")).state == "expired"
    with pytest.raises(TransitionNotAllowed):
        await node.fire("heartbeat", {"health_status": "healthy"})
    again = await node.fire("introspection", who)
    assert again.transition == "reregister" and [e.event for e in again.emitted] == ["node-registered"]


async def test_the_shipped_contracts_name_their_node_classes(runtime: NodeRuntime) -> None:
    registry = load_contract(ROOT / "contracts" / "node_registry.yaml")
    assert node_class(registry) is NodeBridgeRegistry


async def test_a_registry_needs_its_registrations_table(runtime: NodeRuntime) -> None:
    contract = load_contract(ROOT / "contracts" / "node_registry.yaml")
    bare = contract.model_copy(update={"subcontracts": contract.subcontracts.model_copy(update={"state": None})})
    with pytest.raises(NodeRuleError, match="needs a postgres state subcontract"):
        RegistryNode(bare, runtime)
