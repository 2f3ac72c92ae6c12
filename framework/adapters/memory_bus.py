"""``MemoryEventBus``: the in-process EventBus, a small model of Kafka rather than a stub.

A :class:`MemoryBroker` holds what a Kafka cluster would: topics of N partitions, each an append-only log of
encoded records (value = ``envelope.to_json()``, headers with the CloudEvents binary-mode ones), and consumer groups
with their committed offsets per (topic, partition). Buses built on one broker behave like processes on one cluster,
so a test can stop a whole bus and resume with a new one.

- Retention: each partition keeps its newest ``retention_records`` records (50,000 by default; ``None`` keeps
  everything), as Kafka's size-based retention does, so a long-running ``--bus memory`` host holds bounded memory.
  Offsets keep counting; a consumer whose next offset was dropped resumes at the oldest record kept, and the skip
  is logged as a warning (Kafka's ``auto.offset.reset=earliest``).
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
  (:mod:`framework.adapters.delivery`); messages are decoded with ``decode_message`` on consumption, so poison is
  detected exactly as on Kafka.

The pieces both buses share (retries, dead-lettering, poison, idempotency) are in :mod:`framework.adapters.delivery`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from framework.adapters.delivery import (
    DEFAULT_POLICY,
    Delivery,
    check_subscription,
    check_topic_name,
    encode_headers,
)
from framework.adapters.processed_events import MemoryProcessedEvents
from framework.errors import UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DeliveryPolicy,
    DuplicateObserver,
    FailureObserver,
    Handler,
    Headers,
    ProcessedEvents,
)
from framework.ports.resource import Resource

__all__ = ["MemoryBroker", "MemoryEventBus", "MemorySubscription", "StoredRecord"]

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

#: Records each partition keeps by default (see ``MemoryBroker(retention_records=...)``).
DEFAULT_RETENTION = 50_000


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
    __slots__ = ("log", "start", "waiters")

    def __init__(self) -> None:
        self.log: list[StoredRecord] = []
        self.start = 0  # the offset of log[0]: records before it were dropped by retention
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

    def __init__(self, *, default_partitions: int = 3, retention_records: int | None = DEFAULT_RETENTION) -> None:
        _check_partitions(default_partitions)
        if retention_records is not None and (type(retention_records) is not int or retention_records < 1):
            raise UsageError(f"retention_records must be an integer >= 1 or None, got {retention_records!r}")
        self.default_partitions = default_partitions
        self.retention_records = retention_records
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
        record = StoredRecord(topic, partition, target.start + len(target.log), key, value, tuple(headers), time.time())
        log = target.log
        log.append(record)
        keep = self.retention_records
        # Dropped a tenth at a time, so that trimming the list costs O(1) per append on average.
        if keep is not None and len(log) > keep + keep // 10:
            dropped = len(log) - keep
            del log[:dropped]
            target.start += dropped
        for waiter in target.waiters:
            waiter.set()
        return record

    def records(self, topic: str) -> list[StoredRecord]:
        """Every record ``topic`` retains, partition by partition, in offset order (empty if the topic does not
        exist)."""
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

    async def publish_many(self, topic: str, envelopes: Sequence[OnexEnvelopeV1], *, headers: Headers = ()) -> None:
        self.require_started(f"publish to {topic!r}")
        check_topic_name(topic)
        # Every record is encoded before the first is appended: it is all or nothing, and nothing interleaves.
        records = [
            (envelope.to_json(), envelope.kafka_key(), encode_headers(envelope, headers)) for envelope in envelopes
        ]
        append = self.broker.append
        for value, key, record_headers in records:
            append(topic, value, key=key, headers=record_headers)

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
        fetch_max_wait_ms: int | None = None,  # checked, then unused: records are handed over as they are appended
        on_duplicate: DuplicateObserver | None = None,
        on_failed: FailureObserver | None = None,
    ) -> MemorySubscription:
        self.require_started(f"subscribe group {group!r}")
        names = check_subscription(topics, group, policy, fetch_max_wait_ms)
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
            on_duplicate=on_duplicate,
            on_failed=on_failed,
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
            if offset < part.start:
                logger.warning(
                    "records dropped by retention before this group read them; resuming at the oldest kept",
                    extra={
                        "group": group.name,
                        "topic": self.topic,
                        "partition": self.partition,
                        "skipped": part.start - offset,
                        "offset": part.start,
                    },
                )
                offset = part.start
            if offset >= part.start + len(part.log):
                self.wake.clear()
                part.waiters.add(self.wake)
                try:
                    await self.wake.wait()
                finally:
                    part.waiters.discard(self.wake)
                continue
            record = part.log[offset - part.start]
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
