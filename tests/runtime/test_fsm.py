from __future__ import annotations

import asyncio
import enum
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.guard import GuardEvaluationError
from framework.contract.loader import load_document
from framework.contract.parse import parse_model
from framework.contract.subcontracts import FSM
from framework.errors import (
    ContractError,
    RetriablePortError,
    TransitionConflict,
    TransitionError,
    TransitionNotAllowed,
    UsageError,
)
from framework.ports.fsm_store import TransitionRecord
from framework.runtime.fsm import Emitted, FireResult, FSMDefinition, FSMEngine, FSMInstance
from framework.shipped import shipped_dir

SHIPPED_FSMS = sorted((shipped_dir("subcontracts") / "fsm").glob("*.yaml"))


def compile_fsm(spec: dict[str, Any]) -> FSMDefinition:
    return FSMDefinition(FSM.model_validate(spec))


def engine_for(spec: dict[str, Any] | FSMDefinition, store: MemoryFSMStore | None = None, **options: Any) -> FSMEngine:
    definition = spec if isinstance(spec, FSMDefinition) else compile_fsm(spec)
    return FSMEngine(definition, store if store is not None else MemoryFSMStore(), **options)


def snapshot(instance: FSMInstance) -> tuple[str, dict[str, Any], int]:
    return instance.state, dict(instance.context), instance.sequence


# A machine whose trigger "size" has two guarded candidates and a terminal state.
GATE: dict[str, Any] = {
    "state_machine_name": "gate",
    "initial_state": "idle",
    "states": [{"name": "idle"}, {"name": "small"}, {"name": "large"}, {"name": "done", "terminal": True}],
    "transitions": [
        {"name": "to_small", "from": "idle", "to": "small", "trigger": "size", "guard": "size < 10"},
        {"name": "to_large", "from": "idle", "to": "large", "trigger": "size", "guard": "size >= 10 and size < 100"},
        {"name": "reset", "from": ["small", "large"], "to": "idle", "trigger": "reset"},
        {"name": "finish", "from": ["small", "large"], "to": "done", "trigger": "finish"},
    ],
}


# --- guards ---------------------------------------------------------------------------------------------------------


async def test_a_true_guard_takes_its_transition() -> None:
    instance = await engine_for(GATE).create("g")
    result = await instance.fire("size", {"size": 3})
    assert result == FireResult("idle", "small", "to_small", "size", (), result.context)
    assert snapshot(instance) == ("small", {"size": 3}, 1)


async def test_a_false_guard_passes_on_to_the_next_candidate() -> None:
    instance = await engine_for(GATE).create("g")
    result = await instance.fire("size", {"size": 50})
    assert (result.transition, instance.state) == ("to_large", "large")


@pytest.mark.parametrize("order", [["first", "second"], ["second", "first"]])
async def test_of_several_candidates_whose_guards_hold_the_first_declared_is_taken(order: list[str]) -> None:
    transitions = {
        "first": {"name": "first", "from": "a", "to": "b", "trigger": "go", "guard": "n > 0"},
        "second": {"name": "second", "from": "a", "to": "c", "trigger": "go", "guard": "n > 1"},
    }
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}, {"name": "b", "terminal": True}, {"name": "c", "terminal": True}],
        "transitions": [transitions[name] for name in order],
    }
    instance = await engine_for(spec).create("x")
    result = await instance.fire("go", {"n": 5})
    assert result.transition == order[0]


async def test_an_unguarded_candidate_after_rejecting_guards_is_taken() -> None:
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "transitions": [
            {"name": "guarded", "from": "a", "to": "b", "trigger": "go", "guard": "n > 0"},
            {"name": "fallback", "from": "a", "to": "c", "trigger": "go"},
            {"name": "back", "from": ["b", "c"], "to": "a", "trigger": "back"},
        ],
    }
    instance = await engine_for(spec).create("x")
    assert (await instance.fire("go", {"n": 0})).transition == "fallback"
    await instance.fire("back")
    assert (await instance.fire("go", {"n": 1})).transition == "guarded"


