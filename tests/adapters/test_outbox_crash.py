"""The outbox relay killed for real: a relay process (tests/adapters/outbox_relay_child.py) is SIGKILLed after the
broker acknowledged its first batch and before that batch was marked sent. PostgreSQL ends the dead process's
sessions, rolling the batch's transaction back and releasing the leader's advisory lock; a relay started here then
publishes everything, the killed batch a second time, and a consumer deduplicating by event id handles each event
once, in order per key. On the session's PostgreSQL and embedded Kafka; every wait is bounded, nothing is timed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from framework.adapters.embedded_kafka import create_topics
from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.outbox_relay import OUTBOX_LOCK_KEY, OutboxRelay, wait_until_drained
from framework.adapters.postgres_processed_events import PostgresProcessedEvents
from framework.adapters.postgres_store import PostgresStore
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import Message
from tests.adapters.test_outbox import FAST_CONSUMER, TopicReader, assert_in_order_per_key, enqueue
from tests.pg import WAIT_S, open_store, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOTAL, BATCH = 90, 30


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn) as opened:
        yield opened


async def leader_lock_holders(admin: asyncpg.Connection) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
        OUTBOX_LOCK_KEY >> 32,
        OUTBOX_LOCK_KEY & 0xFFFFFFFF,
    )
    return sorted(row["pid"] for row in rows)


async def sessions(admin: asyncpg.Connection, pids: list[int]) -> dict[int, str]:
    rows = await admin.fetch("SELECT pid, state FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids)
    return {row["pid"]: row["state"] for row in rows}


async def test_a_relay_process_killed_mid_batch_loses_nothing_and_consumers_handle_each_event_once(
    store: PostgresStore, kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic()
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    written = await enqueue(store, topic, range(TOTAL))  # keys k0, k1, k2 in turn, one transaction each
    async with store.transaction() as tx:
        rows = await tx.fetch("SELECT id, value FROM outbox WHERE topic = $1 ORDER BY id", topic)
    outbox_ids = [row["id"] for row in rows]
    event_of = {row["id"]: OnexEnvelopeV1.from_json(row["value"]).event_id for row in rows}
    assert [event_of[i] for i in outbox_ids] == [e.event_id for e in written]

    handled: list[OnexEnvelopeV1] = []

    async def handler(message: Message) -> None:
        handled.append(message.envelope)

    group = f"g-{uuid.uuid4().hex[:8]}"
    marker, log = tmp_path / "batch.json", tmp_path / "relay-child.log"
    consumer_bus = KafkaEventBus(kafka_bootstrap, processed_events=PostgresProcessedEvents(store), **FAST_CONSUMER)
    admin = await asyncpg.connect(store.dsn)
    child: asyncio.subprocess.Process | None = None
    try:
        async with KafkaEventBus(kafka_bootstrap) as bus, consumer_bus, TopicReader(kafka_bootstrap, topic) as reader:
            await consumer_bus.subscribe([topic], group=group, handler=handler)
            with log.open("wb") as log_file:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.adapters.outbox_relay_child",
                    store.dsn,
                    kafka_bootstrap,
                    str(marker),
                    str(BATCH),
                    cwd=ROOT,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                )
            running = child
            await wait_for(lambda: marker.exists() or running.returncode is not None, "the child relay's marker")
            assert child.returncode is None, f"the child relay exited early:\n{log.read_text()}"
            report = json.loads(marker.read_text())
            batch_pid, lock_pid = report["batch_backend_pid"], report["lock_backend_pid"]

            # Before the kill: the first batch is on the broker, acknowledged; in the database it is still unsent,
            # locked by the child's open transaction, and the child holds the leader's lock.
            killed_ids = report["ids"]
            assert killed_ids == outbox_ids[:BATCH]
            killed_events = {event_of[i] for i in killed_ids}
            await reader.wait_for_count(BATCH)
            assert {r.envelope.event_id for r in reader.received} == killed_events
            assert (await sessions(admin, [batch_pid]))[batch_pid] == "idle in transaction"
            assert await leader_lock_holders(admin) == [lock_pid]
            async with admin.transaction():
                unlocked = await admin.fetch(
                    "SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED"
                )
            assert [r["id"] for r in unlocked] == outbox_ids[BATCH:]

            child.send_signal(signal.SIGKILL)
            async with asyncio.timeout(WAIT_S):
                assert await child.wait() == -signal.SIGKILL

            async def sessions_ended() -> bool:
                return not await sessions(admin, [batch_pid, lock_pid])

            await wait_for(sessions_ended, "PostgreSQL to end the killed relay's sessions")
            assert await leader_lock_holders(admin) == []
            after_kill = await admin.fetchrow(
                "SELECT count(*) FILTER (WHERE sent_at IS NULL) AS unsent, max(attempts) AS attempts "
                "FROM outbox WHERE topic = $1",
                topic,
            )
            assert (after_kill["unsent"], after_kill["attempts"]) == (TOTAL, 0)  # the batch was rolled back

            async with OutboxRelay(store, bus, batch_size=BATCH) as successor:
                await wait_until_drained(successor, WAIT_S)
                stats = successor.stats()
                successor_lock = await leader_lock_holders(admin)
            await reader.wait_for_count(TOTAL + BATCH)
            # Each key's duplicates precede its later events in its partition, so once the consumer has handled
            # every event it has also been offered every duplicate.
            await wait_for(lambda: len(handled) >= TOTAL, "the consumer to handle every event")
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await admin.close()

    assert stats["role"] == "leader" and stats["sent_total"] == TOTAL and len(successor_lock) == 1

    # The broker got every event; exactly the killed batch twice.
    copies = Counter(r.envelope.event_id for r in reader.received)
    assert len(reader.received) == TOTAL + BATCH
    assert set(copies) == {e.event_id for e in written}
    assert {event_id for event_id, n in copies.items() if n == 2} == killed_events
    assert set(copies.values()) == {1, 2}
    assert_in_order_per_key(reader.received, written)

    # The deduplicating consumer handled each event once, each key in the order written.
    assert sorted(e.payload["n"] for e in handled) == list(range(TOTAL))
    for key in ("k0", "k1", "k2"):
        got = [e.payload["n"] for e in handled if e.partition_key == key]
        assert got == [e.payload["n"] for e in written if e.partition_key == key]

    async with store.transaction() as tx:
        sent = await tx.fetch(
            "SELECT attempts, count(*) AS n FROM outbox WHERE topic = $1 AND sent_at IS NOT NULL GROUP BY attempts",
            topic,
        )
        processed = await tx.fetchval("SELECT count(*) FROM processed_events WHERE consumer_group = $1", group)
    assert [(r["attempts"], r["n"]) for r in sent] == [(1, TOTAL)]  # all sent, the killed attempt left no trace
    assert processed == TOTAL
