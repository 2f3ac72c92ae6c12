"""The store's bulk paths take a constant number of round trips, whatever the number of rows (issue: "bulk paths
batch (executemany or COPY), never one round trip per row").

The observable is the wire: the messages PostgreSQL sends back on the transaction's connection, read by a proxy put
between the connection's socket transport and asyncpg's protocol. Every round trip of the PostgreSQL protocol ends
with one ReadyForQuery message (``Z``) — the answer to a Sync of the extended protocol, or to a simple Query (which
COPY uses) — and the client cannot start its next exchange before reading it; one INSERT per row, even pipelined,
would be one Sync and one ``Z`` per row. CommandComplete (``C``) and DataRow (``D``) messages show what the server
did within those round trips, so each count is checked against the number of rows too.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from framework.adapters.postgres_effects import PostgresEffects, fixed_statement
from framework.adapters.postgres_store import PostgresStore, PostgresTransaction
from framework.contract.spec import PostgresEffect
from framework.events.envelope import OnexEnvelopeV1
from tests.pg import open_store

SIZES = (1, 10, 3000)


class ServerMessages:
    """Counts the messages of the server's byte stream by type: each is a type byte, a big-endian int32 length
    (counting itself, not the type byte) and a body; chunks may split a message anywhere."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._header = b""
        self._skip = 0

    def feed(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view):
            if self._skip:
                step = min(self._skip, len(view) - at)
                self._skip -= step
                at += step
                continue
            take = min(5 - len(self._header), len(view) - at)
            self._header += bytes(view[at : at + take])
            at += take
            if len(self._header) == 5:
                self.counts[chr(self._header[0])] += 1
                self._skip = int.from_bytes(self._header[1:5], "big") - 4
                self._header = b""

    @property
    def round_trips(self) -> int:
        return self.counts["Z"]


class _Tap:
    """A protocol for the transport that shows each chunk to ``messages`` and hands everything to asyncpg's."""

    def __init__(self, inner: Any, messages: ServerMessages) -> None:
        self._inner = inner
        self._messages = messages

    def data_received(self, data: bytes) -> None:
        self._messages.feed(data)
        self._inner.data_received(data)

    def __getattr__(self, name: str) -> Any:  # connection_lost, eof_received, pause_writing, resume_writing
        return getattr(self._inner, name)


@contextmanager
def server_messages(tx: PostgresTransaction) -> Iterator[ServerMessages]:
    """Count what the server sends on ``tx``'s connection inside the block. Entered between statements, so the
    stream is at a message boundary."""
    connection = tx.connection
    transport, protocol = connection._transport, connection._protocol
    assert transport.get_protocol() is protocol, "the connection's transport does not talk to its protocol"
    messages = ServerMessages()
    transport.set_protocol(_Tap(protocol, messages))
    try:
        yield messages
    finally:
        transport.set_protocol(protocol)


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn, min_size=1, max_size=1) as opened:
        yield opened


def event(n: int) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="bulk-test",
        source_node_id="bulk-tests",
        source_service="tests",
        source_version="1.0.0",
        partition_key=f"k{n}",
        payload={"n": n},
    )


def log_row(n: int, batch: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "topic": batch, "event_type": f"e{n}", "direction": "in", "status": "ok"}


async def measure(store: PostgresStore, work: Callable[[PostgresTransaction, int], Awaitable[Any]]) -> dict[int, Any]:
    """For each size: ``work(tx, size)`` once unmeasured (the statement is then prepared and asyncpg has what it
    introspects), then measured; returns the server's message counts by size."""
    counts: dict[int, Any] = {}
    for size in SIZES:
        async with store.transaction() as tx:
            await work(tx, size)
            with server_messages(tx) as messages:
                await work(tx, size)
            counts[size] = dict(messages.counts)
    return counts


async def test_the_message_counter_sees_one_round_trip_per_single_row_statement(store: PostgresStore) -> None:
    """The counter itself: N single-row inserts are N round trips, so the bulk tests below could see a regression."""
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE single (id int PRIMARY KEY)")
        await tx.execute("INSERT INTO single VALUES ($1)", -1)  # prepared and cached
        with server_messages(tx) as messages:
            for n in range(25):
                await tx.execute("INSERT INTO single VALUES ($1)", n)
    assert messages.round_trips == 25 and messages.counts["C"] == 25