async def test_when_every_guard_rejects_the_trigger_the_error_names_them() -> None:
    instance = await engine_for(GATE).create("g")
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("size", {"size": 500})
    assert str(info.value) == (
        "gate: trigger 'size' is not allowed in state 'idle' (rejected by guards: 'to_small' requires size < 10; "
        "'to_large' requires size >= 10 and size < 100); allowed triggers: size"
    )
    assert (info.value.machine, info.value.state, info.value.trigger, info.value.allowed) == (
        "gate",
        "idle",
        "size",
        ["size"],
    )
    assert snapshot(instance) == ("idle", {}, 0)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {},
            "gate: guard of transition 'to_small' (state 'idle', trigger 'size'): unknown name 'size'; available "
            "names: other (in guard 'size < 10' at column 1)",
        ),
        (
            {"size": "big"},
            "gate: guard of transition 'to_small' (state 'idle', trigger 'size'): cannot compare str < int, expected "
            "two numbers or two strings (in guard 'size < 10' at column 6)",
        ),
    ],
)
async def test_a_guard_that_cannot_be_evaluated_raises_naming_it(context: dict[str, Any], message: str) -> None:
    store = MemoryFSMStore()
    instance = await engine_for(GATE, store).create("g", {"other": 1})
    with pytest.raises(GuardEvaluationError) as info:
        await instance.fire("size", context)
    assert str(info.value) == message
    assert info.value.source == "size < 10"
    assert isinstance(info.value, TransitionError)
    assert snapshot(instance) == ("idle", {"other": 1}, 0)
    assert await store.history("gate", "g") == []


async def test_a_guard_that_is_not_a_bool_is_an_evaluation_error() -> None:
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}, {"name": "b", "terminal": True}],
        "transitions": [{"name": "t", "from": "a", "to": "b", "trigger": "go", "guard": "count"}],
    }
    instance = await engine_for(spec).create("x", {"count": 1})
    with pytest.raises(GuardEvaluationError, match="guard must evaluate to a bool, got int"):
        await instance.fire("go")


# --- invalid and terminal -------------------------------------------------------------------------------------------


async def test_a_trigger_not_allowed_in_the_state_names_state_trigger_and_allowed_triggers() -> None:
    instance = await engine_for(GATE).create("g")
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("finish")
    assert str(info.value) == "gate: trigger 'finish' is not allowed in state 'idle'; allowed triggers: size"
    await instance.fire("size", {"size": 1})
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("size")
    assert str(info.value) == ("gate: trigger 'size' is not allowed in state 'small'; allowed triggers: finish, reset")


async def test_a_trigger_the_machine_does_not_know_says_so() -> None:
    instance = await engine_for(GATE).create("g")
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("opne")
    assert str(info.value) == (
        "gate: trigger 'opne' is not allowed in state 'idle' ('opne' is not a trigger of this machine); "
        "allowed triggers: size"
    )


async def test_a_terminal_state_allows_no_trigger() -> None:
    instance = await engine_for(GATE).create("g")
    assert (instance.allowed_triggers(), instance.terminal) == (["size"], False)
    await instance.fire("size", {"size": 1})
    await instance.fire("finish")
    assert (instance.state, instance.terminal, instance.allowed_triggers()) == ("done", True, [])
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("reset")
    assert str(info.value) == (
        "gate: trigger 'reset' is not allowed in state 'done'; allowed triggers: none (the state is terminal or has "
        "no transitions)"
    )


# --- actions --------------------------------------------------------------------------------------------------------


ORDERED: dict[str, Any] = {
    "state_machine_name": "ordered",
    "initial_state": "a",
    "states": [
        {"name": "a", "on_exit": [{"set": {"log": "log + ['exit a']"}}]},
        {
            "name": "b",
            "terminal": True,
            "on_entry": [
                {"set": {"log": "log + ['enter b']"}},
                {"call": "stamp"},
                {"emit": "arrived", "payload": {"log": "log", "stamped": "stamped"}},
            ],
        },
    ],
    "transitions": [
        {
            "name": "go",
            "from": "a",
            "to": "b",
            "trigger": "go",
            "actions": [
                {"set": {"log": "log + ['transition']"}},
                {"call": "note"},
                {"emit": "went", "payload": {"log": "log", "n": "len(log)", "sum": "n + 1"}},
            ],
        }
    ],
}


