"""The EventBus conformance suite: every test runs against the memory bus and against the Kafka bus on the embedded
Tansu broker (``[kafka]`` ids, marked ``kafka``). No mocks.

``bus`` is a started bus; ``make_bus()`` starts another one on the same broker with a fresh ProcessedEvents store —
a second process, for group members and restarts. Tests that prove something about offsets (resume, drain, group
split) use a new bus for the second member, so that idempotent skipping cannot hide a redelivery.

Every wait is bounded ("until the expected count or a deadline"); no test asserts that something was fast. A few
tests wait a short grace period to see that nothing *more* arrives; they never rely on it for what must arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.memory_bus import MemoryBroker, MemoryEventBus
from framework.errors import PayloadInvalid, UsageError
from framework.events.cloudevents import binary_headers, decode_message
from framework.events.envelope import OnexEnvelopeV1
from framework.events.topics import TopicClass, TopicName
from framework.ports.event_bus import (
    DLT_ATTEMPTS,
    DLT_ERROR,
    DLT_ERROR_TYPE,
    DLT_GROUP,
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TOPIC,
    DeliveryPolicy,
    EventBus,
    Message,
    PublishManyError,
    dead_letter_topic,
)

# --- helpers, shared with tests/adapters/test_*_bus.py -----------------------------------------------------------

#: Consumer settings that keep the Kafka tests quick: members notice a rebalance within 0.2 s (Tansu itself then
#: takes 3 s to form the group, whatever the client asks).
KAFKA_TEST_SETTINGS: dict[str, Any] = {
    "heartbeat_interval_ms": 200,
    "session_timeout_ms": 6000,
    "poll_timeout_ms": 100,
    "drain_timeout_s": 10.0,
}

#: Generous bound for anything a test waits for; a Kafka group join takes about 3 s on Tansu.
WAIT_S = 30.0
#: How long a test watches for messages that must NOT arrive.
GRACE_S = 0.5
#: Retries without waiting, for tests about what is retried rather than when.
FAST_RETRY = DeliveryPolicy(max_attempts=3, initial_backoff_s=0.01, jitter=0.0)

BusFactory = Callable[[], Awaitable[EventBus]]


def make_envelope(n: int = 0, *, key: str | None = None, **payload: Any) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="conformance-test",
        source_node_id="conformance",
        source_service="tests",
        source_version="1.0.0",
        partition_key=key,
        payload={"n": n, **payload},
    )


class Collector:
    """A handler that records every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def numbers(self) -> list[int]:
        return [message.envelope.payload["n"] for message in self.messages]

    @property
    def event_ids(self) -> list[str]:
        return [str(message.envelope.event_id) for message in self.messages]


class Failures(list[tuple[str, OnexEnvelopeV1 | None, str, int]]):
    """An ``on_failed`` observer: what it was told, in order."""

    def __call__(self, topic: str, envelope: OnexEnvelopeV1 | None, outcome: str, attempts: int) -> None:
        self.append((topic, envelope, outcome, attempts))


