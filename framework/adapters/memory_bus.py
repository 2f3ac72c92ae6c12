"""``MemoryEventBus``: the in-process EventBus, a small model of Kafka rather than a stub.

A :class:`MemoryBroker` holds what a Kafka cluster would: topics of N partitions, each an append-only log of
encoded records (value = ``envelope.to_json()``, headers with the CloudEvents binary-mode ones), and consumer groups
with their committed offsets per (topic, partition). Buses built on one broker behave like processes on one cluster,
so a test can stop a whole bus and resume with a new one.

- Partition = ``zlib.crc32(key) % N`` (stable across processes; Kafka uses murmur2, so the same key may land on
  another partition number there — only "same key, same partition" is promised); records without a key go round
  robin.
- A group's members split the partitions of each topic in contiguous ranges, in join order. A member joining or
  leaving rebalances the group: partitions that move are first revoked from their owner (its handler in flight
  finishes and its offset is committed), then handed to the new owner, which resumes from the committed offset. Only
  moved partitions pause, as in Kafka's cooperative rebalancing.
- Each assigned partition is consumed by its own task, one message at a time, and its offset committed after every
  message: a memory commit costs nothing, so there is no reason to batch.
- Retries, backoff, the dead-letter topic, poison messages and idempotency are the same code as the Kafka bus
  (:class:`Delivery`, below); messages are decoded with ``decode_message`` on consumption, so poison is detected
  exactly as on Kafka.

This module also holds the pieces both buses share (:class:`Delivery`, :func:`encode_headers`,
:func:`check_topic_name`, :func:`check_subscription`): the rules of the port in one place.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from framework.adapters.processed_events import MemoryProcessedEvents
from framework.errors import UsageError
from framework.events.cloudevents import binary_headers, decode_message
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DLT_ATTEMPTS,
    DLT_ERROR,
    DLT_ERROR_TYPE,
    DLT_GROUP,
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TOPIC,
    DeliveryPolicy,
    Handler,
    Headers,
    Message,
    ProcessedEvents,
    dead_letter_topic,
)
from framework.ports.resource import Resource

__all__ = [
    "DEFAULT_POLICY",
    "DeadLetterSink",
    "Delivery",
    "MemoryBroker",
    "MemoryEventBus",
    "MemorySubscription",
    "Record",
    "StoredRecord",
    "check_subscription",
    "check_topic_name",
    "encode_headers",
]

logger = logging.getLogger(__name__)

_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC_LENGTH: Final = 249
#: The port's default policy, shared (it is frozen).
DEFAULT_POLICY: Final = DeliveryPolicy()
#: Dead-letter error texts are cut here: a header is no place for a megabyte of exception text.
_MAX_ERROR_TEXT: Final = 2000
#: Cap on the wait between attempts to write a dead letter while the broker refuses it.
_MAX_DLT_RETRY_S: Final = 5.0


# --- shared by both buses ----------------------------------------------------------------------------------------


def check_topic_name(topic: object) -> str:
    """Kafka's own rule for topic names, so the memory bus refuses what Kafka would refuse."""
    if not isinstance(topic, str) or not topic:
        raise UsageError(f"a topic name must be a non-empty string, got {topic!r}")
    if len(topic) > _MAX_TOPIC_LENGTH or _TOPIC_RE.fullmatch(topic) is None or topic in {".", ".."}:
        raise UsageError(
            f"bad topic name {topic!r}: Kafka allows 1-{_MAX_TOPIC_LENGTH} characters of [A-Za-z0-9._-], "
            "not '.' or '..'"
        )
    return topic


def check_subscription(topics: Sequence[str], group: str, policy: DeliveryPolicy) -> tuple[str, ...]:
    """The arguments of ``subscribe``, checked; returns the topics without duplicates, in order."""
    if isinstance(topics, str):
        raise UsageError(f"topics must be a sequence of topic names, got the string {topics!r}; write [{topics!r}]")
    names = tuple(dict.fromkeys(check_topic_name(topic) for topic in topics))
    if not names:
        raise UsageError("subscribe needs at least one topic, got none")
    if not isinstance(group, str) or not group:
        raise UsageError(f"group must be a non-empty string, got {group!r}")
    if type(policy.max_attempts) is not int or policy.max_attempts < 1:
        raise UsageError(f"DeliveryPolicy.max_attempts must be an integer >= 1, got {policy.max_attempts!r}")
    return names