class Recorder:
    """note changes the context in place (sync); stamp returns a mapping to merge (async)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def note(self, context: dict[str, Any]) -> None:
        self.seen.append(list(context["log"]))
        context["log"].append("note")

    async def stamp(self, context: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.seen.append(list(context["log"]))
        return {"stamped": len(context["log"])}


async def test_actions_run_exit_then_transition_then_entry_and_emits_are_collected_in_order() -> None:
    recorder = Recorder()
    instance = await engine_for(ORDERED, implementation=recorder).create("o", {"log": [], "n": 1})
    result = await instance.fire("go")
    assert result.emitted == (
        Emitted("went", {"log": ["exit a", "transition", "note"], "n": 3, "sum": 2}),
        Emitted("arrived", {"log": ["exit a", "transition", "note", "enter b"], "stamped": 4}),
    )
    assert recorder.seen == [["exit a", "transition"], ["exit a", "transition", "note", "enter b"]]
    assert dict(result.context) == {"log": ["exit a", "transition", "note", "enter b"], "n": 1, "stamped": 4}
    assert result.context == instance.context


async def test_a_set_action_assigns_its_fields_simultaneously() -> None:
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}],
        "transitions": [
            {"name": "swap", "from": "a", "to": "a", "trigger": "swap", "actions": [{"set": {"x": "y", "y": "x"}}]},
        ],
    }
    instance = await engine_for(spec).create("s", {"x": 1, "y": [2]})
    await instance.fire("swap")
    assert dict(instance.context) == {"x": [2], "y": 1}


async def test_a_value_set_from_another_field_is_a_copy_of_it() -> None:
    class Appender:
        def grow(self, context: dict[str, Any]) -> None:
            context["copy"].append("only in copy")

    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}],
        "transitions": [
            {
                "name": "t",
                "from": "a",
                "to": "a",
                "trigger": "go",
                "actions": [{"set": {"copy": "items"}}, {"call": "grow"}],
            },
        ],
    }
    instance = await engine_for(spec, implementation=Appender()).create("s", {"items": ["x"]})
    await instance.fire("go")
    assert dict(instance.context) == {"items": ["x"], "copy": ["x", "only in copy"]}


async def test_a_self_transition_runs_exit_and_entry_actions() -> None:
    spec = {
        "state_machine_name": "loop",
        "initial_state": "s",
        "states": [
            {
                "name": "s",
                "on_exit": [{"set": {"exits": "exits + 1"}}],
                "on_entry": [{"set": {"entries": "entries + 1"}}, {"emit": "looped", "payload": {"e": "entries"}}],
            }
        ],
        "transitions": [{"name": "again", "from": "s", "to": "s", "trigger": "again"}],
    }
    instance = await engine_for(spec).create("l", {"exits": 0, "entries": 0})
    first = await instance.fire("again")
    second = await instance.fire("again")
    assert (first.previous, first.state, first.emitted) == ("s", "s", (Emitted("looped", {"e": 1}),))
    assert second.emitted == (Emitted("looped", {"e": 2}),)
    assert snapshot(instance) == ("s", {"exits": 2, "entries": 2}, 2)


CALLING: dict[str, Any] = {
    "state_machine_name": "calling",
    "initial_state": "a",
    "states": [{"name": "a"}, {"name": "b"}],
    "transitions": [
        {
            "name": "go",
            "from": "a",
            "to": "b",
            "trigger": "go",
            "actions": [{"set": {"touched": "true"}}, {"call": "work"}],
        },
        {"name": "back", "from": "b", "to": "a", "trigger": "back"},
    ],
}


class Worker:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error

    async def work(self, context: dict[str, Any]) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


async def test_a_call_action_needs_its_method_when_the_engine_is_built() -> None:
    definition = compile_fsm(CALLING)
    with pytest.raises(UsageError) as info:
        FSMEngine(definition, MemoryFSMStore())
    assert str(info.value) == "FSM 'calling' has call actions of 'work', but no implementation was given"
    with pytest.raises(UsageError) as info:
        FSMEngine(definition, MemoryFSMStore(), implementation=object())
    assert str(info.value) == "FSM 'calling' has call actions of 'work', but object has no method 'work'"


async def test_a_call_action_whose_method_disappeared_names_it() -> None:
    class Fickle:
        pass

    implementation = Fickle()
    implementation.work = lambda context: None  # type: ignore[attr-defined]
    instance = await engine_for(CALLING, implementation=implementation).create("c")
    del implementation.work  # type: ignore[attr-defined]
    with pytest.raises(TransitionError) as info:
        await instance.fire("go")
    assert str(info.value) == "calling: call action 2 of actions of transition 'go': Fickle has no method 'work'"
    assert snapshot(instance) == ("a", {}, 0)


async def test_a_failing_call_action_leaves_the_instance_unchanged_and_records_nothing() -> None:
    store, records = MemoryFSMStore(), list[TransitionRecord]()
    worker = Worker(error=RuntimeError("boom"))
    engine = engine_for(CALLING, store, implementation=worker, on_transition=records.append)
    instance = await engine.create("c", {"keep": 1})
    with pytest.raises(RuntimeError, match="boom") as info:
        await instance.fire("go", {"merged": True})
    assert info.value.__notes__ == ["in calling: call action 2 of actions of transition 'go', calling work()"]
    assert snapshot(instance) == ("a", {"keep": 1}, 0)
    assert (await store.history("calling", "c"), records) == ([], [])

    worker.error = None
    result = await instance.fire("go")
    assert (result.state, instance.sequence, dict(instance.context)) == ("b", 1, {"keep": 1, "touched": True})


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (42, "calling: call action 2 of actions of transition 'go': work() returned int; expected a mapping"),
        (
            {"tags": {"a"}},
            "calling: call action 2 of actions of transition 'go': after work(), 'context.tags' is a set",
        ),
        ({"when": float("nan")}, "'context.when' is nan (JSON has no NaN or infinity)"),
        ({"nested": {1: "x"}}, "'context.nested' is a mapping with the int key 1"),
    ],
)
async def test_a_call_action_must_return_a_mapping_of_json_values(result: Any, error: str) -> None:
    instance = await engine_for(CALLING, implementation=Worker(result)).create("c")
    with pytest.raises(TransitionError) as info:
        await instance.fire("go")
    assert error in str(info.value)
    assert snapshot(instance) == ("a", {}, 0)


async def test_a_call_action_result_is_merged_and_json_normalised() -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    worker = Worker({"colour": Colour.RED, "pair": (1, 2), "count": True})
    instance = await engine_for(CALLING, implementation=worker).create("c")
    await instance.fire("go")
    context = instance.context
    assert dict(context) == {"touched": True, "colour": "red", "pair": [1, 2], "count": True}
    assert type(context["colour"]) is str


async def test_a_set_action_producing_a_non_json_value_is_refused() -> None:
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}],
        "transitions": [{"name": "t", "from": "a", "to": "a", "trigger": "go", "actions": [{"set": {"x": "n * 10"}}]}],
    }
    instance = await engine_for(spec).create("s", {"n": 1e308})
    with pytest.raises(TransitionError) as info:
        await instance.fire("go")
    assert str(info.value).startswith("m: set action 1 of actions of transition 't': 'context.x' is inf")
    assert snapshot(instance) == ("a", {"n": 1e308}, 0)


async def test_a_failing_action_expression_names_the_action_and_field() -> None:
    spec = {
        "state_machine_name": "m",
        "initial_state": "a",
        "states": [{"name": "a"}, {"name": "b", "on_entry": [{"emit": "e", "payload": {"total": "a + b"}}]}],
        "transitions": [{"name": "t", "from": "a", "to": "b", "trigger": "go"}],
    }
    instance = await engine_for(spec).create("s", {"a": 1, "b": "2"})
    with pytest.raises(GuardEvaluationError) as info:
        await instance.fire("go")
    assert str(info.value) == (
        "m: expression for 'total' of emit action 1 of on_entry of state 'b': cannot apply '+' to int and str, "
        "expected two numbers, two strings or two lists (in guard 'a + b' at column 3)"
    )
    assert snapshot(instance) == ("a", {"a": 1, "b": "2"}, 0)


# --- context --------------------------------------------------------------------------------------------------------


async def test_the_context_is_a_read_only_snapshot_and_inputs_are_copied() -> None:
    given: dict[str, Any] = {"items": [1]}
    instance = await engine_for(GATE).create("g", given)
    given["items"].append("changed by the caller")
    update: dict[str, Any] = {"size": 1, "more": {"k": "v"}}
    result = await instance.fire("size", update)
    update["more"]["k"] = "changed by the caller"
    view = instance.context
    with pytest.raises(TypeError):
        view["items"] = []  # type: ignore[index]
    view["items"].append("changed through the view")
    result.context["more"]["k"] = "changed through the result"
    assert dict(instance.context) == {"items": [1], "size": 1, "more": {"k": "v"}}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"when": object()}, "'context.when' is a object"),
        ({"deep": [{"set": {1}}]}, "'context.deep[0].set' is a set"),
        ({1: "x"}, "'context' is a mapping with the int key 1"),
    ],
)
async def test_a_context_that_is_not_json_is_a_usage_error(context: dict[Any, Any], message: str) -> None:
    engine = engine_for(GATE)
    with pytest.raises(UsageError, match=re.escape(f"initial context of 'g': {message}")):
        await engine.create("g", context)
    instance = await engine.create("g")
    with pytest.raises(UsageError, match=re.escape(f"context given to fire('size'): {message}")):
        await instance.fire("size", context)
    assert snapshot(instance) == ("idle", {}, 0)


async def test_a_self_referencing_context_is_refused_not_a_recursion_error() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(UsageError, match="nested deeper than 64 levels"):
        await engine_for(GATE).create("g", {"loop": loop})


# --- store, restore, concurrency, callback --------------------------------------------------------------------------


class FlakyStore(MemoryFSMStore):
    """Fails on demand, and yields to the loop inside record, as a database would."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def record(self, record: TransitionRecord) -> None:
        await asyncio.sleep(0)
        if self.failing:
            raise RetriablePortError("database unavailable")
        await super().record(record)