async def wait_until(condition: Callable[[], bool], what: str, within: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> bytes:
        values = [value for key, value in self.headers if key == name]
        assert len(values) == 1, f"header {name!r} appears {len(values)} times in {self.headers}"
        return values[0]


async def produce_raw(
    bus: EventBus, topic: str, value: bytes, *, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Write bytes that are not an envelope, as a foreign or broken producer would."""
    if isinstance(bus, MemoryEventBus):
        bus.append_raw(topic, value, key=key, headers=headers or ())
        return
    assert isinstance(bus, KafkaEventBus)
    producer = AIOKafkaProducer(bootstrap_servers=bus.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_raw(bus: EventBus, topic: str, count: int, within: float = WAIT_S) -> list[RawRecord]:
    """The first ``count`` records of ``topic`` (all partitions, from the start), read without a group.

    Reads until ``count`` arrived or the deadline, never "until the end offset" (Tansu under-reports end offsets).
    """
    if isinstance(bus, MemoryEventBus):
        broker = bus.broker
        await wait_until(lambda: len(broker.records(topic)) >= count, f"{count} records in {topic}", within)
        return [RawRecord(r.partition, r.offset, r.key, r.value, list(r.headers)) for r in broker.records(topic)][
            :count
        ]
    assert isinstance(bus, KafkaEventBus)
    consumer = AIOKafkaConsumer(bootstrap_servers=bus.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while not (partitions := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist after {within} s")
            await consumer.topics()  # refreshes the metadata
            await asyncio.sleep(0.05)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[RawRecord] = []
        while len(records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(records)} of {count} records from {topic} in {within} s")
            batch = await consumer.getmany(timeout_ms=100)
            for tp, items in batch.items():
                records += [RawRecord(tp.partition, r.offset, r.key, r.value, list(r.headers)) for r in items]
        return records[:count]
    finally:
        await consumer.stop()


def our_topic(name: str) -> str:
    """A unique topic of the project's naming form, whose dead-letter topic is the ``dlt`` class."""
    return str(TopicName("test", "conformance", "bus", TopicClass.EVT, f"{name}-{uuid.uuid4().hex[:12]}", 1))


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Which bus, and the Kafka bootstrap address for the Kafka one (the broker starts only when needed)."""
    if request.param == "kafka":
        return "kafka", request.getfixturevalue("kafka_bootstrap")
    return "memory", ""


@pytest.fixture
async def make_bus(bus_kind: tuple[str, str]) -> AsyncIterator[BusFactory]:
    kind, bootstrap = bus_kind
    broker = MemoryBroker()
    started: list[EventBus] = []

    async def make() -> EventBus:
        new: EventBus = (
            MemoryEventBus(broker=broker) if kind == "memory" else KafkaEventBus(bootstrap, **KAFKA_TEST_SETTINGS)
        )
        await new.start()
        started.append(new)
        return new

    yield make
    await asyncio.gather(*(b.stop() for b in started))


@pytest.fixture
async def bus(make_bus: BusFactory) -> EventBus:
    return await make_bus()


def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:12]}"


# --- the suite ---------------------------------------------------------------------------------------------------


async def test_publish_and_subscribe(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    subscription = await bus.subscribe([topic], group=group_name(), handler=collector)
    assert list(subscription.topics) == [topic]

    sent = [make_envelope(n, key="one-key") for n in range(5)]
    for envelope in sent:
        await bus.publish(topic, envelope)

    await wait_until(lambda: len(collector.messages) == 5, "5 messages")
    assert [m.envelope for m in collector.messages] == sent
    for message, envelope in zip(collector.messages, sent, strict=True):
        assert message.topic == topic
        assert message.value == envelope.to_json()
        assert message.attempt == 1
    # One key, one partition, consecutive offsets.
    assert len({m.partition for m in collector.messages}) == 1
    offsets = [m.offset for m in collector.messages]
    assert offsets == list(range(offsets[0], offsets[0] + 5))

    await bus.stop()  # stops (drains) its subscriptions too
    await bus.stop()  # safe twice
    await subscription.stop()  # already stopped with the bus: nothing to do


async def test_keys_and_headers_round_trip(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)

    explicit = make_envelope(1, key="ignored-for-explicit-key")
    by_partition_key = make_envelope(2, key="pk-2")
    chained = OnexEnvelopeV1.child_of(
        make_envelope(0),
        event_type="conformance-test",
        payload={"n": 3},
        source_node_id="conformance",
        source_service="tests",
        source_version="1.0.0",
    )
    custom = (("x-trace", b"trace-1"), ("x-binary", b"\x00\xff\x10"))
    await bus.publish(topic, explicit, key=b"explicit-key", headers=custom)
    await bus.publish(topic, by_partition_key)
    await bus.publish(topic, chained)

    await wait_until(lambda: len(collector.messages) == 3, "3 messages")
    got = {m.envelope.payload["n"]: m for m in collector.messages}
    assert got[1].key == b"explicit-key"
    assert got[2].key == b"pk-2"
    assert got[3].key == str(chained.correlation_id).encode()  # the key rule: correlation id without partition key
    for n, envelope in ((1, explicit), (2, by_partition_key), (3, chained)):
        message = got[n]
        assert message.envelope == envelope
        headers = dict(message.headers)
        for name, value in binary_headers(envelope):
            assert headers[name] == value, name
        assert headers["ce_id"] == str(envelope.event_id).encode()
        assert headers["content-type"] == b"application/json"
        # The headers alone are a valid CloudEvent of the same event.
        assert decode_message(message.value, message.headers).event_id == envelope.event_id
    assert ("x-trace", b"trace-1") in got[1].headers
    assert ("x-binary", b"\x00\xff\x10") in got[1].headers
    assert "x-trace" not in dict(got[2].headers)


async def test_order_per_key(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)

    for n in range(200):
        await bus.publish(topic, make_envelope(n, key=f"key-{n % 10}"))

    await wait_until(lambda: len(collector.messages) == 200, "200 messages")
    assert sorted(collector.numbers) == list(range(200))
    for k in range(10):
        mine = [m for m in collector.messages if m.key == f"key-{k}".encode()]
        assert [m.envelope.payload["n"] for m in mine] == list(range(k, 200, 10))
        assert len({m.partition for m in mine}) == 1
    assert len({m.partition for m in collector.messages}) > 1  # the keys did spread over partitions


async def test_publish_many_delivers_all_in_order_per_key(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)

    sent = [make_envelope(n, key=f"key-{n % 10}") for n in range(300)]
    await bus.publish_many(topic, sent)
    await bus.publish_many(topic, [])  # nothing, and no error

    await wait_until(lambda: len(collector.messages) == 300, "300 messages")
    assert sorted(collector.numbers) == list(range(300))
    assert {m.envelope.event_id for m in collector.messages} == {e.event_id for e in sent}
    for k in range(10):
        mine = [m for m in collector.messages if m.key == f"key-{k}".encode()]
        assert [m.envelope.payload["n"] for m in mine] == list(range(k, 300, 10))
        assert len({m.partition for m in mine}) == 1
        offsets = [m.offset for m in mine]
        assert offsets == sorted(offsets)
    assert len({m.partition for m in collector.messages}) > 1  # the keys did spread over partitions


async def test_publish_many_runs_are_not_interleaved(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    """Concurrent calls (and a publish between them) keep order per key: each call's envelopes stay one run, in
    the order the calls were made."""
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)

    first = [make_envelope(n, key=f"key-{n % 4}") for n in range(0, 100)]
    single = make_envelope(100, key="key-0")
    second = [make_envelope(n, key=f"key-{n % 4}") for n in range(101, 201)]
    await asyncio.gather(bus.publish_many(topic, first), bus.publish(topic, single), bus.publish_many(topic, second))

    await wait_until(lambda: len(collector.messages) == 201, "201 messages")
    for k in range(4):
        mine = [m.envelope.payload["n"] for m in collector.messages if m.key == f"key-{k}".encode()]
        assert mine == sorted(mine), f"key-{k} out of order: {mine}"


async def test_publish_many_keys_and_headers(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)

    by_partition_key = make_envelope(1, key="pk-1")
    chained = OnexEnvelopeV1.child_of(
        make_envelope(0),
        event_type="conformance-test",
        payload={"n": 2},
        source_node_id="conformance",
        source_service="tests",
        source_version="1.0.0",
    )
    # A caller's header with a CloudEvents name is replaced by the envelope's own, as with publish.
    custom = (("x-trace", b"trace-1"), ("x-binary", b"\x00\xff\x10"), ("ce_id", b"not-this-one"))
    await bus.publish_many(topic, [by_partition_key, chained], headers=custom)

    await wait_until(lambda: len(collector.messages) == 2, "2 messages")
    got = {m.envelope.payload["n"]: m for m in collector.messages}
    assert got[1].key == b"pk-1"
    assert got[2].key == str(chained.correlation_id).encode()
    for n, envelope in ((1, by_partition_key), (2, chained)):
        message = got[n]
        assert message.envelope == envelope
        assert message.value == envelope.to_json()
        assert ("x-trace", b"trace-1") in message.headers
        assert ("x-binary", b"\x00\xff\x10") in message.headers
        headers = dict(message.headers)
        for name, value in binary_headers(envelope):
            assert headers[name] == value, name
        assert [value for name, value in message.headers if name == "ce_id"] == [str(envelope.event_id).encode()]


async def test_publish_many_refuses_a_bad_topic_before_sending(bus: EventBus) -> None:
    with pytest.raises(UsageError):
        await bus.publish_many("bad topic!", [make_envelope(1)])


@pytest.mark.kafka
async def test_kafka_publish_many_reports_what_was_acknowledged(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    """An envelope the producer refuses (too large) stops the call there: the ones before it are acknowledged
    before the error is raised, the ones after it are never sent, and the error says so."""
    bus = KafkaEventBus(kafka_bootstrap, **KAFKA_TEST_SETTINGS)
    await bus.start()
    try:
        topic = unique_topic()
        await bus.ensure_topics([topic], partitions=3)
        envelopes = [make_envelope(0, key="k"), make_envelope(1, key="k", big="x" * 1_100_000), make_envelope(2)]
        with pytest.raises(PublishManyError) as info:
            await bus.publish_many(topic, envelopes)
        error = info.value
        assert (error.total, error.sent, error.acknowledged) == (3, 1, (0,))
        assert list(error.errors) == [1]
        assert error.__cause__ is error.errors[1]
        assert not error.retriable
        records = await read_raw(bus, topic, 1)
        assert [OnexEnvelopeV1.from_json(r.value or b"").event_id for r in records] == [envelopes[0].event_id]
    finally:
        await bus.stop()


async def test_group_of_two_members_splits_the_partitions(
    bus: EventBus, make_bus: BusFactory, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=4)
    group = group_name()
    first, second = Collector(), Collector()
    other_bus = await make_bus()  # a second process, with its own record of processed events
    # Joining together costs one group formation instead of two on Kafka; joining one after the other (a
    # rebalance) is covered by the implementation tests.
    await asyncio.gather(
        bus.subscribe([topic], group=group, handler=first),
        other_bus.subscribe([topic], group=group, handler=second),
    )

    sent = [make_envelope(n, key=f"key-{n}") for n in range(40)]
    for envelope in sent:
        await bus.publish(topic, envelope)

    await wait_until(lambda: len(first.messages) + len(second.messages) >= 40, "40 messages across both members")
    await asyncio.sleep(GRACE_S)
    assert first.messages and second.messages, (len(first.messages), len(second.messages))
    every = first.event_ids + second.event_ids
    assert len(every) == len(set(every)) == 40  # none twice
    assert set(every) == {str(e.event_id) for e in sent}  # together all
    assert not {m.partition for m in first.messages} & {m.partition for m in second.messages}


async def test_commit_after_success_and_resume_after_restart(
    bus: EventBus, make_bus: BusFactory, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    group = group_name()
    before = Collector()
    subscription = await bus.subscribe([topic], group=group, handler=before)
    first_half = [make_envelope(n, key=f"key-{n % 4}") for n in range(12)]
    for envelope in first_half:
        await bus.publish(topic, envelope)
    await wait_until(lambda: len(before.messages) == 12, "the first 12 messages")
    await subscription.stop()
    await subscription.stop()  # safe twice

    second_half = [make_envelope(n, key=f"key-{n % 4}") for n in range(12, 24)]
    for envelope in second_half:
        await bus.publish(topic, envelope)

    # A new process: nothing remembered but the committed offsets.
    after = Collector()
    restarted = await make_bus()
    await restarted.subscribe([topic], group=group, handler=after)
    await wait_until(lambda: len(after.messages) >= 12, "the last 12 messages")
    await asyncio.sleep(GRACE_S)
    assert sorted(after.numbers) == list(range(12, 24))
    assert len(before.messages) == 12


async def test_at_least_once_when_a_handler_crashes(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    handled: list[tuple[int, int]] = []

    async def crashes_once(message: Message) -> None:
        n = message.envelope.payload["n"]
        handled.append((n, message.attempt))
        if n == 3 and message.attempt == 1:
            raise RuntimeError("crash on first delivery")

    await bus.subscribe([topic], group=group_name(), handler=crashes_once, policy=FAST_RETRY)
    for n in range(8):
        await bus.publish(topic, make_envelope(n, key="k"))

    await wait_until(lambda: len(handled) == 9, "8 messages and one redelivery")
    await asyncio.sleep(GRACE_S)
    assert handled == [(0, 1), (1, 1), (2, 1), (3, 1), (3, 2), (4, 1), (5, 1), (6, 1), (7, 1)]


async def test_a_message_waiting_for_its_retry_is_not_committed_when_the_member_stops(
    bus: EventBus, make_bus: BusFactory, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=1)
    group = group_name()
    failed = asyncio.Event()

    async def always_fails(message: Message) -> None:
        failed.set()
        raise RuntimeError("down")

    patient = DeliveryPolicy(max_attempts=5, initial_backoff_s=60.0, jitter=0.0)
    subscription = await bus.subscribe([topic], group=group, handler=always_fails, policy=patient)
    await bus.publish(topic, make_envelope(0, key="k"))
    await bus.publish(topic, make_envelope(1, key="k"))
    await asyncio.wait_for(failed.wait(), WAIT_S)
    await subscription.stop()  # interrupts the 60 s backoff rather than waiting it out

    collector = Collector()
    restarted = await make_bus()
    await restarted.subscribe([topic], group=group, handler=collector)
    await wait_until(lambda: len(collector.messages) == 2, "both messages on the next member")
    assert collector.numbers == [0, 1]


async def test_retries_with_backoff_per_policy(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    policy = DeliveryPolicy(max_attempts=3, initial_backoff_s=0.05, multiplier=2.0, jitter=0.0)
    calls: list[tuple[int, int, float]] = []

    async def fails_for_zero(message: Message) -> None:
        n = message.envelope.payload["n"]
        calls.append((n, message.attempt, time.monotonic()))
        if n == 0:
            raise ValueError(f"attempt {message.attempt} failed")

    await bus.subscribe([topic], group=group_name(), handler=fails_for_zero, policy=policy)
    await bus.publish(topic, make_envelope(0, key="k"))
    await bus.publish(topic, make_envelope(1, key="k"))

    await wait_until(lambda: any(n == 1 for n, _, _ in calls), "the message after the failing one")
    assert [(n, attempt) for n, attempt, _ in calls] == [(0, 1), (0, 2), (0, 3), (1, 1)]
    times = [at for _, _, at in calls]
    # Lower bounds only, with slack for timer granularity: the configured sleeps did happen, in order.
    assert times[1] - times[0] >= 0.05 * 0.8
    assert times[2] - times[1] >= 0.10 * 0.8
    assert times[3] >= times[2]


async def test_dead_letter_topic_after_the_last_attempt(bus: EventBus) -> None:
    topic = our_topic("dead-letter")
    dlt = dead_letter_topic(topic)
    assert dlt == topic.replace(".evt.", ".dlt.")
    await bus.ensure_topics([topic], partitions=3)
    group = group_name()
    seen: list[Message] = []
    later = Collector()

    async def handler(message: Message) -> None:
        if message.envelope.payload.get("bad"):
            seen.append(message)
            raise ValueError("boom 42: the payload is bad")
        await later(message)

    policy = DeliveryPolicy(max_attempts=2, initial_backoff_s=0.01, jitter=0.0)
    failures = Failures()
    await bus.subscribe([topic], group=group, handler=handler, policy=policy, on_failed=failures)
    bad = make_envelope(0, key="k", bad=True)
    await bus.publish(topic, bad, headers=(("x-origin", b"test"),))
    await bus.publish(topic, make_envelope(1, key="k"))

    await wait_until(lambda: len(later.messages) == 1, "consumption to continue after the dead letter")
    assert [m.attempt for m in seen] == [1, 2]
    assert failures == [(topic, bad, "dead_lettered", 2)]
    [letter] = await read_raw(bus, dlt, 1)
    assert letter.value == bad.to_json()
    assert letter.key == b"k"
    assert decode_message(letter.value, letter.headers) == bad
    assert letter.header("x-origin") == b"test"
    for name, value in binary_headers(bad):
        assert letter.header(name) == value
    assert b"boom 42: the payload is bad" in letter.header(DLT_ERROR)
    assert letter.header(DLT_ERROR_TYPE) == b"ValueError"
    assert letter.header(DLT_ATTEMPTS) == b"2"
    assert letter.header(DLT_TOPIC) == topic.encode()
    assert letter.header(DLT_PARTITION) == str(seen[0].partition).encode()
    assert letter.header(DLT_OFFSET) == str(seen[0].offset).encode()
    assert letter.header(DLT_GROUP) == group.encode()


async def test_a_structured_mode_cloudevent_from_another_producer_is_handled(
    bus: EventBus, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    await bus.subscribe([topic], group=group_name(), handler=collector)
    event = {
        "specversion": "1.0",
        "type": "com.example.object.created",
        "source": "https://storage.example.com/photos",
        "id": "evt-1",
        "time": "2026-11-28T08:30:15Z",
        "data": {"bucket": "photos", "key": "cat.jpg"},
    }
    structured = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    await produce_raw(bus, topic, json.dumps(event).encode(), key=b"cat.jpg", headers=structured)
    await wait_until(lambda: len(collector.messages) == 1, "the structured-mode event")
    envelope = collector.messages[0].envelope
    assert envelope.event_type == "com.example.object.created" and envelope.payload == event["data"]
    assert envelope.source_service == "https://storage.example.com/photos" and envelope.metadata["ce_id"] == "evt-1"
    assert collector.messages[0].key == b"cat.jpg"


async def test_poison_message_goes_to_the_dead_letter_topic_and_consumption_continues(
    bus: EventBus, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    collector = Collector()
    failures = Failures()
    await bus.subscribe([topic], group=group_name(), handler=collector, on_failed=failures)
    garbage = b"\x00\x9f{not json at all"
    await produce_raw(bus, topic, garbage, key=b"k")
    good = make_envelope(1, key="k")
    await bus.publish(topic, good)

    await wait_until(lambda: len(collector.messages) == 1, "the good message after the poison one")
    assert collector.messages[0].envelope == good
    assert failures == [(topic, None, "dead_lettered", 0)]
    [letter] = await read_raw(bus, dead_letter_topic(topic), 1)
    assert letter.value == garbage
    assert letter.key == b"k"
    assert letter.header(DLT_ATTEMPTS) == b"0"
    assert letter.header(DLT_ERROR_TYPE) == b"framework.events.envelope.EnvelopeError"
    assert letter.header(DLT_TOPIC) == topic.encode()
    assert letter.header(DLT_ERROR)


async def failing_then_fine(
    bus: EventBus, topic: str, error: Exception, policy: DeliveryPolicy
) -> tuple[list[int], Failures, OnexEnvelopeV1]:
    """Subscribe a handler that raises ``error`` for a bad event, publish a bad and then a good event on one key, and
    wait until the good one is handled: the attempts at the bad one, what ``on_failed`` was told, the bad event."""
    await bus.ensure_topics([topic], partitions=3)
    attempts: list[int] = []
    later = Collector()

    async def handler(message: Message) -> None:
        if message.envelope.payload.get("bad"):
            attempts.append(message.attempt)
            raise error
        await later(message)

    failures = Failures()
    await bus.subscribe([topic], group=group_name(), handler=handler, policy=policy, on_failed=failures)
    bad = make_envelope(0, key="k", bad=True)
    await bus.publish(topic, bad)
    await bus.publish(topic, make_envelope(1, key="k"))
    await wait_until(lambda: len(later.messages) == 1, "consumption to continue after the failing event")
    return attempts, failures, bad


async def test_a_handler_raising_poison_is_dead_lettered_without_retry(
    bus: EventBus, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    poison = PayloadInvalid("payload of test does not match Thing: n: 'x' is not of type 'integer'")
    policy = DeliveryPolicy(max_attempts=5, initial_backoff_s=0.01, jitter=0.0)
    attempts, failures, bad = await failing_then_fine(bus, topic, poison, policy)
    assert attempts == [1]
    assert failures == [(topic, bad, "dead_lettered", 1)]
    [letter] = await read_raw(bus, dead_letter_topic(topic), 1)
    assert decode_message(letter.value, letter.headers) == bad
    assert letter.header(DLT_ATTEMPTS) == b"1"
    assert letter.header(DLT_ERROR_TYPE) == b"framework.errors.PayloadInvalid"


async def test_an_event_is_handled_once_per_group(bus: EventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    first, second = Collector(), Collector()
    skipped: list[tuple[str, OnexEnvelopeV1]] = []
    await asyncio.gather(
        bus.subscribe([topic], group=group_name(), handler=first, on_duplicate=lambda t, e: skipped.append((t, e))),
        bus.subscribe([topic], group=group_name(), handler=second),
    )
    twice = make_envelope(0, key="k")
    await bus.publish(topic, twice)
    await bus.publish(topic, twice)
    await bus.publish(topic, make_envelope(1, key="k"))  # same partition, after both copies

    await wait_until(lambda: 1 in first.numbers and 1 in second.numbers, "the message after the duplicate")
    for collector in (first, second):
        assert collector.numbers == [0, 1]
        assert collector.messages[0].envelope == twice
    assert skipped == [(topic, twice)]


async def test_without_dead_letters_a_failing_message_is_dropped_after_its_last_attempt(
    bus: EventBus, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    policy = DeliveryPolicy(max_attempts=3, initial_backoff_s=0.01, jitter=0.0, dead_letter=False)
    attempts, failures, bad = await failing_then_fine(bus, topic, ValueError("always fails"), policy)
    assert attempts == [1, 2, 3]
    assert failures == [(topic, bad, "dropped", 3)]


async def test_stop_drains_the_handler_in_flight(
    bus: EventBus, make_bus: BusFactory, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=1)
    group = group_name()
    started = asyncio.Event()
    finished: list[int] = []

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(message.envelope.payload["n"])

    subscription = await bus.subscribe([topic], group=group, handler=slow)
    await bus.publish(topic, make_envelope(0, key="k"))
    await bus.publish(topic, make_envelope(1, key="k"))
    await asyncio.wait_for(started.wait(), WAIT_S)
    await subscription.stop()
    assert finished == [0]  # the handler in flight completed; the next message was not started

    collector = Collector()
    restarted = await make_bus()
    await restarted.subscribe([topic], group=group, handler=collector)
    await wait_until(lambda: len(collector.messages) >= 1, "the message after the drained one")
    await asyncio.sleep(GRACE_S)
    assert collector.numbers == [1]  # the drained message's offset was committed