def encode_headers(envelope: OnexEnvelopeV1, headers: Headers) -> list[tuple[str, bytes]]:
    """``headers`` plus the CloudEvents binary-mode headers of ``envelope``.

    A caller's header with a CloudEvents name is replaced: the envelope is authoritative (``decode_message`` reads
    the value, not the headers), and a second, contradicting ``ce_id`` would mislead every CloudEvents consumer.
    """
    ce = binary_headers(envelope)
    if not headers:
        return ce
    names = {name for name, _ in ce}
    return [(name, value) for name, value in headers if name not in names] + ce


class Record(Protocol):
    """A consumed record as both buses hold it: aiokafka's ``ConsumerRecord`` and :class:`StoredRecord` fit."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


#: Writes one dead letter: (dead-letter topic, key, value, headers); raises if the broker did not take it.
DeadLetterSink = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[None]]


async def wait_interrupted(interrupt: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``interrupt`` is set first; return whether it was."""
    if interrupt.is_set():
        return True
    if delay <= 0:
        await asyncio.sleep(0)
        return interrupt.is_set()
    try:
        await asyncio.wait_for(interrupt.wait(), delay)
    except TimeoutError:
        return False
    return True


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class Delivery:
    """What one subscription does with one consumed record; the delivery rules of the port, shared by both buses.

    ``handle`` returns ``True`` when the record is finished — handled, skipped as already processed, dead-lettered,
    or dropped — and its offset may be committed; ``False`` when ``interrupt`` was set while it waited (between
    attempts, or for the dead-letter topic): then the offset must not be committed and the record will be delivered
    again to whoever owns the partition next. A handler in flight is never interrupted; only a drain timeout cancels
    it, which raises ``CancelledError`` out of ``handle``.

    Decisions:
    - every ``Exception`` from the handler is retried per the policy (``BaseException`` such as cancellation is not
      caught); the partition waits meanwhile, so order per key holds;
    - a poison message is dead-lettered with ``DLT_ATTEMPTS`` = ``0``: the handler never saw it;
    - with ``policy.dead_letter`` off, or on a topic that is its own dead-letter topic (a ``dlt`` topic of our naming
      — writing there would feed the failure back to ourselves forever), the message is logged and dropped;
    - a message goes to the dead-letter topic with its value, key and original headers unchanged plus the ``DLT_*``
      headers; if the broker refuses the dead letter, it is retried (the partition waits) until it succeeds or the
      subscription stops, because committing without it would lose the message;
    - dead-lettered and dropped event ids are not marked processed: a replay after a fix handles them.
    """

    __slots__ = ("_dead_letter_sink", "_environment", "_group", "_handler", "_policy", "_processed")

    def __init__(
        self,
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy,
        processed: ProcessedEvents,
        dead_letter: DeadLetterSink,
        environment: str = "dev",
    ) -> None:
        self._group = group
        self._handler = handler
        self._policy = policy
        self._processed = processed
        self._dead_letter_sink = dead_letter
        self._environment = environment

    async def handle(self, record: Record, interrupt: asyncio.Event) -> bool:
        topic, partition, offset = record.topic, record.partition, record.offset
        key, value, headers = record.key, record.value, tuple(record.headers)
        try:
            envelope = decode_message(value, headers, environment=self._environment)
        except Exception as exc:  # any failure to decode makes the record poison, whatever raised it
            logger.error(
                "undecodable message",
                extra=self._where(topic, partition, offset, None, error=_error_text(exc)),
            )
            return await self._dead_letter(record, headers, exc, attempts=0, event_id=None, interrupt=interrupt)
        if value is None:
            value = b""  # a foreign binary-mode CloudEvent may carry no data at all
        event_id = str(envelope.event_id)
        try:
            seen = await self._processed.is_processed(self._group, event_id)
        except Exception as exc:  # a store that is away must not stop the stream; handlers are idempotent too
            logger.warning(
                "could not check whether the event was processed; handling it",
                extra=self._where(topic, partition, offset, event_id, error=_error_text(exc)),
            )
            seen = False
        if seen:
            logger.info("skipped already processed event", extra=self._where(topic, partition, offset, event_id))
            return True
        attempt = 1
        while True:
            try:
                await self._handler(Message(topic, partition, offset, key, value, headers, envelope, attempt))
            except Exception as exc:  # the handler's failure is data here: retry, then dead-letter
                if attempt >= self._policy.max_attempts:
                    return await self._dead_letter(
                        record, headers, exc, attempts=attempt, event_id=event_id, interrupt=interrupt
                    )
                delay = self._policy.backoff(attempt)
                logger.warning(
                    "handler failed, will retry",
                    extra=self._where(
                        topic,
                        partition,
                        offset,
                        event_id,
                        attempt=attempt,
                        max_attempts=self._policy.max_attempts,
                        backoff_s=round(delay, 4),
                        error=_error_text(exc),
                        error_type=_error_type(exc),
                    ),
                )
                if await wait_interrupted(interrupt, delay):
                    return False
                attempt += 1
            else:
                try:
                    await self._processed.mark_processed(self._group, event_id)
                except Exception as exc:  # the effect happened; the worst case is a duplicate, never a loss
                    logger.warning(
                        "could not record the event as processed",
                        extra=self._where(topic, partition, offset, event_id, error=_error_text(exc)),
                    )
                return True

    async def _dead_letter(
        self,
        record: Record,
        headers: Headers,
        exc: BaseException,
        *,
        attempts: int,
        event_id: str | None,
        interrupt: asyncio.Event,
    ) -> bool:
        topic, partition, offset = record.topic, record.partition, record.offset
        where = self._where(
            topic, partition, offset, event_id, attempts=attempts, error=_error_text(exc), error_type=_error_type(exc)
        )
        dlt = dead_letter_topic(topic)
        if not self._policy.dead_letter or dlt == topic:
            reason = "dead-lettering is off" if not self._policy.dead_letter else "the topic is a dead-letter topic"
            logger.error(f"message dropped: {reason}", extra=where)
            return True
        dlt_headers: Headers = (
            *headers,
            (DLT_ERROR, _error_text(exc).encode("utf-8", "replace")),
            (DLT_ERROR_TYPE, _error_type(exc).encode()),
            (DLT_ATTEMPTS, str(attempts).encode()),
            (DLT_TOPIC, topic.encode()),
            (DLT_PARTITION, str(partition).encode()),
            (DLT_OFFSET, str(offset).encode()),
            (DLT_GROUP, self._group.encode()),
        )
        failures = 0
        while True:
            try:
                await self._dead_letter_sink(dlt, record.key, record.value, dlt_headers)
            except Exception as sink_error:  # the broker refused or is away: the partition waits for it
                failures += 1
                delay = min(_MAX_DLT_RETRY_S, self._policy.backoff(failures))
                logger.warning(
                    "could not write dead letter, will retry",
                    extra={**where, "dead_letter_topic": dlt, "sink_error": repr(sink_error), "backoff_s": delay},
                )
                if await wait_interrupted(interrupt, delay):
                    return False
            else:
                logger.error("message dead-lettered", extra={**where, "dead_letter_topic": dlt})
                return True

    def _where(
        self, topic: str, partition: int, offset: int, event_id: str | None, **more: object
    ) -> dict[str, object]:
        return {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event_id": event_id,
            "group": self._group,
            **more,
        }