async def test_every_transition_is_recorded_with_a_json_copy_of_the_context() -> None:
    store = MemoryFSMStore()
    instance = await engine_for(GATE, store).create("g", {"who": "me"})
    await instance.fire("size", {"size": 20})
    await instance.fire("reset")
    history = await store.history("gate", "g")
    assert [(r.sequence, r.transition, r.trigger, r.from_state, r.to_state) for r in history] == [
        (1, "to_large", "size", "idle", "large"),
        (2, "reset", "reset", "large", "idle"),
    ]
    assert [r.context for r in history] == [{"who": "me", "size": 20}] * 2
    assert history[0].at <= history[1].at and history[0].at.tzinfo is not None


async def test_a_failing_store_leaves_the_instance_unchanged() -> None:
    store, records = FlakyStore(), list[TransitionRecord]()
    instance = await engine_for(ORDERED, store, implementation=Recorder(), on_transition=records.append).create(
        "o", {"log": [], "n": 1}
    )
    store.failing = True
    with pytest.raises(RetriablePortError):
        await instance.fire("go")
    assert snapshot(instance) == ("a", {"log": [], "n": 1}, 0)
    assert records == []
    store.failing = False
    result = await instance.fire("go")
    assert (result.state, instance.sequence, [r.sequence for r in records]) == ("b", 1, [1])


