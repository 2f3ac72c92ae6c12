"""The FSMStore conformance suite: every implementation of the port passes the same tests.

Each implementation is a fixture named in ``STORES``; ``store`` runs every test once per entry. The PostgreSQL store
joins with one line there, ``pytest.param("postgres_fsm_store", marks=pytest.mark.postgres)``, next to its fixture.
Tests use machine names of their own, so a store shared by the session (one database) needs no cleanup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.adapters.postgres_fsm_store import PostgresFSMStore
from framework.errors import TransitionConflict, TransitionError
from framework.ports.fsm_store import FSMStore, TransitionRecord
from tests.pg import open_store


@pytest.fixture
def memory_fsm_store() -> FSMStore:
    return MemoryFSMStore()


@pytest.fixture(scope="module")
async def postgres_fsm_store(postgres_dsn: str) -> AsyncIterator[FSMStore]:
    """One migrated database for the module (tests use machine names of their own), dropped afterwards."""
    async with open_store(postgres_dsn) as store:
        yield PostgresFSMStore(store)


STORES: list[Any] = ["memory_fsm_store", pytest.param("postgres_fsm_store", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> FSMStore:
    return cast(FSMStore, request.getfixturevalue(request.param))


@pytest.fixture
def machine() -> str:
    return f"machine_{uuid.uuid4().hex[:12]}"


_T0 = datetime(2025, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)


def rec(machine: str, sequence: int, *, instance: str = "i-1", **context: Any) -> TransitionRecord:
    return TransitionRecord(
        machine=machine,
        instance_id=instance,
        sequence=sequence,
        transition=f"t{sequence}",
        trigger=f"go{sequence}",
        from_state=f"s{sequence - 1}",
        to_state=f"s{sequence}",
        at=_T0 + timedelta(seconds=sequence),
        context=context,
    )


async def test_an_unknown_instance_has_no_last_record_and_no_history(store: FSMStore, machine: str) -> None:
    assert await store.last(machine, "nobody") is None
    assert await store.history(machine, "nobody") == []


async def test_records_round_trip_and_history_keeps_their_order(store: FSMStore, machine: str) -> None:
    records = [
        rec(machine, 1, count=0),
        rec(machine, 2, count=1, nested={"list": [1, 2.5, "x", None, True], "empty": {}}),
        rec(machine, 3, note="ünïcode"),
    ]
    for record in records:
        await store.record(record)
        assert await store.last(machine, "i-1") == record
    assert await store.history(machine, "i-1") == records


@pytest.mark.parametrize("first", [0, 2, -1])
async def test_the_first_record_must_have_sequence_1(store: FSMStore, machine: str, first: int) -> None:
    with pytest.raises(TransitionConflict, match=f"expected sequence 1, got {first}"):
        await store.record(rec(machine, first))
    assert await store.history(machine, "i-1") == []


async def test_a_gap_is_refused_with_a_message_naming_machine_instance_and_sequences(
    store: FSMStore, machine: str
) -> None:
    await store.record(rec(machine, 1))
    with pytest.raises(TransitionConflict) as info:
        await store.record(rec(machine, 3))
    message = str(info.value)
    assert f"machine '{machine}'" in message
    assert "instance 'i-1'" in message
    assert "expected sequence 2, got 3" in message
    assert isinstance(info.value, TransitionError)
    assert [r.sequence for r in await store.history(machine, "i-1")] == [1]


async def test_a_repeated_sequence_is_refused_and_the_first_writer_wins(store: FSMStore, machine: str) -> None:
    first = rec(machine, 1, writer="a")
    await store.record(first)
    await store.record(rec(machine, 2, writer="a"))
    with pytest.raises(TransitionConflict, match="expected sequence 3, got 2"):
        await store.record(rec(machine, 2, writer="b"))
    with pytest.raises(TransitionConflict, match="expected sequence 3, got 1"):
        await store.record(rec(machine, 1, writer="b"))
    history = await store.history(machine, "i-1")
    assert [(r.sequence, r.context["writer"]) for r in history] == [(1, "a"), (2, "a")]


async def test_of_concurrent_writers_of_one_sequence_exactly_one_succeeds(store: FSMStore, machine: str) -> None:
    results = await asyncio.gather(*(store.record(rec(machine, 1, writer=n)) for n in range(5)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, TransitionConflict)]
    assert len(refused) == 4
    assert results.count(None) == 1
    (winner,) = await store.history(machine, "i-1")
    assert winner.context["writer"] == results.index(None)


async def test_machines_and_instances_are_isolated(store: FSMStore, machine: str) -> None:
    other_machine = f"{machine}_other"
    await store.record(rec(machine, 1, instance="a", who="machine/a"))
    await store.record(rec(machine, 1, instance="b", who="machine/b"))
    await store.record(rec(other_machine, 1, instance="a", who="other/a"))
    await store.record(rec(machine, 2, instance="a", who="machine/a 2"))

    last_a = await store.last(machine, "a")
    last_b = await store.last(machine, "b")
    last_other = await store.last(other_machine, "a")
    assert last_a is not None and last_a.context == {"who": "machine/a 2"}
    assert last_b is not None and last_b.context == {"who": "machine/b"}
    assert last_other is not None and last_other.context == {"who": "other/a"}
    assert [r.sequence for r in await store.history(machine, "a")] == [1, 2]
    assert [r.sequence for r in await store.history(other_machine, "a")] == [1]
    assert await store.last(other_machine, "b") is None


async def test_the_stored_context_is_a_copy(store: FSMStore, machine: str) -> None:
    context: dict[str, Any] = {"items": [1], "meta": {"k": "v"}}
    record = dataclasses.replace(rec(machine, 1), context=context)
    await store.record(record)
    context["items"].append(2)
    context["meta"]["k"] = "changed by the writer"
    context["new"] = True

    read = await store.last(machine, "i-1")
    assert read is not None
    read.context["items"].append(3)
    read.context["meta"]["k"] = "changed by a reader"
    (from_history,) = await store.history(machine, "i-1")
    from_history.context["items"].append(4)

    expected = {"items": [1], "meta": {"k": "v"}}
    again = await store.last(machine, "i-1")
    assert again is not None and again.context == expected
    assert (await store.history(machine, "i-1"))[0].context == expected
