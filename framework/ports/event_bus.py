"""The EventBus port: publish envelopes to topics; consume them in groups, at least once, with retries and a
dead-letter topic. Implementations: ``memory`` (in-process) and ``kafka`` (aiokafka); one conformance suite holds
both to this contract (tests/conformance/test_event_bus.py).

Delivery rules every implementation keeps:
- order per key within a topic; a consumer group's members split the partitions;
- an offset is committed only after the handler succeeded, or after the message went to the dead-letter topic;
- a failing handler is retried per :class:`DeliveryPolicy` (the partition waits, so order per key holds); after the
  last attempt the original message goes to the dead-letter topic with headers saying what failed;
- a message that cannot be decoded, or whose handler raises ``PoisonMessage`` (e.g. an invalid payload), goes to
  the dead-letter topic at once;
- an event id that the group already processed is skipped (:class:`ProcessedEvents`);
- ``Subscription.stop()`` drains: the handler in flight finishes and its offset is committed.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from framework.events.envelope import OnexEnvelopeV1
from framework.events.topics import TopicName, TopicNameError

Headers = tuple[tuple[str, bytes], ...]

#: Headers added to a dead-lettered message (its value and original headers are kept unchanged).
DLT_ERROR = "onex_dlt_error"
DLT_ERROR_TYPE = "onex_dlt_error_type"
DLT_ATTEMPTS = "onex_dlt_attempts"
DLT_TOPIC = "onex_dlt_original_topic"
DLT_PARTITION = "onex_dlt_original_partition"
DLT_OFFSET = "onex_dlt_original_offset"
DLT_GROUP = "onex_dlt_group"


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed message. ``attempt`` counts from 1 for each delivery of it to the handler."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    envelope: OnexEnvelopeV1
    attempt: int = 1


Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Retries and dead-lettering of one subscription (from the contract's retry subcontract)."""

    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    multiplier: float = 2.0
    max_backoff_s: float = 10.0
    jitter: float = 0.1
    dead_letter: bool = True

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), with jitter."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * random.random() - 1)))


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: class ``dlt`` for names of our form, else ``<topic>.dlt``."""
    try:
        return str(TopicName.parse(topic).dead_letter())
    except TopicNameError:
        return f"{topic}.dlt"


class ProcessedEvents(Protocol):
    """Which event ids each consumer group has processed, so redelivered events are skipped."""

    async def is_processed(self, group: str, event_id: str) -> bool: ...

    async def mark_processed(self, group: str, event_id: str) -> None: ...


class Subscription(Protocol):
    @property
    def group(self) -> str: ...

    @property
    def topics(self) -> Sequence[str]: ...

    async def stop(self) -> None:
        """Stop consuming: finish the handler in flight, commit, leave the group. Safe to call twice."""
        ...


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, topics: Iterable[str], *, partitions: int = 3) -> None:
        """Create the topics that do not exist yet (with their dead-letter topics left to the caller)."""
        ...

    async def publish(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Publish and wait for the broker's acknowledgement. ``key`` defaults to ``envelope.kafka_key()``;
        CloudEvents binary-mode headers are added to ``headers``."""
        ...

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy = DeliveryPolicy(),
    ) -> Subscription:
        """Consume ``topics`` as a member of ``group``; returns once the member is consuming."""
        ...