async def test_restore_after_a_restart_continues_where_the_instance_was() -> None:
    store = MemoryFSMStore()
    definition = compile_fsm(GATE)
    before = await FSMEngine(definition, store).create("g", {"who": "me"})
    await before.fire("size", {"size": 2})

    after_restart = FSMEngine(compile_fsm(GATE), store)
    restored = await after_restart.restore("g")
    assert restored is not None
    assert snapshot(restored) == snapshot(before) == ("small", {"who": "me", "size": 2}, 1)
    result = await restored.fire("reset")
    assert (result.state, restored.sequence) == ("idle", 2)
    assert [r.sequence for r in await store.history("gate", "g")] == [1, 2]


async def test_restore_of_an_instance_that_never_fired_finds_nothing_and_get_or_create_covers_both() -> None:
    engine = engine_for(GATE)
    assert await engine.restore("g") is None
    created = await engine.get_or_create("g", {"who": "first"})
    assert snapshot(created) == ("idle", {"who": "first"}, 0)
    await created.fire("size", {"size": 1})
    again = await engine.get_or_create("g", {"who": "ignored when restoring"})
    assert snapshot(again) == ("small", {"who": "first", "size": 1}, 1)


async def test_create_refuses_an_instance_the_store_already_has() -> None:
    engine = engine_for(GATE)
    await (await engine.create("g")).fire("size", {"size": 1})
    with pytest.raises(UsageError) as info:
        await engine.create("g")
    assert str(info.value) == (
        "FSM 'gate' instance 'g' already exists (state 'small', sequence 1); use restore() or get_or_create()"
    )


