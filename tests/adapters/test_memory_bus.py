"""What is particular to the memory bus: its broker model (partitioning, range assignment, rebalances), usage
errors, drain timeouts, and the shared delivery rules' corner cases. The port's behaviour itself is the conformance
suite's (tests/conformance/test_event_bus.py)."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import AsyncIterator

import pytest

from framework.adapters.memory_bus import MemoryBroker, MemoryEventBus, MemorySubscription
from framework.adapters.processed_events import MemoryProcessedEvents
from framework.errors import UsageError
from framework.events.cloudevents import binary_headers
from framework.ports.event_bus import DeliveryPolicy, Message, dead_letter_topic
from tests.conformance.test_event_bus import Collector, make_envelope, our_topic, wait_until

GRACE_S = 0.2


@pytest.fixture
async def bus() -> AsyncIterator[MemoryEventBus]:
    async with MemoryEventBus() as started:
        yield started


def topic_name() -> str:
    return f"memory-bus-test.{uuid.uuid4().hex[:12]}"


# --- usage errors ---------------------------------------------------------------------------------------------------


async def test_publish_before_start_is_a_usage_error() -> None:
    bus = MemoryEventBus()
    with pytest.raises(UsageError, match=r"cannot publish to 'orders': memory event bus is new; call start\(\) first"):
        await bus.publish("orders", make_envelope())


async def test_subscribe_after_stop_is_a_usage_error() -> None:
    bus = MemoryEventBus()
    await bus.start()
    await bus.stop()
    with pytest.raises(UsageError, match="cannot subscribe group 'g': memory event bus is stopped"):
        await bus.subscribe(["orders"], group="g", handler=Collector())


async def test_starting_twice_is_a_usage_error(bus: MemoryEventBus) -> None:
    with pytest.raises(UsageError, match="already started"):
        await bus.start()


@pytest.mark.parametrize(
    ("topics", "group", "policy", "message"),
    [
        ("orders", "g", DeliveryPolicy(), r"got the string 'orders'; write \['orders'\]"),
        ([], "g", DeliveryPolicy(), "at least one topic"),
        (["bad topic"], "g", DeliveryPolicy(), r"bad topic name 'bad topic'.*\[A-Za-z0-9\._-\]"),
        ([".."], "g", DeliveryPolicy(), "bad topic name '..'"),
        (["orders"], "", DeliveryPolicy(), "group must be a non-empty string, got ''"),
        (["orders"], "g", DeliveryPolicy(max_attempts=0), "max_attempts must be an integer >= 1, got 0"),
    ],
)
async def test_bad_subscriptions_are_usage_errors(
    bus: MemoryEventBus, topics: object, group: str, policy: DeliveryPolicy, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        await bus.subscribe(topics, group=group, handler=Collector(), policy=policy)  # type: ignore[arg-type]


async def test_bad_topics_and_partition_counts_are_usage_errors(bus: MemoryEventBus) -> None:
    with pytest.raises(UsageError, match="partitions must be an integer >= 1, got 0"):
        await bus.ensure_topics(["orders"], partitions=0)
    with pytest.raises(UsageError, match="bad topic name 'a/b'"):
        await bus.publish("a/b", make_envelope())
    with pytest.raises(UsageError, match="partition 7 does not exist in topic 'orders', which has 3"):
        bus.append_raw("orders", b"x", partition=7)


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="drain_timeout_s must be > 0"):
        MemoryEventBus(drain_timeout_s=0)
    with pytest.raises(UsageError, match="partitions must be an integer >= 1"):
        MemoryBroker(default_partitions=0)
    with pytest.raises(UsageError, match="retention_records must be an integer >= 1 or None, got 0"):
        MemoryBroker(retention_records=0)
    with pytest.raises(UsageError, match="capacity_per_group must be an integer >= 1"):
        MemoryProcessedEvents(capacity_per_group=0)


# --- the broker model -----------------------------------------------------------------------------------------------


async def test_the_partition_is_the_crc32_of_the_key(bus: MemoryEventBus) -> None:
    topic = topic_name()
    await bus.ensure_topics([topic], partitions=5)
    await bus.ensure_topics([topic], partitions=9)  # an existing topic keeps its partitions, as on Tansu
    assert bus.broker.partition_count(topic) == 5
    for n in range(20):
        await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
    for record in bus.broker.records(topic):
        assert record.key is not None
        assert record.partition == zlib.crc32(record.key) % 5 == bus.broker.partition_for(topic, record.key)
    per_partition = [[r.offset for r in bus.broker.records(topic) if r.partition == p] for p in range(5)]
    assert all(offsets == list(range(len(offsets))) for offsets in per_partition)


async def test_records_without_a_key_go_round_robin(bus: MemoryEventBus) -> None:
    topic = topic_name()
    await bus.ensure_topics([topic], partitions=3)
    for _ in range(6):
        bus.append_raw(topic, b"x")
    assert [r.partition for r in bus.broker.records(topic)] == [0, 0, 1, 1, 2, 2]


async def test_messages_are_stored_encoded_with_cloudevents_headers(bus: MemoryEventBus) -> None:
    topic = topic_name()
    envelope = make_envelope(1, key="k")
    # A caller's header cannot contradict the envelope: the CloudEvents ones are derived from it.
    await bus.publish(topic, envelope, headers=(("ce_id", b"bogus"), ("x-mine", b"1")))
    [record] = bus.broker.records(topic)
    assert record.value == envelope.to_json()
    assert record.key == b"k"
    assert list(record.headers) == [("x-mine", b"1"), *binary_headers(envelope)]


async def test_members_split_partitions_in_ranges_and_rebalance_on_join_and_leave(bus: MemoryEventBus) -> None:
    topic = topic_name()
    await bus.ensure_topics([topic], partitions=4)
    first, second = Collector(), Collector()
    a = await bus.subscribe([topic], group="g", handler=first)
    assert isinstance(a, MemorySubscription)
    assert a.assignment == {(topic, p) for p in range(4)}
    for n in range(8):
        await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
    await wait_until(lambda: len(first.messages) == 8, "8 messages on the only member")

    b = await bus.subscribe([topic], group="g", handler=second)
    assert a.assignment == {(topic, 0), (topic, 1)}
    assert b.assignment == {(topic, 2), (topic, 3)}
    assert bus.broker.members("g") == 2
    # Everything handled so far was committed before the partitions moved.
    for p in range(4):
        logged = sum(1 for r in bus.broker.records(topic) if r.partition == p)
        assert (bus.broker.committed("g", topic, p) or 0) == logged

    for n in range(8, 40):
        await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
    await wait_until(lambda: len(first.messages) + len(second.messages) == 40, "40 messages")
    assert {m.partition for m in first.messages[8:]} <= {0, 1}
    assert {m.partition for m in second.messages} <= {2, 3}

    await b.stop()
    assert a.assignment == {(topic, p) for p in range(4)}
    assert bus.broker.members("g") == 1
    for n in range(40, 60):
        await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
    await wait_until(lambda: len(first.messages) + len(second.messages) == 60, "60 messages")
    await asyncio.sleep(GRACE_S)
    every = first.numbers + second.numbers
    assert sorted(every) == list(range(60))


async def test_a_member_subscribed_to_another_topic_gets_none_of_this_one(bus: MemoryEventBus) -> None:
    orders, invoices = topic_name(), topic_name()
    await bus.ensure_topics([orders, invoices], partitions=2)
    both = await bus.subscribe([orders, invoices], group="g", handler=Collector())
    only_invoices = await bus.subscribe([invoices], group="g", handler=Collector())
    assert isinstance(both, MemorySubscription) and isinstance(only_invoices, MemorySubscription)
    assert both.assignment == {(orders, 0), (orders, 1), (invoices, 0)}
    assert only_invoices.assignment == {(invoices, 1)}


async def test_a_rebalance_waits_for_the_handler_in_flight_on_a_moving_partition(bus: MemoryEventBus) -> None:
    topic = topic_name()
    await bus.ensure_topics([topic], partitions=2)
    key = next(f"k{i}" for i in range(100) if zlib.crc32(f"k{i}".encode()) % 2 == 1)  # lands on partition 1
    events: list[str] = []
    started = asyncio.Event()

    async def slow(message: Message) -> None:
        events.append(f"start {message.envelope.payload['n']}")
        started.set()
        await asyncio.sleep(0.2)
        events.append(f"end {message.envelope.payload['n']}")

    newcomer = Collector()
    await bus.subscribe([topic], group="g", handler=slow)
    await bus.publish(topic, make_envelope(0, key=key))
    await bus.publish(topic, make_envelope(1, key=key))
    await started.wait()
    await bus.subscribe([topic], group="g", handler=newcomer)  # takes partition 1
    events.append("joined")
    await wait_until(lambda: len(newcomer.messages) == 1, "the next message on the new owner")
    assert events == ["start 0", "end 0", "joined"]
    assert newcomer.numbers == [1]


async def test_a_handler_overrunning_the_drain_timeout_is_cancelled_and_redelivered() -> None:
    broker = MemoryBroker()
    topic = topic_name()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(message: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with MemoryEventBus(broker=broker, drain_timeout_s=0.1) as first:
        subscription = await first.subscribe([topic], group="g", handler=stuck)
        await first.publish(topic, make_envelope(0, key="k"))
        await asyncio.wait_for(started.wait(), 10)
        await subscription.stop()
        assert cancelled.is_set()
        partition = broker.records(topic)[0].partition
        assert broker.committed("g", topic, partition) is None

    collector = Collector()
    async with MemoryEventBus(broker=broker) as second:
        await second.subscribe([topic], group="g", handler=collector)
        await wait_until(lambda: collector.numbers == [0], "the redelivery")


# --- delivery corner cases ------------------------------------------------------------------------------------------


async def test_without_dead_lettering_a_failed_message_is_dropped_and_committed(bus: MemoryEventBus) -> None:
    topic = topic_name()
    after = Collector()

    async def handler(message: Message) -> None:
        if message.envelope.payload["n"] == 0:
            raise RuntimeError("no")
        await after(message)

    policy = DeliveryPolicy(max_attempts=1, dead_letter=False)
    await bus.subscribe([topic], group="g", handler=handler, policy=policy)
    await bus.publish(topic, make_envelope(0, key="k"))
    await bus.publish(topic, make_envelope(1, key="k"))
    await wait_until(lambda: after.numbers == [1], "the next message")
    assert bus.broker.partition_count(dead_letter_topic(topic)) is None
    partition = bus.broker.records(topic)[0].partition
    assert bus.broker.committed("g", topic, partition) == 2


async def test_a_dead_letter_topic_never_dead_letters_into_itself(bus: MemoryEventBus) -> None:
    dlt = dead_letter_topic(our_topic("loop"))
    assert dead_letter_topic(dlt) == dlt
    seen = Collector()

    async def fails(message: Message) -> None:
        await seen(message)
        raise RuntimeError("still broken")

    await bus.subscribe([dlt], group="replayer", handler=fails, policy=DeliveryPolicy(max_attempts=1))
    await bus.publish(dlt, make_envelope(0, key="k"))
    await bus.publish(dlt, make_envelope(1, key="k"))
    await wait_until(lambda: len(seen.messages) == 2, "both messages")
    await asyncio.sleep(GRACE_S)
    assert len(bus.broker.records(dlt)) == 2


async def test_a_foreign_cloudevent_without_data_is_handled(bus: MemoryEventBus) -> None:
    topic = topic_name()
    collector = Collector()
    await bus.subscribe([topic], group="g", handler=collector)
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"abc"), ("ce_source", b"/elsewhere"), ("ce_type", b"pinged")]
    bus.append_raw(topic, None, headers=headers)
    await wait_until(lambda: len(collector.messages) == 1, "the foreign event")
    message = collector.messages[0]
    assert message.value == b""
    assert message.envelope.event_type == "pinged"
    assert message.envelope.payload == {}


async def test_subscriptions_of_one_bus_share_its_processed_events() -> None:
    processed = MemoryProcessedEvents()
    topic = topic_name()
    envelope = make_envelope(0, key="k")
    await processed.mark_processed("g", str(envelope.event_id))
    collector = Collector()
    async with MemoryEventBus(processed_events=processed) as bus:
        await bus.subscribe([topic], group="g", handler=collector)
        await bus.publish(topic, envelope)
        await bus.publish(topic, make_envelope(1, key="k"))
        await wait_until(lambda: collector.numbers == [1], "the unprocessed message")
    assert processed.count("g") == 2


async def test_processed_events_keep_the_most_recent_ids_per_group() -> None:
    processed = MemoryProcessedEvents(capacity_per_group=3)
    for event_id in "abcd":
        await processed.mark_processed("g", event_id)
    assert not await processed.is_processed("g", "a")  # evicted, the oldest
    assert await processed.is_processed("g", "b")  # a hit keeps it fresh...
    await processed.mark_processed("g", "e")
    assert not await processed.is_processed("g", "c")  # ...so the next oldest goes instead
    assert [await processed.is_processed("g", i) for i in "bde"] == [True, True, True]
    assert processed.count("g") == 3
    assert not await processed.is_processed("other", "b")  # per group


# --- retention ------------------------------------------------------------------------------------------------------


async def test_a_partition_keeps_its_newest_records_and_offsets_keep_counting() -> None:
    broker = MemoryBroker(default_partitions=1, retention_records=10)
    topic = topic_name()
    offsets = [broker.append(topic, f"v{n}".encode(), key=b"k").offset for n in range(25)]
    assert offsets == list(range(25))
    kept = broker.records(topic)
    # Trimmed a tenth at a time: never more than 10 + 1 kept, never fewer than 10, always the newest.
    assert 10 <= len(kept) <= 11
    assert [r.offset for r in kept] == list(range(25 - len(kept), 25))
    assert kept[-1].value == b"v24"


async def test_a_consumer_behind_the_retained_log_resumes_at_the_oldest_kept_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker(default_partitions=1, retention_records=5)
    topic = our_topic("retained")
    async with MemoryEventBus(broker=broker) as bus:
        for n in range(20):
            await bus.publish(topic, make_envelope(n, key="k"))
        oldest = broker.records(topic)[0].offset
        assert oldest > 0  # the first records are gone
        seen = Collector()
        await bus.subscribe([topic], group="late", handler=seen)
        await wait_until(lambda: len(seen.messages) == 20 - oldest, "the retained records")
        await bus.publish(topic, make_envelope(20, key="k"))
        await wait_until(lambda: len(seen.messages) == 21 - oldest, "the record published afterwards")
    assert [m.offset for m in seen.messages] == list(range(oldest, 21))
    assert [m.envelope.payload["n"] for m in seen.messages] == list(range(oldest, 21))
    assert broker.committed("late", topic, 0) == 21
    warning = next(r for r in caplog.records if "dropped by retention" in r.getMessage())
    assert (warning.skipped, warning.offset) == (oldest, oldest)  # type: ignore[attr-defined]
