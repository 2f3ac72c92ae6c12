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
- an event id that the group already processed is skipped (:class:`ProcessedEvents`), and reported to the
  subscription's ``on_duplicate`` observer when it has one;
- what became of a message that failed for good (its last attempt, or poison) is reported to the subscription's
  ``on_failed`` observer when it has one: dead-lettered, dropped, or interrupted (to be delivered again);
- ``Subscription.stop()`` drains: the handler in flight finishes and its offset is committed.

Publishing rules:
- ``publish`` returns once the broker acknowledged the message (``acks=all`` on Kafka); concurrent ``publish`` calls
  of one bus are handed to the producer in the order they were called, so order per key holds between them;
- ``publish_many`` hands its envelopes to the producer in the order given, as one uninterrupted run (no other
  publish of the same bus lands between them), then waits for every acknowledgement: order per key within the call
  and relative to the bus's earlier and later publishes. What the caller knows when it fails is
  :class:`PublishManyError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

from framework.backoff import backoff_s
from framework.errors import PortError
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


class Message(NamedTuple):
    """One consumed message. ``attempt`` counts from 1 for each delivery of it to the handler. Immutable; a named
    tuple rather than a frozen dataclass because one is built per delivered message (0.4 µs against 1.4)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    envelope: OnexEnvelopeV1
    attempt: int = 1


Handler = Callable[[Message], Awaitable[None]]

#: ``on_duplicate(topic, envelope)`` of ``subscribe``: called (synchronously, never awaited) for each message the
#: subscription skips because its group already processed the event id. The handler never sees those; an observer
#: (the host's event log) does.
DuplicateObserver = Callable[[str, OnexEnvelopeV1], None]

#: ``on_failed(topic, envelope, outcome, attempts)`` of ``subscribe``: called (synchronously, never awaited) once
#: for every message that failed for good (its handler's last attempt failed, or it is poison), when the delivery
#: knows what became of it: ``outcome`` is ``"dead_lettered"`` once its dead letter is written, ``"dropped"`` when
#: it has no dead-letter topic (dead-lettering off, or the topic is one), or ``"interrupted"`` when a stop or a
#: rebalance cut the dead-lettering off (the offset is not committed: it will be delivered again). ``envelope`` is
#: ``None`` for a message that could not be decoded; ``attempts`` is how many times the handler ran (0 for poison).
FailureObserver = Callable[[str, OnexEnvelopeV1 | None, str, int], None]
DEAD_LETTERED: Final = "dead_lettered"
DROPPED: Final = "dropped"
INTERRUPTED: Final = "interrupted"


class PublishManyError(PortError):
    """``publish_many`` failed for at least one envelope. Raised only once nothing of the call is in flight any more:
    every envelope handed to the producer was acknowledged or failed, and the ones after a failure to hand one over
    were never sent. What the caller knows, by index into the envelopes it passed:

    - ``acknowledged`` (ascending): written and acknowledged by the broker, durably (``acks=all``);
    - every other index is NOT known to be published: ``sent`` says how many (the first ``sent``) were handed to the
      producer; of those, the unacknowledged ones failed, but a request that timed out may still have been written,
      so publishing them again may duplicate them (consumers deduplicate by event id); indices from ``sent`` on were
      never handed over;
    - ``acknowledged`` need not be a prefix: without an idempotent producer (Tansu has none) a failed batch does not
      stop the partition's next batch, so a later envelope of a key can be acknowledged after an earlier one failed.
      Publishing the failed ones again then puts them after it: order per key holds only among the acknowledged
      ones. A caller that must never let a later event of a key overtake an earlier one across a failure publishes
      that key's events one ``publish`` at a time, each after the previous one's acknowledgement;
    - ``errors`` maps each failed index to its error (``__cause__`` is the first of them); ``retriable`` is true when
      every failure was transient.
    """

    def __init__(
        self,
        message: str,
        *,
        total: int,
        sent: int,
        acknowledged: tuple[int, ...],
        errors: dict[int, BaseException],
        retriable: bool,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.total = total
        self.sent = sent
        self.acknowledged = acknowledged
        self.errors = errors


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
        return backoff_s(
            attempt,
            initial_s=self.initial_backoff_s,
            multiplier=self.multiplier,
            max_s=self.max_backoff_s,
            jitter=self.jitter,
        )


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

    async def publish_many(self, topic: str, envelopes: Sequence[OnexEnvelopeV1], *, headers: Headers = ()) -> None:
        """Publish every envelope of ``envelopes`` to ``topic`` and return once the broker acknowledged all of them.

        Each goes with its own key, ``envelope.kafka_key()``, and ``headers`` plus its CloudEvents binary-mode
        headers. The envelopes are handed to the producer in the order given, in one run that no other publish of
        this bus interleaves, so order per key holds within the call and with the bus's other publishes; the
        acknowledgements are awaited together, which is what makes it faster than a ``publish`` per envelope.

        Checks (the topic name) happen before anything is sent: a ``UsageError`` means nothing was. On any other
        failure it waits until nothing of the call is in flight, then raises :class:`PublishManyError`, which says
        which envelopes were acknowledged. Cancelling the call while it waits for acknowledgements does not recall
        what was handed over: those envelopes may still be published. An empty ``envelopes`` publishes nothing.
        """
        ...

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy = DeliveryPolicy(),
        fetch_max_wait_ms: int | None = None,
        on_duplicate: DuplicateObserver | None = None,
        on_failed: FailureObserver | None = None,
    ) -> Subscription:
        """Consume ``topics`` as a member of ``group``; returns once the member is consuming.

        ``fetch_max_wait_ms``: how long a poll for new events may wait while none arrive (``None``: the bus's
        default). A subscription whose events are rare and not urgent takes a longer wait: it costs less while idle
        and adds up to that much latency. Buses that do not poll ignore it. ``on_duplicate``: told of every event
        skipped as already processed (see :data:`DuplicateObserver`); ``on_failed``: told what became of every
        message that failed for good (see :data:`FailureObserver`)."""
        ...