async def test_restore_refuses_a_state_the_fsm_does_not_declare() -> None:
    store = MemoryFSMStore()
    await (await engine_for(GATE, store).create("g")).fire("size", {"size": 50})
    changed = {"state_machine_name": "gate", "initial_state": "idle", "states": [{"name": "idle"}]}
    with pytest.raises(TransitionError) as info:
        await engine_for(changed, store).restore("g")
    assert str(info.value) == (
        "cannot restore FSM 'gate' instance 'g' (sequence 1): its recorded state 'large' is not a state of this FSM; "
        "declared: idle"
    )


async def test_two_engines_firing_from_the_same_sequence_conflict_and_the_loser_is_unchanged() -> None:
    store = MemoryFSMStore()
    await (await engine_for(GATE, store).create("g")).fire("size", {"size": 1})
    first = await engine_for(GATE, store).restore("g")
    second = await engine_for(GATE, store).restore("g")
    assert first is not None and second is not None
    await first.fire("finish")
    with pytest.raises(TransitionConflict, match="expected sequence 3, got 2"):
        await second.fire("reset", {"late": True})
    assert snapshot(second) == ("small", {"size": 1}, 1)
    assert [r.transition for r in await store.history("gate", "g")] == ["to_small", "finish"]


async def test_concurrent_fires_on_one_instance_are_serialised() -> None:
    # Without the per-instance lock both fires would start from 'idle' and the loser would fail in the store with
    # TransitionConflict; serialised, it sees the new state and is refused by the machine.
    instance = await engine_for(GATE, FlakyStore()).create("g")
    results = await asyncio.gather(
        instance.fire("size", {"size": 1}), instance.fire("size", {"size": 2}), return_exceptions=True
    )
    assert isinstance(results[0], FireResult) and results[0].state == "small"
    assert isinstance(results[1], TransitionNotAllowed)
    assert snapshot(instance) == ("small", {"size": 1}, 1)


async def test_on_transition_is_called_with_each_record_after_it_is_stored() -> None:
    store = MemoryFSMStore()
    seen: list[tuple[int, int]] = []

    def count(record: TransitionRecord) -> None:
        seen.append((record.sequence, len(store._logs[(record.machine, record.instance_id)])))

    instance = await engine_for(GATE, store, on_transition=count).create("g")
    await instance.fire("size", {"size": 1})
    with pytest.raises(TransitionNotAllowed):
        await instance.fire("size")
    await instance.fire("reset")
    assert seen == [(1, 1), (2, 2)]


async def test_a_failing_on_transition_callback_is_logged_and_the_transition_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(record: TransitionRecord) -> None:
        raise ValueError("metrics are down")

    instance = await engine_for(GATE, on_transition=broken).create("g")
    with caplog.at_level(logging.ERROR, logger="framework.runtime.fsm"):
        result = await instance.fire("size", {"size": 1})
    assert (result.state, instance.sequence) == ("small", 1)
    (entry,) = caplog.records
    assert entry.getMessage() == "on_transition callback failed for gate/g sequence 1; the transition stands"
    assert entry.exc_info is not None and isinstance(entry.exc_info[1], ValueError)


# --- definitions ----------------------------------------------------------------------------------------------------


