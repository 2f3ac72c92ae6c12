"""The transactional outbox and its relay, on real PostgreSQL and the real (embedded Tansu) Kafka broker.

- committed events arrive, in order per key, with their key and headers; rolled-back ones never do;
- a broker stopped and started again (a dedicated one, on a fixed port): every event arrives, in order per key;
- a relay killed between publishing a batch and marking it sent, then restarted: nothing is lost, the duplicates
  are exactly that batch, and a consumer with PostgresProcessedEvents handles each event once;
- one leader per database, a standby taking over; wake-up by NOTIFY; poison rows; pruning.

Tests about the relay's own logic (leadership, NOTIFY, poison rows) publish through the in-process memory bus, a
real EventBus implementation, to keep Kafka group joins (≈3 s each on Tansu) for the tests that need a broker.
Every wait is bounded; no assertion is about speed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from framework.adapters.embedded_kafka import EmbeddedKafka, create_topics
from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.outbox_relay import OutboxRelay, publish_or_enqueue, wait_until_drained
from framework.adapters.postgres_processed_events import PostgresProcessedEvents
from framework.adapters.postgres_store import PostgresStore
from framework.errors import UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import Message, PublishManyError
from tests.pg import WAIT_S, open_store, wait_for

FAST_CONSUMER: dict[str, Any] = {"heartbeat_interval_ms": 200, "session_timeout_ms": 6000, "poll_timeout_ms": 100}


def envelope(n: int, key: str, **payload: Any) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="outbox-test",
        source_node_id="outbox-tests",
        source_service="tests",
        source_version="1.0.0",
        partition_key=key,
        payload={"n": n, **payload},
    )


async def enqueue(store: PostgresStore, topic: str, numbers: range, keys: int = 3) -> list[OnexEnvelopeV1]:
    """One transaction per event, as handlers would write them; keys ``k0``.. round robin."""
    events = [envelope(n, f"k{n % keys}") for n in numbers]
    for event in events:
        async with store.transaction() as tx:
            await tx.enqueue(topic, event, headers=(("trace", f"t{event.payload['n']}".encode()),))
    return events


@dataclass(frozen=True)
class Received:
    key: bytes | None
    headers: dict[str, bytes]
    envelope: OnexEnvelopeV1


class TopicReader:
    """Reads every partition of one topic from the start, without a consumer group (no join to wait for)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.received: list[Received] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        await self._consumer.topics()  # fetches the cluster's metadata, so the topic's partitions are known
        partitions = self._consumer.partitions_for_topic(self.topic)
        assert partitions, f"topic {self.topic} does not exist on {self.bootstrap}; create it first"
        self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    self.received.append(
                        Received(record.key, dict(record.headers), OnexEnvelopeV1.from_json(record.value))
                    )

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def wait_for_count(self, count: int) -> None:
        await wait_for(lambda: len(self.received) >= count, f"{count} messages on {self.topic}")


def first_occurrences(received: list[Received]) -> list[Received]:
    seen: set[uuid.UUID] = set()
    unique = []
    for item in received:
        if item.envelope.event_id not in seen:
            seen.add(item.envelope.event_id)
            unique.append(item)
    return unique


def assert_in_order_per_key(received: list[Received], expected: list[OnexEnvelopeV1]) -> None:
    """Every expected event arrived, and each key's events in the order they were written (first occurrences)."""
    unique = first_occurrences(received)
    assert {r.envelope.event_id for r in unique} == {e.event_id for e in expected}
    for key in {e.partition_key for e in expected}:
        got = [r.envelope.payload["n"] for r in unique if r.envelope.partition_key == key]
        want = [e.payload["n"] for e in expected if e.partition_key == key]
        assert got == want, f"key {key}: arrived in order {got}, written in order {want}"


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn) as opened:
        yield opened


@pytest.fixture
async def memory_bus() -> AsyncIterator[MemoryEventBus]:
    async with MemoryEventBus() as bus:
        yield bus


def memory_numbers(bus: MemoryEventBus, topic: str) -> list[int]:
    return [OnexEnvelopeV1.from_json(r.value or b"").payload["n"] for r in bus.broker.records(topic)]


# --- through Kafka ----------------------------------------------------------------------------------------------


