"""The delivery rules both buses share, where a bus cannot be made to show them: a broker that refuses the dead
letter for a while, and a stop while it does. The sink is a function (what both buses hand ``Delivery``); the
record is the memory broker's."""

from __future__ import annotations

import asyncio
import time

import pytest

from framework.adapters.delivery import Delivery
from framework.adapters.memory_bus import StoredRecord
from framework.adapters.processed_events import MemoryProcessedEvents
from framework.events.cloudevents import binary_headers
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import DLT_ATTEMPTS, DeliveryPolicy, Headers, Message

TOPIC = "dev.omninode_bridge.onex.evt.thing-happened.v1"
DLT = "dev.omninode_bridge.onex.dlt.thing-happened.v1"


def failing_record() -> tuple[StoredRecord, OnexEnvelopeV1]:
    envelope = OnexEnvelopeV1(
        event_type="thing-happened", source_node_id="n", source_service="s", source_version="1.0.0", payload={}
    )
    record = StoredRecord(TOPIC, 0, 7, b"k", envelope.to_json(), tuple(binary_headers(envelope)), time.time())
    return record, envelope


class RefusingSink:
    """A dead-letter sink whose broker refuses the first ``refusals`` writes."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0
        self.refused = asyncio.Event()
        self.written: list[tuple[str, bytes | None, Headers]] = []

    async def __call__(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            self.refused.set()
            raise ConnectionError("broker away")
        self.written.append((topic, value, headers))


async def always_fails(message: Message) -> None:
    raise RuntimeError("handler failed")


def delivery(sink: RefusingSink, failures: list[tuple[str, OnexEnvelopeV1 | None, str, int]]) -> Delivery:
    return Delivery(
        group="g",
        handler=always_fails,
        policy=DeliveryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter=0.0),
        processed=MemoryProcessedEvents(),
        dead_letter=sink,
        on_failed=lambda *told: failures.append(told),
    )


async def test_a_refused_dead_letter_is_retried_until_written_and_only_then_given_up() -> None:
    record, envelope = failing_record()
    sink = RefusingSink(refusals=3)
    failures: list[tuple[str, OnexEnvelopeV1 | None, str, int]] = []

    finished = await delivery(sink, failures).handle(record, asyncio.Event())

    assert finished is True
    assert sink.calls == 4
    [(topic, value, headers)] = sink.written
    assert (topic, value) == (DLT, record.value)
    assert dict(headers)[DLT_ATTEMPTS] == b"2"
    assert failures == [(TOPIC, envelope, "dead_lettered", 2)]


async def test_a_stop_while_the_dead_letter_is_refused_leaves_the_message_to_be_delivered_again() -> None:
    record, envelope = failing_record()
    sink = RefusingSink(refusals=10**9)
    failures: list[tuple[str, OnexEnvelopeV1 | None, str, int]] = []
    interrupt = asyncio.Event()
    handling = asyncio.create_task(delivery(sink, failures).handle(record, interrupt))
    await asyncio.wait_for(sink.refused.wait(), 10)  # the dead letter was refused at least once

    interrupt.set()  # a stop, or a rebalance revoking the partition
    finished = await asyncio.wait_for(handling, 10)

    assert finished is False  # not committed: whoever owns the partition next gets it again
    assert sink.written == []
    assert failures == [(TOPIC, envelope, "interrupted", 2)]


async def test_a_delivery_cancelled_while_the_dead_letter_is_refused_reports_it_interrupted() -> None:
    record, envelope = failing_record()
    sink = RefusingSink(refusals=10**9)
    failures: list[tuple[str, OnexEnvelopeV1 | None, str, int]] = []
    handling = asyncio.create_task(delivery(sink, failures).handle(record, asyncio.Event()))
    await asyncio.wait_for(sink.refused.wait(), 10)

    handling.cancel()  # a drain timeout
    with pytest.raises(asyncio.CancelledError):
        await handling

    assert sink.written == []
    assert failures == [(TOPIC, envelope, "interrupted", 2)]