def _broken(**changes: Any) -> dict[str, Any]:
    return {**GATE, **changes}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_broken(initial_state="nowhere"), "initial_state 'nowhere' is not a declared state; declared: done, idle, "),
        (
            _broken(transitions=[{"name": "t", "from": "idle", "to": "gone", "trigger": "go"}]),
            "transition 't' enters undeclared state 'gone'",
        ),
        (
            _broken(transitions=[{"name": "t", "from": ["idle", "void"], "to": "idle", "trigger": "go"}]),
            "transition 't' leaves undeclared state 'void'",
        ),
        (
            _broken(transitions=[{"name": "t", "from": "done", "to": "idle", "trigger": "go"}]),
            "transition 't' leaves terminal state 'done'",
        ),
        (_broken(states=[{"name": "idle"}, {"name": "idle"}]), "state 'idle' is declared twice"),
        (
            _broken(transitions=[{"name": "t", "from": "idle", "to": "idle", "trigger": t} for t in ("a", "b")]),
            "transition 't' is declared twice",
        ),
        (
            _broken(transitions=[{"name": "t", "from": "idle", "to": "idle", "trigger": "go", "guard": "a &&"}]),
            "FSM 'gate': guard of transition 't' does not parse: '&&' is not supported",
        ),
        (
            _broken(states=[{"name": "idle", "on_entry": [{"set": {"x": "1 +"}}]}], transitions=[]),
            "expression for 'x' of set action 1 of on_entry of state 'idle' does not parse",
        ),
    ],
)
def test_a_definition_that_cannot_run_is_a_contract_error(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError) as info:
        compile_fsm(spec)
    assert message in str(info.value)


# --- the shipped FSMs -----------------------------------------------------------------------------------------------


def load_shipped(name: str) -> FSMDefinition:
    path = shipped_dir("subcontracts") / "fsm" / f"{name}.yaml"
    fsm, findings = parse_model(load_document(path), FSM)
    assert findings == [] and fsm is not None
    return FSMDefinition(fsm)


def test_there_are_shipped_fsms() -> None:
    assert {p.stem for p in SHIPPED_FSMS} >= {"workflow", "aggregation", "registration"}


@pytest.mark.parametrize("path", SHIPPED_FSMS, ids=lambda p: Path(p).stem)
def test_every_shipped_fsm_compiles(path: Path) -> None:
    definition = load_shipped(path.stem)
    assert definition.initial_state in definition.states


async def test_workflow_runs_to_completed_when_every_step_is_done_or_skipped() -> None:
    store = MemoryFSMStore()
    engine = FSMEngine(load_shipped("workflow"), store)
    instance = await engine.create("wf-1", {"workflow_id": "wf-1", "workflow_name": "stamping"})
    started = await instance.fire("start")
    assert (started.state, started.emitted) == (
        "processing",
        (Emitted("stamp-workflow-started", {"workflow_id": "wf-1", "workflow_name": "stamping"}),),
    )
    done = await instance.fire("succeed", {"completed_steps": 2, "skipped_steps": 1, "total_steps": 3})
    assert (done.previous, done.state, done.transition) == ("processing", "completed", "finish")
    assert done.emitted == (Emitted("stamp-workflow-completed", {"workflow_id": "wf-1", "completed_steps": 2}),)
    assert (instance.terminal, instance.allowed_triggers()) == (True, [])
    assert [r.transition for r in await store.history("workflow", "wf-1")] == ["start", "finish"]


async def test_workflow_refuses_succeed_while_steps_remain_then_fails() -> None:
    instance = await FSMEngine(load_shipped("workflow"), MemoryFSMStore()).create(
        "wf-2", {"workflow_id": "wf-2", "workflow_name": "stamping"}
    )
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("succeed")
    assert str(info.value) == (
        "workflow: trigger 'succeed' is not allowed in state 'pending'; allowed triggers: fail, start"
    )
    await instance.fire("start")
    with pytest.raises(TransitionNotAllowed) as info:
        await instance.fire("succeed", {"completed_steps": 1, "skipped_steps": 1, "total_steps": 3})
    assert str(info.value) == (
        "workflow: trigger 'succeed' is not allowed in state 'processing' (rejected by guards: 'finish' requires "
        "completed_steps + skipped_steps == total_steps); allowed triggers: fail, succeed"
    )
    failed = await instance.fire("fail", {"error": "step hash timed out"})
    assert (failed.state, failed.emitted) == (
        "failed",
        (Emitted("stamp-workflow-failed", {"workflow_id": "wf-2", "error": "step hash timed out"}),),
    )