# --- the in-process broker ---------------------------------------------------------------------------------------

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record of a partition's log, as a Kafka consumer would see it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: float


class _Partition:
    __slots__ = ("log", "waiters")

    def __init__(self) -> None:
        self.log: list[StoredRecord] = []
        # Consumers parked at the end of the log; an append wakes them all.
        self.waiters: set[asyncio.Event] = set()


class _Topic:
    __slots__ = ("name", "next_round_robin", "partitions")

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.partitions = [_Partition() for _ in range(partitions)]
        self.next_round_robin = 0


class _Group:
    __slots__ = ("committed", "lock", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: list[MemorySubscription] = []
        self.committed: dict[TopicPartition, int] = {}
        # One membership change at a time, as a group coordinator does.
        self.lock = asyncio.Lock()


class MemoryBroker:
    """Topics and consumer groups shared by every :class:`MemoryEventBus` built on it: the stand-in for a cluster."""

    def __init__(self, *, default_partitions: int = 3) -> None:
        _check_partitions(default_partitions)
        self.default_partitions = default_partitions
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}

    def create_topic(self, topic: str, partitions: int | None = None) -> bool:
        """Create ``topic`` unless it exists (an existing topic keeps its partition count); return whether created."""
        check_topic_name(topic)
        count = self.default_partitions if partitions is None else _check_partitions(partitions)
        if topic in self._topics:
            return False
        self._topics[topic] = _Topic(topic, count)
        return True

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or ``None`` if it does not exist."""
        found = self._topics.get(topic)
        return None if found is None else len(found.partitions)

    def partition_for(self, topic: str, key: bytes) -> int:
        """Where a record with ``key`` goes: ``crc32(key) % partitions`` (the topic is created if missing)."""
        return zlib.crc32(key) % len(self._topic(topic).partitions)

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> StoredRecord:
        """Append one record, as a producer would (unknown topics are created, as Kafka and Tansu do)."""
        found = self._topic(topic)
        count = len(found.partitions)
        if partition is None:
            if key is None:
                partition = found.next_round_robin % count
                found.next_round_robin += 1
            else:
                partition = zlib.crc32(key) % count
        elif type(partition) is not int or not 0 <= partition < count:
            raise UsageError(f"partition {partition!r} does not exist in topic {topic!r}, which has {count}")
        target = found.partitions[partition]
        record = StoredRecord(topic, partition, len(target.log), key, value, tuple(headers), time.time())
        target.log.append(record)
        for waiter in target.waiters:
            waiter.set()
        return record

    def records(self, topic: str) -> list[StoredRecord]:
        """Every record of ``topic``, partition by partition, in offset order (empty if the topic does not exist)."""
        found = self._topics.get(topic)
        if found is None:
            return []
        return [record for part in found.partitions for record in part.log]

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        """The offset ``group`` committed for a partition (the next one it will read), or ``None``."""
        found = self._groups.get(group)
        return None if found is None else found.committed.get((topic, partition))

    def members(self, group: str) -> int:
        found = self._groups.get(group)
        return 0 if found is None else len(found.members)

    def _topic(self, topic: str) -> _Topic:
        found = self._topics.get(topic)
        if found is None:
            self.create_topic(topic)
            found = self._topics[topic]
        return found

    def _group(self, group: str) -> _Group:
        found = self._groups.get(group)
        if found is None:
            found = self._groups[group] = _Group(group)
        return found

    def _target_assignment(self, group: _Group) -> dict[int, set[TopicPartition]]:
        """Contiguous ranges of each topic's partitions over its subscribers, in join order, as Kafka's range
        assignor does: deterministic, so tests can name who owns what."""
        target: dict[int, set[TopicPartition]] = {id(member): set() for member in group.members}
        for topic in sorted({t for member in group.members for t in member.topics}):
            subscribers = [member for member in group.members if topic in member.topics]
            count = len(self._topic(topic).partitions)
            share, extra = divmod(count, len(subscribers))
            start = 0
            for index, member in enumerate(subscribers):
                size = share + (1 if index < extra else 0)
                target[id(member)].update((topic, p) for p in range(start, start + size))
                start += size
        return target

    async def _rebalance(self, group: _Group) -> None:
        """Revoke what moves (draining it), then assign; the caller holds ``group.lock``."""
        target = self._target_assignment(group)
        await asyncio.gather(*(member._revoke(member.assignment - target[id(member)]) for member in group.members))
        for member in group.members:
            member._assign(target[id(member)] - member.assignment)


def _check_partitions(partitions: object) -> int:
    if type(partitions) is not int or partitions < 1:
        raise UsageError(f"partitions must be an integer >= 1, got {partitions!r}")
    return partitions


# --- the bus -----------------------------------------------------------------------------------------------------


class MemoryEventBus(Resource):
    """The in-process :class:`framework.ports.event_bus.EventBus`.

    ``broker`` lets several buses share topics and groups (a new :class:`MemoryBroker` by default);
    ``processed_events`` records what each group handled (a new :class:`MemoryProcessedEvents` by default);
    ``drain_timeout_s`` bounds how long stopping (or a rebalance) waits for a handler in flight.
    """

    resource_name = "memory event bus"

    def __init__(
        self,
        *,
        broker: MemoryBroker | None = None,
        processed_events: ProcessedEvents | None = None,
        environment: str = "dev",
        drain_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        if drain_timeout_s <= 0:
            raise UsageError(f"drain_timeout_s must be > 0, got {drain_timeout_s!r}")
        self.broker = broker if broker is not None else MemoryBroker()
        self.processed_events: ProcessedEvents = (
            processed_events if processed_events is not None else MemoryProcessedEvents()
        )
        self._environment = environment
        self._drain_timeout_s = drain_timeout_s
        self._subscriptions: set[MemorySubscription] = set()

    async def ensure_topics(self, topics: Iterable[str], *, partitions: int = 3) -> None:
        self.require_started("ensure topics")
        names = [check_topic_name(topic) for topic in topics]
        _check_partitions(partitions)
        for name in names:
            self.broker.create_topic(name, partitions)

    async def publish(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        self.require_started(f"publish to {topic!r}")
        check_topic_name(topic)
        self.broker.append(
            topic,
            envelope.to_json(),
            key=envelope.kafka_key() if key is None else key,
            headers=encode_headers(envelope, headers),
        )

    def append_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> StoredRecord:
        """Append bytes as they are, bypassing the envelope: how tests produce poison, as a foreign producer
        would on Kafka."""
        self.require_started(f"append to {topic!r}")
        check_topic_name(topic)
        return self.broker.append(topic, value, key=key, headers=headers, partition=partition)

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy = DEFAULT_POLICY,
    ) -> MemorySubscription:
        self.require_started(f"subscribe group {group!r}")
        names = check_subscription(topics, group, policy)
        for name in names:
            # A consumer's metadata request creates unknown topics on Kafka too; creating them here means the
            # assignment covers every partition from the start.
            self.broker.create_topic(name)
        delivery = Delivery(
            group=group,
            handler=handler,
            policy=policy,
            processed=self.processed_events,
            dead_letter=self._write_dead_letter,
            environment=self._environment,
        )
        subscription = MemorySubscription(self, names, group, delivery, self._drain_timeout_s)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _write_dead_letter(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.broker.append(topic, value, key=key, headers=headers)

    async def _stop(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        results = await asyncio.gather(*(s.stop() for s in subscriptions), return_exceptions=True)
        for subscription, result in zip(subscriptions, results, strict=True):
            if isinstance(result, Exception):
                logger.error("subscription did not stop cleanly", exc_info=result, extra={"member": subscription.name})

    def _forget(self, subscription: MemorySubscription) -> None:
        self._subscriptions.discard(subscription)


_member_ids = itertools.count(1)


class MemorySubscription(Resource):
    """One member of a consumer group: a task per assigned partition."""

    def __init__(
        self,
        bus: MemoryEventBus,
        topics: tuple[str, ...],
        group: str,
        delivery: Delivery,
        drain_timeout_s: float,
    ) -> None:
        super().__init__()
        self.member_id = f"memory-{next(_member_ids)}"
        self.resource_name = f"subscription {self.member_id} of group {group!r} to {', '.join(topics)}"
        self._bus = bus
        self._broker = bus.broker
        self._topics = topics
        self._group_name = group
        self._group = bus.broker._group(group)
        self._delivery = delivery
        self._drain_timeout_s = drain_timeout_s
        self._workers: dict[TopicPartition, _PartitionWorker] = {}

    @property
    def group(self) -> str:
        return self._group_name

    @property
    def topics(self) -> Sequence[str]:
        return self._topics

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The (topic, partition) pairs this member consumes now."""
        return frozenset(self._workers)

    async def _start(self) -> None:
        async with self._group.lock:
            self._group.members.append(self)
            await self._broker._rebalance(self._group)
        logger.info(
            "memory subscription joined",
            extra={"group": self._group_name, "topics": list(self._topics), "member": self.member_id},
        )

    async def _stop(self) -> None:
        try:
            async with self._group.lock:
                await self._revoke(set(self._workers))
                if self in self._group.members:
                    self._group.members.remove(self)
                    await self._broker._rebalance(self._group)
        finally:
            self._bus._forget(self)
        logger.info("memory subscription left", extra={"group": self._group_name, "member": self.member_id})

    def _assign(self, partitions: set[TopicPartition]) -> None:
        for topic, partition in sorted(partitions):
            self._workers[(topic, partition)] = _PartitionWorker(self, topic, partition)
        if partitions:
            logger.info(
                "partitions assigned",
                extra={"group": self._group_name, "member": self.member_id, "partitions": sorted(partitions)},
            )

    async def _revoke(self, partitions: Iterable[TopicPartition]) -> None:
        workers = [self._workers.pop(tp) for tp in sorted(partitions) if tp in self._workers]
        if not workers:
            return
        for worker in workers:
            worker.interrupt.set()
            worker.wake.set()
        _, late = await asyncio.wait([worker.task for worker in workers], timeout=self._drain_timeout_s)
        for task in late:
            # The handler overran the drain: cancelled, its offset stays uncommitted, the next owner gets it again.
            task.cancel()
        if late:
            logger.warning(
                "handler did not finish within the drain timeout; cancelled, its message will be redelivered",
                extra={"group": self._group_name, "member": self.member_id, "drain_timeout_s": self._drain_timeout_s},
            )
            await asyncio.gather(*late, return_exceptions=True)
        logger.info(
            "partitions revoked",
            extra={
                "group": self._group_name,
                "member": self.member_id,
                "partitions": [(w.topic, w.partition) for w in workers],
            },
        )


