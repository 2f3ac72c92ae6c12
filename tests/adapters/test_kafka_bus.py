"""What is particular to the Kafka bus, against the embedded Tansu broker (no mocks): usage and connection errors,
a member leaving mid-stream, and where offsets are committed. The port's behaviour itself is the conformance
suite's (tests/conformance/test_event_bus.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from framework.adapters.embedded_kafka import free_loopback_port
from framework.adapters.kafka_bus import DEFAULT_FETCH_MAX_WAIT_MS, KafkaEventBus, KafkaSubscription
from framework.errors import RetriablePortError, UsageError
from tests.conformance.test_event_bus import KAFKA_TEST_SETTINGS, Collector, make_envelope, wait_until


@pytest.fixture
async def bus(kafka_bootstrap: str) -> AsyncIterator[KafkaEventBus]:
    async with KafkaEventBus(kafka_bootstrap, **KAFKA_TEST_SETTINGS) as started:
        yield started


async def test_publish_before_start_is_a_usage_error() -> None:
    bus = KafkaEventBus("127.0.0.1:9")
    with pytest.raises(UsageError, match=r"cannot publish to 'orders': kafka event bus is new; call start\(\) first"):
        await bus.publish("orders", make_envelope())


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="bootstrap_servers must be 'host:port"):
        KafkaEventBus("")
    with pytest.raises(UsageError, match="drain_timeout_s must be > 0, got 0"):
        KafkaEventBus("127.0.0.1:9092", drain_timeout_s=0)
    with pytest.raises(UsageError, match="default_partitions must be an integer >= 1"):
        KafkaEventBus("127.0.0.1:9092", default_partitions=0)


async def test_starting_without_a_broker_is_a_retriable_port_error() -> None:
    port = free_loopback_port()  # nothing listens there
    bus = KafkaEventBus(f"127.0.0.1:{port}", request_timeout_ms=2000)
    with pytest.raises(RetriablePortError, match=f"connecting a producer to Kafka at 127.0.0.1:{port} failed"):
        await bus.start()
    await bus.stop()  # safe after a failed start
    with pytest.raises(UsageError, match="was stopped and cannot be restarted"):
        await bus.start()


async def test_bad_topic_is_refused_before_reaching_the_broker(bus: KafkaEventBus) -> None:
    with pytest.raises(UsageError, match="bad topic name 'a b'"):
        await bus.publish("a b", make_envelope())


async def test_offsets_are_committed_after_handling(bus: KafkaEventBus, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=3)
    group = f"group-{uuid.uuid4().hex[:12]}"
    collector = Collector()
    await bus.subscribe([topic], group=group, handler=collector)
    for n in range(30):
        await bus.publish(topic, make_envelope(n, key=f"key-{n % 7}"))
    await wait_until(lambda: len(collector.messages) == 30, "30 messages")

    # Read the group's offsets as an operator's tool would: from the broker, without joining.
    reader = AIOKafkaConsumer(bootstrap_servers=bus.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        expected = {p: 1 + max(m.offset for m in collector.messages if m.partition == p) for p in range(3)}
        committed: dict[int, int | None] = {}

        async def refresh() -> None:
            for p in range(3):
                committed[p] = await reader.committed(TopicPartition(topic, p))

        await refresh()
        for _ in range(100):
            if all((committed[p] or 0) == expected.get(p, 0) for p in range(3)):
                break
            await asyncio.sleep(0.05)
            await refresh()
        assert {p: committed[p] or 0 for p in range(3)} == {p: expected.get(p, 0) for p in range(3)}
    finally:
        await reader.stop()


async def test_a_leaving_member_hands_its_partitions_over(
    bus: KafkaEventBus, kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=4)
    group = f"group-{uuid.uuid4().hex[:12]}"
    first, second = Collector(), Collector()
    async with KafkaEventBus(kafka_bootstrap, **KAFKA_TEST_SETTINGS) as other:
        staying, leaving = await asyncio.gather(
            bus.subscribe([topic], group=group, handler=first),
            other.subscribe([topic], group=group, handler=second),
        )
        assert isinstance(staying, KafkaSubscription) and isinstance(leaving, KafkaSubscription)
        assert staying.assignment and leaving.assignment
        assert not staying.assignment & leaving.assignment
        for n in range(20):
            await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
        await wait_until(lambda: len(first.messages) + len(second.messages) == 20, "20 messages")
        await leaving.stop()

    await wait_until(lambda: staying.assignment == {(topic, p) for p in range(4)}, "all partitions on one member")
    for n in range(20, 40):
        await bus.publish(topic, make_envelope(n, key=f"key-{n}"))
    await wait_until(lambda: len(first.messages) + len(second.messages) >= 40, "40 messages")
    await asyncio.sleep(0.5)
    every = first.numbers + second.numbers
    assert sorted(every) == list(range(40))  # nothing lost, nothing twice across the handover
    assert second.messages and all(n < 20 for n in second.numbers)


async def test_a_subscription_may_poll_less_often_and_still_gets_every_event(
    bus: KafkaEventBus, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    await bus.ensure_topics([topic], partitions=1)
    with pytest.raises(UsageError, match="fetch_max_wait_ms must be an integer >= 0 or None, got -1"):
        await bus.subscribe([topic], group="never", handler=Collector(), fetch_max_wait_ms=-1)
    patient, default = Collector(), Collector()
    slow = await bus.subscribe([topic], group=f"slow-{uuid.uuid4().hex[:8]}", handler=patient, fetch_max_wait_ms=400)
    usual = await bus.subscribe([topic], group=f"usual-{uuid.uuid4().hex[:8]}", handler=default)
    # The setting reaches the consumer's fetcher (aiokafka keeps it there), and only that subscription's.
    assert slow._consumer._fetcher._fetch_max_wait_ms == 400
    assert usual._consumer._fetcher._fetch_max_wait_ms == DEFAULT_FETCH_MAX_WAIT_MS
    for n in range(5):
        await bus.publish(topic, make_envelope(n, key="k"))
    await wait_until(lambda: len(patient.messages) == 5 and len(default.messages) == 5, "5 messages each")
    assert [m.envelope.payload["n"] for m in patient.messages] == [0, 1, 2, 3, 4]