async def test_executemany_is_one_round_trip_for_any_number_of_rows(store: PostgresStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE bulk (id bigint GENERATED ALWAYS AS IDENTITY, size int, note text)")

    async def work(tx: PostgresTransaction, size: int) -> None:
        await tx.executemany("INSERT INTO bulk (size, note) VALUES ($1, $2)", [(size, f"n{n}") for n in range(size)])

    counts = await measure(store, work)
    # One Sync after every row's Bind/Execute: one ReadyForQuery; one CommandComplete per row executed.
    assert {size: (c["Z"], c["C"]) for size, c in counts.items()} == {size: (1, size) for size in SIZES}
    async with store.transaction() as tx:
        rows = await tx.fetch("SELECT size, count(*) AS n FROM bulk GROUP BY size ORDER BY size")
    assert [(r["size"], r["n"]) for r in rows] == [(size, 2 * size) for size in SIZES]


async def test_copy_records_is_one_round_trip_for_any_number_of_rows(store: PostgresStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE copied (size int, n int, note text)")
    copied: dict[int, int] = {}

    async def work(tx: PostgresTransaction, size: int) -> None:
        copied[size] = await tx.copy_records("copied", [(size, n, f"n{n}") for n in range(size)], ["size", "n", "note"])

    counts = await measure(store, work)
    # The COPY query, its data and CopyDone, then one CommandComplete ("COPY size") and one ReadyForQuery.
    assert {size: (c["Z"], c["C"], c.get("G")) for size, c in counts.items()} == {size: (1, 1, 1) for size in SIZES}
    assert copied == {size: size for size in SIZES}
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM copied") == 2 * sum(SIZES)


async def test_enqueue_many_is_one_round_trip_for_any_number_of_events(store: PostgresStore) -> None:
    topic = "test.bulk.enqueue"

    async def work(tx: PostgresTransaction, size: int) -> None:
        assert await tx.enqueue_many(topic, [event(n) for n in range(size)]) == size

    counts = await measure(store, work)
    assert {size: (c["Z"], c["C"]) for size, c in counts.items()} == {size: (1, size) for size in SIZES}
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic) == 2 * sum(SIZES)


async def test_an_insert_effects_many_is_one_round_trip_for_any_number_of_rows(store: PostgresStore) -> None:
    columns = ["event_id", "topic", "event_type", "direction", "status"]
    insert = PostgresEffects(store).bind(
        PostgresEffect(name="log_events", adapter="postgres", table="event_logs", operation="insert", columns=columns)
    )

    async def work(tx: PostgresTransaction, size: int) -> None:
        assert await insert.many([log_row(n, f"many-{size}") for n in range(size)]) == size

    counts = await measure(store, work)
    assert {size: (c["Z"], c["C"]) for size, c in counts.items()} == {size: (1, size) for size in SIZES}
    async with store.transaction() as tx:
        rows = await tx.fetch("SELECT topic, count(*) AS n FROM event_logs GROUP BY topic")
    assert {r["topic"]: r["n"] for r in rows} == {f"many-{size}": 2 * size for size in SIZES}


async def test_a_generated_many_rows_statement_is_one_statement_for_any_number_of_rows(store: PostgresStore) -> None:
    spec = PostgresEffect(
        name="record_events",
        adapter="postgres",
        table="event_logs",
        operation="insert",
        columns={"event_id": "uuid", "topic": "text", "event_type": "text", "direction": "text", "status": "text"},
    )
    statement = fixed_statement(spec)
    assert statement is not None and statement.many_sql
    record = PostgresEffects(store).bind(spec)
    stored: dict[int, list[str]] = {}

    async def work(tx: PostgresTransaction, size: int) -> None:
        rows = [log_row(n, f"rows-{size}") for n in range(size)]
        stored[size] = [r["event_type"] for r in await record.run_rows(statement, rows)]

    counts = await measure(store, work)
    # One INSERT ... SELECT FROM unnest(...): one CommandComplete, a DataRow per stored row, one ReadyForQuery.
    assert {size: (c["Z"], c["C"], c["D"]) for size, c in counts.items()} == {size: (1, 1, size) for size in SIZES}
    assert stored == {size: [f"e{n}" for n in range(size)] for size in SIZES}  # returned in the order given