class _PartitionWorker:
    """Consumes one partition for one member, from the group's committed offset, one message at a time."""

    __slots__ = ("interrupt", "partition", "task", "topic", "wake")

    def __init__(self, member: MemorySubscription, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.interrupt = asyncio.Event()  # stop after the message in flight
        self.wake = asyncio.Event()  # new records, or the interrupt
        self.task = asyncio.create_task(self._run(member), name=f"memory-bus {member.group} {topic}[{partition}]")
        self.task.add_done_callback(self._report_crash)

    async def _run(self, member: MemorySubscription) -> None:
        group = member._group
        tp = (self.topic, self.partition)
        part = member._broker._topic(self.topic).partitions[self.partition]
        offset = group.committed.get(tp, 0)
        delivery = member._delivery
        while not self.interrupt.is_set():
            if offset >= len(part.log):
                self.wake.clear()
                part.waiters.add(self.wake)
                try:
                    await self.wake.wait()
                finally:
                    part.waiters.discard(self.wake)
                continue
            record = part.log[offset]
            if not await delivery.handle(record, self.interrupt):
                return
            group.committed[tp] = offset + 1
            offset += 1
            # A handler that never awaits would otherwise keep the loop to itself until the log ends.
            await asyncio.sleep(0)

    def _report_crash(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error(
                "memory bus partition consumer crashed",
                exc_info=exc,
                extra={"topic": self.topic, "partition": self.partition},
            )