async def test_committed_events_arrive_in_order_per_key_with_key_and_headers_and_rolled_back_ones_never(
    store: PostgresStore, kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    async with KafkaEventBus(kafka_bootstrap) as bus, TopicReader(kafka_bootstrap, topic) as reader:
        written = await enqueue(store, topic, range(60))
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.enqueue(topic, envelope(-1, "k0"))
                raise RuntimeError("the handler failed: its event must not be published")
        relay = OutboxRelay(store, bus, batch_size=25)
        async with relay:
            await reader.wait_for_count(60)
            await wait_until_drained(relay, WAIT_S)
            stats = relay.stats()
        await asyncio.sleep(0.3)  # a rolled-back event would have been published with the others
    assert len(reader.received) == 60
    assert_in_order_per_key(reader.received, written)
    for item in reader.received:
        assert item.key == item.envelope.partition_key.encode()  # type: ignore[union-attr]
        assert item.headers["trace"] == f"t{item.envelope.payload['n']}".encode()
        assert item.headers["ce_id"] == str(item.envelope.event_id).encode()
    assert stats["role"] == "leader" and stats["sent_total"] == 60 and stats["pending"] == 0
    assert stats["batches"] >= 3  # 60 rows in batches of at most 25
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL OR attempts <> 1") == 0


class GatedBus:
    """A real bus behind a gate. Tansu keeps topics in memory only, and a restarted Tansu *acknowledges* records for a
    topic it no longer has (a producer with cached metadata sends them; they are never stored), so while the test
    swaps brokers it holds publishes at the gate until the new broker has the topic again. A real Kafka keeps its
    topics across a restart and needs no gate."""

    def __init__(self, bus: KafkaEventBus) -> None:
        self.bus = bus
        self.open = asyncio.Event()
        self.open.set()

    async def publish(self, topic: str, envelope: OnexEnvelopeV1, **kwargs: Any) -> None:
        await self.open.wait()
        await self.bus.publish(topic, envelope, **kwargs)

    async def publish_many(self, topic: str, envelopes: list[OnexEnvelopeV1], **kwargs: Any) -> None:
        # The relay sends a batch's lone keys this way: without it, a batch with one failed for ever.
        await self.open.wait()
        await self.bus.publish_many(topic, envelopes, **kwargs)


async def test_the_outbox_keeps_events_while_the_broker_is_down_and_delivers_them_after_a_restart(
    store: PostgresStore, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    brokers = [EmbeddedKafka()]
    await brokers[0].start()
    port, bootstrap = brokers[0].port, brokers[0].bootstrap_servers
    # publish_timeout_s above the producer's request timeout: a publish fails by the producer's own timeout, so no
    # abandoned record stays queued in the producer to reach the next broker behind the gate's back.
    bus = KafkaEventBus(bootstrap, request_timeout_ms=1000)
    gate = GatedBus(bus)
    relay = OutboxRelay(
        store, cast(Any, gate), batch_size=20, initial_backoff_s=0.05, max_backoff_s=0.5, publish_timeout_s=2.0
    )
    try:
        await brokers[0].create_topics([topic], partitions=3)
        await bus.start()
        await relay.start()
        async with TopicReader(bootstrap, topic) as before:
            first = await enqueue(store, topic, range(30))
            await before.wait_for_count(30)
            await wait_until_drained(relay, WAIT_S)
        await brokers[0].stop()

        second = await enqueue(store, topic, range(30, 60))
        await wait_for(lambda: relay.stats()["failures"] >= 1, "the relay to fail against the stopped broker")
        gate.open.clear()
        failures = relay.stats()["failures"]
        # Once the attempt that may have passed the gate has failed too, every publish waits at the gate.
        await wait_for(lambda: relay.stats()["failures"] > failures, "an attempt to fail at the gate")
        assert await relay.pending_count() == 30  # nothing was marked sent without an acknowledgement

        brokers.append(EmbeddedKafka(port=port))  # memory-only: the new broker starts empty
        await brokers[1].start()
        await brokers[1].create_topics([topic], partitions=3)
        gate.open.set()
        async with TopicReader(bootstrap, topic) as after:
            await wait_for(
                lambda: {r.envelope.event_id for r in after.received} >= {e.event_id for e in second},
                "the events written while the broker was down",
            )
            await wait_until_drained(relay, WAIT_S)
    finally:
        gate.open.set()
        await relay.stop()
        await bus.stop()
        for broker in reversed(brokers):
            await broker.stop()
    assert_in_order_per_key(before.received + after.received, first + second)
    async with store.transaction() as tx:
        retried = await tx.fetchval("SELECT count(*) FROM outbox WHERE attempts > 1 AND last_error IS NOT NULL")
    assert retried >= 1  # failed attempts were recorded on the rows


async def test_a_relay_killed_between_publish_and_commit_loses_nothing_and_consumers_dedupe_its_batch(
    store: PostgresStore, kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    written = await enqueue(store, topic, range(90))
    in_flight: list[int] = []

    async def kill_after_publishing(ids: list[int]) -> None:
        in_flight.extend(ids)
        raise asyncio.CancelledError  # the relay's task dies here: published, not yet marked sent

    handled: list[OnexEnvelopeV1] = []

    async def handler(message: Message) -> None:
        handled.append(message.envelope)

    consumer_bus = KafkaEventBus(kafka_bootstrap, processed_events=PostgresProcessedEvents(store), **FAST_CONSUMER)
    async with KafkaEventBus(kafka_bootstrap) as bus, consumer_bus, TopicReader(kafka_bootstrap, topic) as reader:
        await consumer_bus.subscribe([topic], group=f"g-{uuid.uuid4().hex[:8]}", handler=handler)
        doomed = OutboxRelay(store, bus, batch_size=30)
        doomed._before_commit = kill_after_publishing
        await doomed.start()
        await wait_for(lambda: doomed._task is None or doomed._task.done(), "the relay to die mid-batch")
        await doomed.stop()
        assert len(in_flight) == 30
        assert await doomed.pending_count() == 90  # the killed batch was rolled back: still unsent

        async with OutboxRelay(store, bus, batch_size=30) as successor:
            await wait_until_drained(successor, WAIT_S)
        await reader.wait_for_count(90 + 30)
        await wait_for(lambda: len(handled) >= 90, "the consumer to handle every event")
        await asyncio.sleep(0.3)  # a duplicate that slipped through would be handled now

    counts: dict[uuid.UUID, int] = {}
    for item in reader.received:
        counts[item.envelope.event_id] = counts.get(item.envelope.event_id, 0) + 1
    duplicated = {event_id for event_id, count in counts.items() if count > 1}
    assert len(reader.received) == 120 and len(duplicated) == 30
    assert duplicated == {e.event_id for e in written[:30]}  # exactly the batch in flight
    assert sorted(e.payload["n"] for e in handled) == list(range(90))  # each handled once
    assert_in_order_per_key(reader.received, written)


# --- the relay's own logic, through the memory bus ---------------------------------------------------------------


async def test_one_relay_leads_per_database_and_a_standby_takes_over(
    store: PostgresStore, memory_bus: MemoryEventBus
) -> None:
    topic = "test.outbox.leadership"
    first = OutboxRelay(store, memory_bus, leader_retry_s=0.05)
    second = OutboxRelay(store, memory_bus, leader_retry_s=0.05)
    try:
        await first.start()
        await wait_for(lambda: first.is_leader, "the first relay to lead")
        await second.start()
        await wait_for(lambda: second._lock_connection is not None, "the second relay to try for the lock")
        await asyncio.sleep(0.2)  # several of its retries
        assert not second.is_leader and second.stats()["role"] == "standby"
        await enqueue(store, topic, range(5))
        await wait_until_drained(first, WAIT_S)

        await first.stop()
        await wait_for(lambda: second.is_leader, "the standby to take over")
        await enqueue(store, topic, range(5, 10))
        await wait_until_drained(second, WAIT_S)

        # The leader's lock connection is cut (as if its process died): it stops leading, and leads again.
        pid = await second._lock_connection.fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(store.dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await wait_for(lambda: second.stats()["leader_changes"] == 2, "the leader to win the lock again")
        await enqueue(store, topic, range(10, 15))
        await wait_until_drained(second, WAIT_S)
    finally:
        await first.stop()
        await second.stop()
    assert sorted(memory_numbers(memory_bus, topic)) == list(range(15))  # once each
    assert first.stats()["sent_total"] == 5 and second.stats()["sent_total"] == 10


async def test_a_notification_wakes_the_relay_before_its_next_poll(
    store: PostgresStore, memory_bus: MemoryEventBus
) -> None:
    topic = "test.outbox.notify"
    # A poll far longer than the wait below: only the NOTIFY sent by enqueue can deliver the event in time.
    async with OutboxRelay(store, memory_bus, poll_interval_s=600.0) as relay:
        await wait_for(lambda: relay.is_leader, "the relay to lead")
        await wait_for(lambda: relay.stats()["pending"] == 0, "the relay's first (empty) batch")
        await enqueue(store, topic, range(3))
        await wait_for(lambda: len(memory_bus.broker.records(topic)) == 3, "the notified relay to publish", 20.0)


async def test_a_row_that_is_not_an_envelope_goes_to_dead_letters_and_the_rest_flows(
    store: PostgresStore, memory_bus: MemoryEventBus
) -> None:
    topic = "test.outbox.poison"
    await enqueue(store, topic, range(2))
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3)", topic, b"k0", b"not json")
    await enqueue(store, topic, range(2, 4))
    async with OutboxRelay(store, memory_bus) as relay:
        await wait_until_drained(relay, WAIT_S)
        stats = relay.stats()
    assert sorted(memory_numbers(memory_bus, topic)) == [0, 1, 2, 3]
    assert stats["dead_lettered"] == 1
    async with store.transaction() as tx:
        (dead,) = await tx.fetch("SELECT topic, original_topic, value, error FROM dead_letters")
        reason = await tx.fetchval("SELECT last_error FROM outbox WHERE value = $1", b"not json")
    assert dead["original_topic"] == topic and dead["topic"] == f"{topic}.dlt" and dead["value"] == b"not json"
    assert "not a valid OnexEnvelopeV1" in dead["error"]
    assert reason.startswith("not publishable, copied to dead_letters")


async def test_prune_deletes_only_sent_rows_older_than_asked(store: PostgresStore, memory_bus: MemoryEventBus) -> None:
    topic = "test.outbox.prune"
    await enqueue(store, topic, range(4))
    async with OutboxRelay(store, memory_bus) as relay:
        await wait_until_drained(relay, WAIT_S)
        await enqueue(store, topic, range(4, 6))  # may or may not be sent by now
        async with store.transaction() as tx:
            await tx.execute("UPDATE outbox SET sent_at = now() - interval '2 days' WHERE id <= 3")
        assert await relay.prune(timedelta(days=1)) == 3
        with pytest.raises(UsageError, match="older_than must be a positive timedelta"):
            await relay.prune(timedelta(0))
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM outbox") == 3


async def test_publish_or_enqueue_goes_through_the_outbox_inside_a_transaction(
    store: PostgresStore, memory_bus: MemoryEventBus
) -> None:
    topic = "test.outbox.either"
    await publish_or_enqueue(memory_bus, topic, envelope(1, "k"), store=store)
    assert memory_numbers(memory_bus, topic) == [1]  # no transaction: published at once
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await publish_or_enqueue(memory_bus, topic, envelope(2, "k"), store=store)
            raise RuntimeError("rolled back")
    async with store.transaction():
        await publish_or_enqueue(memory_bus, topic, envelope(3, "k"), store=store)
        assert memory_numbers(memory_bus, topic) == [1]  # enqueued, not published
    async with OutboxRelay(store, memory_bus) as relay:
        await wait_until_drained(relay, WAIT_S)
    assert memory_numbers(memory_bus, topic) == [1, 3]


def test_bad_relay_settings_are_refused() -> None:
    store = PostgresStore("postgresql://u@127.0.0.1:5432/db")  # never started: the settings are checked first
    with pytest.raises(UsageError, match="batch_size must be an integer >= 1, got 0"):
        OutboxRelay(store, MemoryEventBus(), batch_size=0)
    with pytest.raises(UsageError, match="poll_interval_s must be > 0 seconds"):
        OutboxRelay(store, MemoryEventBus(), poll_interval_s=0)


class CountingBus(MemoryEventBus):
    """The memory bus, counting how the relay publishes; ``fail_first_many`` makes the first ``publish_many`` publish
    only its even-numbered envelopes and report the others failed, as a broker losing some batches would."""

    def __init__(self, *, fail_first_many: bool = False) -> None:
        super().__init__()
        self.single_calls = 0
        self.many_calls: list[int] = []
        self._fail_next_many = fail_first_many

    async def publish(self, topic: str, envelope: OnexEnvelopeV1, **kwargs: Any) -> None:
        self.single_calls += 1
        await super().publish(topic, envelope, **kwargs)

    async def publish_many(self, topic: str, envelopes: Any, *, headers: Any = ()) -> None:
        self.many_calls.append(len(envelopes))
        if not self._fail_next_many:
            await super().publish_many(topic, envelopes, headers=headers)
            return
        self._fail_next_many = False
        acknowledged = tuple(range(0, len(envelopes), 2))
        await super().publish_many(topic, [envelopes[i] for i in acknowledged], headers=headers)
        errors: dict[int, BaseException] = {
            i: ConnectionError(f"lost batch of {i}") for i in range(len(envelopes)) if i not in acknowledged
        }
        raise PublishManyError(
            "some failed",
            total=len(envelopes),
            sent=len(envelopes),
            acknowledged=acknowledged,
            errors=errors,
            retriable=True,
        )


async def test_rows_of_lone_keys_go_out_together_and_a_key_with_several_rows_keeps_its_order(
    store: PostgresStore,
) -> None:
    topic = "test.outbox.lone"
    written = [envelope(n, f"lone{n}") for n in range(10)]
    repeated = [envelope(n, "same") for n in range(10, 15)]
    events = [e for pair in zip(written[:5], repeated, strict=True) for e in pair] + written[5:]
    for event in events:
        async with store.transaction() as tx:
            await tx.enqueue(topic, event, headers=(("trace", f"t{event.payload['n']}".encode()),))
    async with CountingBus() as bus, OutboxRelay(store, bus) as relay:
        await wait_until_drained(relay, WAIT_S)
        records = bus.broker.records(topic)
    got = [OnexEnvelopeV1.from_json(r.value or b"") for r in records]
    assert sorted(e.payload["n"] for e in got) == list(range(15))  # each exactly once
    assert [e.payload["n"] for e in got if e.partition_key == "same"] == [10, 11, 12, 13, 14]
    for record, event in zip(records, got, strict=True):
        assert record.key == event.partition_key.encode()  # type: ignore[union-attr]
        assert dict(record.headers)["trace"] == f"t{event.payload['n']}".encode()
    # The five rows of "same" one by one; the ten lone keys in publish_many calls (one, unless the relay's first
    # batch started while the rows were still being written).
    assert bus.single_calls == 5 and sum(bus.many_calls) == 10


async def test_a_partly_failed_publish_many_marks_only_the_acknowledged_rows_sent(store: PostgresStore) -> None:
    topic = "test.outbox.partial"
    events = [envelope(n, f"key{n}") for n in range(6)]
    async with store.transaction() as tx:  # one commit: the relay's first batch holds all six
        for event in events:
            await tx.enqueue(topic, event)
    async with (
        CountingBus(fail_first_many=True) as bus,
        OutboxRelay(store, bus, initial_backoff_s=0.01) as relay,
    ):
        await wait_until_drained(relay, WAIT_S)
        numbers = [OnexEnvelopeV1.from_json(r.value or b"").payload["n"] for r in bus.broker.records(topic)]
        stats = relay.stats()
    # The acknowledged ones once, the failed ones once more after the backoff: nothing lost, nothing doubled.
    assert sorted(numbers) == list(range(6))
    assert bus.many_calls == [6, 3] and stats["failures"] == 1
    async with store.transaction() as tx:
        rows = await tx.fetch("SELECT value, attempts, last_error FROM outbox WHERE topic = $1", topic)
    by_n = {OnexEnvelopeV1.from_json(row["value"]).payload["n"]: row for row in rows}
    for n in (0, 2, 4):
        assert by_n[n]["attempts"] == 1 and by_n[n]["last_error"] is None
    for n in (1, 3, 5):
        assert by_n[n]["attempts"] == 2 and "ConnectionError" in by_n[n]["last_error"]