async def test_workflow_fails_from_pending_and_needs_an_error_to_report() -> None:
    instance = await FSMEngine(load_shipped("workflow"), MemoryFSMStore()).create("wf-3", {"workflow_id": "wf-3"})
    expected = "expression for 'error' of emit action 1 of on_entry of state 'failed': unknown name 'error'"
    with pytest.raises(GuardEvaluationError, match=expected):
        await instance.fire("fail")
    assert snapshot(instance) == ("pending", {"workflow_id": "wf-3"}, 0)
    result = await instance.fire("fail", {"error": "cancelled"})
    assert (result.previous, result.state, instance.terminal) == ("pending", "failed", True)
    assert result.emitted == (Emitted("stamp-workflow-failed", {"workflow_id": "wf-3", "error": "cancelled"}),)


async def test_aggregation_collects_flushes_retries_and_gives_up() -> None:
    batch = {"item_count": 0, "batch_id": "b1", "aggregation_type": "NAMESPACE_GROUPING"}
    instance = await FSMEngine(load_shipped("aggregation"), MemoryFSMStore()).create("batch-1", batch)
    started = await instance.fire("item")
    assert started.transition == "first_item"
    assert started.emitted == (
        Emitted("aggregation-started", {"batch_id": "b1", "aggregation_type": "NAMESPACE_GROUPING"}),
    )
    assert (await instance.fire("item", {"item_count": 2})).transition == "more_items"
    assert instance.state == "aggregating"
    with pytest.raises(TransitionNotAllowed, match="'flush' requires item_count > 0"):
        await instance.fire("flush", {"item_count": 0})
    assert (await instance.fire("flush")).state == "persisting"
    retried = await instance.fire("persist_failed", {"attempts": 1, "max_attempts": 3})
    assert (retried.transition, retried.state) == ("retry_persist", "persisting")
    persisted = await instance.fire("persisted", {"group_count": 1, "duration_ms": 5.0})
    completed = {**batch, "items": 2, "groups": 1, "duration_ms": 5.0}
    del completed["item_count"]
    assert (persisted.state, persisted.emitted) == ("idle", (Emitted("aggregation-completed", completed),))

    await instance.fire("item")
    await instance.fire("flush", {"item_count": 1})
    gave_up = await instance.fire("persist_failed", {"attempts": 3})
    assert (gave_up.transition, gave_up.state, instance.terminal) == ("give_up", "failed", True)
    assert instance.sequence == 8


async def test_registration_follows_heartbeats_and_expires() -> None:
    instance = await FSMEngine(load_shipped("registration"), MemoryFSMStore()).create("node-1")
    who = {"node_id": "node-1", "node_type": "EFFECT"}
    registered = await instance.fire("introspection", who)
    assert (registered.state, registered.emitted) == ("healthy", (Emitted("node-registered", who),))
    with pytest.raises(GuardEvaluationError, match=r"guard of transition 'heartbeat_ok'.*unknown name 'health_status'"):
        await instance.fire("heartbeat")
    assert (await instance.fire("heartbeat", {"health_status": "degraded"})).transition == "heartbeat_bad"
    assert instance.state == "unhealthy"
    # Introspection says nothing of health: an unhealthy node stays unhealthy until a healthy heartbeat.
    assert (await instance.fire("introspection")).state == "unhealthy"
    assert (await instance.fire("heartbeat", {"health_status": "healthy"})).state == "healthy"
    assert (await instance.fire("introspection")).transition == "refresh"
    expired = await instance.fire("ttl_elapsed")
    # Not terminal: an expired node that introspects again registers anew.
    assert (expired.state, instance.terminal, instance.allowed_triggers()) == ("expired", False, ["introspection"])
