"""The rules of the node kinds, enforced at run time (on the in-memory bus: these are not Kafka tests)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.spec import Contract
from framework.contract.validate import load_contract
from framework.errors import NodeRuleError, PayloadInvalid
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime import payloads
from framework.runtime.catalog import bind_effects, node_class
from framework.runtime.kinds import ComputeNode, EffectNode, Emit
from framework.runtime.kinds.base import NodeRuntime
from framework.runtime.metrics import Metrics
from tests.runtime.e2e_nodes import CountRecorder, WordCounter

CONTRACTS = Path(__file__).parent / "contracts"


@pytest.fixture
async def runtime() -> AsyncIterator[NodeRuntime]:
    async with MemoryEventBus() as bus:
        yield NodeRuntime(
            bus=bus,
            env="dev",
            instance="test",
            metrics=Metrics(),
            bind_effects=bind_effects,
            fsm_store=MemoryFSMStore(),
        )


def contract(name: str, **changes: Any) -> Contract:
    base = load_contract(CONTRACTS / f"{name}.yaml")
    return base.model_copy(update=changes) if changes else base


def event(name: str, payload: dict[str, Any]) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type=name, source_node_id="t", source_service="tests", source_version="1.0.0", payload=payload
    )


def test_node_class_resolves_implementation_of_the_right_kind() -> None:
    assert node_class(contract("word_counter")) is WordCounter
    assert node_class(contract("count_recorder")) is CountRecorder
    wrong = contract("word_counter", implementation="tests.runtime.e2e_nodes:CountRecorder")
    with pytest.raises(NodeRuleError, match=r"must be a subclass of ComputeNode \(the base of COMPUTE nodes\)"):
        node_class(wrong)
    missing = contract("word_counter", implementation="tests.runtime.nowhere:X")
    with pytest.raises(NodeRuleError, match=r"cannot import 'tests.runtime.nowhere'"):
        node_class(missing)


def test_a_base_of_another_kind_is_refused(runtime: NodeRuntime) -> None:
    with pytest.raises(NodeRuleError, match=r"CountRecorder is a EFFECT node; contract 'word_counter' is COMPUTE"):
        CountRecorder(contract("word_counter"), runtime)


def test_a_subscription_without_its_method_is_refused(runtime: NodeRuntime) -> None:
    with pytest.raises(NodeRuleError, match=r"handler 'on_counted', but EffectNode has no such method"):
        EffectNode(contract("count_recorder"), runtime)


async def test_compute_cannot_reach_an_adapter_or_publish(runtime: NodeRuntime) -> None:
    node = WordCounter(contract("word_counter"), runtime)
    with pytest.raises(NodeRuleError, match=r"is COMPUTE: it is pure and cannot reach an adapter"):
        _ = node.effects
    with pytest.raises(NodeRuleError, match=r"return its output from compute\(\) instead of publishing"):
        await node.publish("words-counted", {"doc_id": "d", "words": 1})


async def test_a_node_reaches_the_database_only_when_its_own_contract_uses_one(runtime: NodeRuntime) -> None:
    # A host with a database puts its store in the runtime that all its nodes share; what stands for it here must
    # never be handed to a node whose contract has no postgres effect, postgres state or FSM.
    runtime.resources["store"] = object()
    compute = WordCounter(contract("word_counter"), runtime)
    with pytest.raises(NodeRuleError, match=r"is COMPUTE: it is pure and cannot reach a database"):
        _ = compute.store
    with pytest.raises(NodeRuleError, match=r"is COMPUTE: it is pure and cannot reach a database"):
        compute.transaction()
    effect = CountRecorder(contract("count_recorder"), runtime)  # effects: blake3 and kafka only
    no_database = r"node 'count_recorder' has no database: its contract declares no postgres effect, postgres state"
    with pytest.raises(NodeRuleError, match=no_database):
        _ = effect.store
    with pytest.raises(NodeRuleError, match=no_database):
        effect.transaction()


async def test_compute_validates_input_and_output(runtime: NodeRuntime) -> None:
    node = WordCounter(contract("word_counter"), runtime)
    with pytest.raises(PayloadInvalid, match=r"input of word_counter does not match Text: text: 5 is not of type"):
        await node.handle(event("text-submitted", {"doc_id": "d", "text": 5}))

    class Broken(WordCounter):
        def compute(self, payload: dict[str, Any]) -> dict[str, Any]:
            return {"doc_id": payload["doc_id"], "words": "many"}

    with pytest.raises(PayloadInvalid, match=r"output of word_counter does not match Count: words: 'many'"):
        await Broken(contract("word_counter"), runtime).handle(event("text-submitted", {"doc_id": "d", "text": "x"}))


async def test_validators_are_compiled_when_the_node_is_built_not_per_event(
    runtime: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = WordCounter(contract("word_counter"), runtime)
    compiled: list[str] = []

    def watch(name: str, cls: Any) -> Any:  # the real validator, noted as it is compiled
        def compile_(*args: Any, **kwargs: Any) -> Any:
            compiled.append(name)
            return cls(*args, **kwargs)

        return compile_

    monkeypatch.setattr(payloads, "Draft202012Validator", watch("jsonschema", jsonschema.Draft202012Validator))
    monkeypatch.setattr(
        jsonschema_rs, "Draft202012Validator", watch("jsonschema_rs", jsonschema_rs.Draft202012Validator)
    )
    for i in range(20):
        await node.handle(event("text-submitted", {"doc_id": f"d{i}", "text": "a b"}))
        with pytest.raises(PayloadInvalid):
            await node.handle(event("text-submitted", {"doc_id": f"d{i}", "text": i}))
    assert compiled == []
    WordCounter(contract("word_counter"), runtime)  # building a node compiles them (so the watch does see it)
    assert {"jsonschema", "jsonschema_rs"} <= set(compiled)


async def test_compute_with_several_outputs_must_say_which(runtime: NodeRuntime) -> None:
    data = contract("word_counter").model_dump(by_alias=True)
    data["publishes"] = ["words-counted", "count-recorded"]
    two = Contract.model_validate(copy.deepcopy(data))
    node = WordCounter(two, runtime)
    with pytest.raises(NodeRuleError, match=r"returned one output, but the contract publishes 2 events"):
        await node.handle(event("text-submitted", {"doc_id": "d", "text": "x"}))

    class Two(ComputeNode):
        def compute(self, payload: dict[str, Any]) -> list[Emit]:
            return [Emit("words-counted", {"doc_id": "d", "words": 1})]

    await Two(two, runtime).handle(event("text-submitted", {"doc_id": "d", "text": "x"}))
    assert runtime.metrics.published.value(topic="dev.onex_tests.e2e.evt.words-counted.v1") == 1


async def test_effect_uses_only_declared_effects_and_events(runtime: NodeRuntime) -> None:
    node = CountRecorder(contract("count_recorder"), runtime)
    assert set(node.effects) == {"fingerprint", "announce"}
    with pytest.raises(
        NodeRuleError,
        match=r"used effect 'delete_all', which its contract does not declare; "
        r"declared: announce, fingerprint",
    ):
        _ = node.effects.delete_all
    with pytest.raises(NodeRuleError, match=r"may not publish 'text-submitted': its contract publishes count-recorded"):
        await node.publish("text-submitted", {"doc_id": "d", "text": "x"})
    with pytest.raises(PayloadInvalid, match=r"payload of 'count-recorded' published by count_recorder"):
        await node.publish("count-recorded", {"doc_id": "d"})


async def test_published_events_chain_to_the_event_in_hand(runtime: NodeRuntime) -> None:
    node = CountRecorder(contract("count_recorder"), runtime)
    cause = event("words-counted", {"doc_id": "d", "words": 2})
    out = await node.publish("count-recorded", {"doc_id": "d", "words": 2, "digest": "0" * 64}, cause=cause)
    assert out.correlation_id == cause.event_id and out.causation_id == cause.event_id
    assert out.partition_key == "d"  # the catalog's partition_key field
    assert out.source_node_id == "count_recorder@test" and out.source_version == "1.0.0"
