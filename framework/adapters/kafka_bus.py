"""``KafkaEventBus``: the EventBus on aiokafka, for Kafka and Kafka-compatible brokers such as the embedded Tansu.

Producing: one shared ``AIOKafkaProducer`` with ``acks="all"`` and a small linger, without idempotence or
transactions (Tansu refuses ``InitProducerId``; ARCHITECTURE §5 relies on the outbox and idempotent consumers
instead). ``publish`` waits for the acknowledgement. Records are handed to the producer one publisher at a time, in
the order of the calls (``_Turns``, a FIFO lock whose free turn costs no coroutine; ``send()`` only appends to
aiokafka's per-partition batch), and the acknowledgement is awaited outside the turn: with many concurrent
publishers, aiokafka's accumulator otherwise wakes every waiting publisher each time a full batch drains (each
retries its append), and the turns also keep the order of concurrent publishes the order of the calls.
Batches are ``max_batch_size`` (1 MiB by default, aiokafka's 16 KB holds ~10 of our records) so that a burst goes
out in few requests. ``publish_many`` hands a whole run of envelopes over in one turn, then awaits all the
acknowledgements together: the fast way to publish many events.

Fetch wait: ``fetch_max_wait_ms`` (default :data:`DEFAULT_FETCH_MAX_WAIT_MS`, 20 ms) bounds how long the broker holds
a fetch when it has less than ``fetch_min_bytes``. Tansu holds a fetch for about the whole wait even when data
arrives meanwhile, so aiokafka's default of 500 ms adds 100-500 ms to every publish → handler latency; 20 ms keeps
it to a few ms while an idle consumer fetches only 50 times a second (5 ms would be ~200 and cost throughput).
``subscribe(..., fetch_max_wait_ms=...)`` sets it per subscription: the host's consumer of requests for introspection,
which are rare and not urgent, waits 500 ms, which took an idle stamping host from about 9% of a core to about 7%
and the embedded broker from about 8.5% to about 5.5%.

Consuming: one ``AIOKafkaConsumer`` per subscription, ``enable_auto_commit=False``, ``auto_offset_reset="earliest"``.
A loop takes batches with ``getmany()``; within a batch each partition's records are handled in order, one at a
time, and different partitions concurrently (so one partition's backoff does not hold the others' records already
fetched). The rules of the port — decode, skip processed ids, retry with backoff, dead-letter, poison — are
:class:`framework.adapters.memory_bus.Delivery`, shared with the memory bus.

Commit strategy: after a record is finished its ``offset + 1`` goes into a pending map; when a batch is done, the
pending offsets of every partition are committed in ONE ``OffsetCommit`` request, by a background task (at most one
in flight; offsets finished meanwhile wait for the next). So an offset is only committed after its handler
succeeded (or the record was dead-lettered), as the port requires, but a burst costs one commit per batch (up to
``max_poll_records`` records) instead of one synchronous round trip per message, and the commit never sits between a
fetched record and its handler. The price is the usual one of at-least-once: a crash between a handler and the next
commit redelivers at most the records of the batches since the last commit, which the idempotent consumer skips.
Before partitions are revoked (a rebalance) and when a subscription stops, the handler in flight finishes, new
records are no longer started, and everything pending is committed synchronously.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.protocol.group import LeaveGroupRequest

from framework.adapters.delivery import (
    DEFAULT_POLICY,
    Delivery,
    check_subscription,
    check_topic_name,
    encode_headers,
)
from framework.adapters.embedded_kafka import create_topics
from framework.adapters.processed_events import MemoryProcessedEvents
from framework.errors import PortError, RetriablePortError, UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DeliveryPolicy,
    DuplicateObserver,
    FailureObserver,
    Handler,
    Headers,
    ProcessedEvents,
    PublishManyError,
)
from framework.ports.resource import Resource

__all__ = ["DEFAULT_FETCH_MAX_WAIT_MS", "DEFAULT_MAX_BATCH_SIZE", "KafkaEventBus", "KafkaSubscription"]

logger = logging.getLogger(__name__)

#: How long the broker may hold a fetch waiting for data (see the module docstring).
DEFAULT_FETCH_MAX_WAIT_MS = 20
#: Producer batch size per partition, bytes.
DEFAULT_MAX_BATCH_SIZE = 1024 * 1024


class _Turns:
    """Turns at the producer, one publisher at a time, in the order they asked (what ``asyncio.Lock`` gives, which
    the bus used): a free turn is taken without a coroutine, which matters on the path of every message (the lock's
    ``async with`` cost about 2 µs of each publish's ~50). A waiter cancelled before its turn leaves the line; one
    cancelled after being handed the turn passes it on."""

    __slots__ = ("_busy", "_waiting")

    def __init__(self) -> None:
        self._busy = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> bool:
        """Take the turn if it is free and nobody waits for it; the caller must :meth:`release` it."""
        if self._busy or self._waiting:
            return False
        self._busy = True
        return True

    async def wait(self) -> None:
        """Wait for the turn (after everyone who asked before); the caller must :meth:`release` it."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                with contextlib.suppress(ValueError):  # still in line: leave it
                    self._waiting.remove(turn)
            else:  # handed the turn as the cancellation arrived: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # handed over: the turn stays taken
                return
        self._busy = False


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError) or bool(getattr(exc, "retriable", False))


def _port_error(action: str, exc: BaseException) -> PortError:
    retriable = _retriable(exc)
    cls = RetriablePortError if retriable else PortError
    return cls(f"{action} failed: {type(exc).__name__}: {exc}", retriable=retriable)


class KafkaEventBus(Resource):
    """The Kafka :class:`framework.ports.event_bus.EventBus`.

    Consumer settings are per bus: ``heartbeat_interval_ms`` is how soon a member notices a rebalance (Tansu then
    waits 3 s for the group to form, whatever the client asks); ``drain_timeout_s`` bounds how long stopping or a
    revocation waits for a handler in flight (keep it below ``rebalance_timeout_ms``, which the broker gives members
    to rejoin); ``join_timeout_s`` bounds ``subscribe``. ``default_partitions`` is used for topics that
    ``subscribe`` or a dead letter finds missing. ``fetch_max_wait_ms`` is how long the broker may hold a fetch
    (the floor of publish → handler latency on Tansu); ``max_batch_size`` is the producer's batch size per
    partition in bytes (a broker refuses batches above its ``message.max.bytes``, 1 MiB by default on Kafka).
    """

    resource_name = "kafka event bus"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "onex",
        processed_events: ProcessedEvents | None = None,
        environment: str = "dev",
        linger_ms: int = 1,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_poll_records: int = 500,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
        poll_timeout_ms: int = 500,
        heartbeat_interval_ms: int = 1000,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        request_timeout_ms: int = 30_000,
        drain_timeout_s: float = 25.0,
        join_timeout_s: float = 30.0,
        default_partitions: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise UsageError(f"bootstrap_servers must be 'host:port[,host:port...]', got {bootstrap_servers!r}")
        for name, value in (("drain_timeout_s", drain_timeout_s), ("join_timeout_s", join_timeout_s)):
            if value <= 0:
                raise UsageError(f"{name} must be > 0, got {value!r}")
        if type(default_partitions) is not int or default_partitions < 1:
            raise UsageError(f"default_partitions must be an integer >= 1, got {default_partitions!r}")
        if type(max_batch_size) is not int or max_batch_size < 1024:
            raise UsageError(f"max_batch_size must be an integer >= 1024 (bytes), got {max_batch_size!r}")
        if type(fetch_max_wait_ms) is not int or fetch_max_wait_ms < 0:
            raise UsageError(f"fetch_max_wait_ms must be an integer >= 0, got {fetch_max_wait_ms!r}")
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.processed_events: ProcessedEvents = (
            processed_events if processed_events is not None else MemoryProcessedEvents()
        )
        self._environment = environment
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._request_timeout_ms = request_timeout_ms
        self._default_partitions = default_partitions
        self._consumer_settings: dict[str, Any] = {
            "max_poll_records": max_poll_records,
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "session_timeout_ms": session_timeout_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
            "request_timeout_ms": request_timeout_ms,
        }
        self._poll_timeout_ms = poll_timeout_ms
        self._drain_timeout_s = drain_timeout_s
        self._join_timeout_s = join_timeout_s
        self._producer: Any = None
        # Held while records are handed to the producer (never while waiting for an acknowledgement).
        self._turns = _Turns()
        self._subscriptions: set[KafkaSubscription] = set()
        self._known_dead_letter_topics: set[str] = set()

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_size,
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise _port_error(f"connecting a producer to Kafka at {self.bootstrap_servers}", exc) from exc
        logger.info("kafka event bus started", extra={"bootstrap_servers": self.bootstrap_servers})

    async def _stop(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        try:
            await _stop_all(subscriptions)
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                try:
                    await producer.stop()
                except KafkaError as exc:  # the broker went away; the client is closed all the same
                    logger.warning("kafka producer did not stop cleanly", extra={"error": repr(exc)})
        logger.info("kafka event bus stopped", extra={"bootstrap_servers": self.bootstrap_servers})

    async def ensure_topics(self, topics: Iterable[str], *, partitions: int = 3) -> None:
        self.require_started("ensure topics")
        names = [check_topic_name(topic) for topic in topics]
        await create_topics(self.bootstrap_servers, names, partitions=partitions)

    async def publish(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        self.require_started(f"publish to {topic!r}")
        check_topic_name(topic)
        producer = self._producer
        value = envelope.to_json()
        record_key = envelope.kafka_key() if key is None else key
        record_headers = encode_headers(envelope, headers)
        turns = self._turns
        try:
            if not turns.take():
                await turns.wait()
            try:
                ack = await producer.send(topic, value, key=record_key, headers=record_headers)
            finally:
                turns.release()
            await ack
        except KafkaError as exc:
            raise _port_error(f"publishing event {envelope.event_id} to {topic!r}", exc) from exc

    async def publish_many(self, topic: str, envelopes: Sequence[OnexEnvelopeV1], *, headers: Headers = ()) -> None:
        self.require_started(f"publish to {topic!r}")
        check_topic_name(topic)
        if not envelopes:
            return
        producer = self._producer
        send = producer.send
        acks: list[asyncio.Future[Any]] = []
        send_error: Exception | None = None
        turns = self._turns
        if not turns.take():
            await turns.wait()
        try:
            for envelope in envelopes:
                try:
                    acks.append(
                        await send(
                            topic,
                            envelope.to_json(),
                            key=envelope.kafka_key(),
                            headers=encode_headers(envelope, headers),
                        )
                    )
                except Exception as exc:  # nothing more is sent; what was sent is still awaited below
                    send_error = exc
                    break
        finally:
            turns.release()
        outcomes = await asyncio.gather(*acks, return_exceptions=True)
        errors: dict[int, BaseException] = {
            index: outcome for index, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)
        }
        if send_error is None and not errors:
            return
        if send_error is not None:
            errors[len(acks)] = send_error
        acknowledged = tuple(index for index in range(len(acks)) if index not in errors)
        first_index = min(errors)
        first = errors[first_index]
        retriable = all(_retriable(error) for error in errors.values())
        raise PublishManyError(
            f"publishing {len(envelopes)} envelopes to {topic!r} failed: {len(acknowledged)} acknowledged, "
            f"{len(acks) - len(acknowledged)} sent and failed, {len(envelopes) - len(acks)} not sent. "
            f"First failure, envelope {first_index} (event "
            f"{envelopes[first_index].event_id}): {type(first).__name__}: {first}",
            total=len(envelopes),
            sent=len(acks),
            acknowledged=acknowledged,
            errors=errors,
            retriable=retriable,
        ) from first

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy = DEFAULT_POLICY,
        fetch_max_wait_ms: int | None = None,
        on_duplicate: DuplicateObserver | None = None,
        on_failed: FailureObserver | None = None,
    ) -> KafkaSubscription:
        self.require_started(f"subscribe group {group!r}")
        names = check_subscription(topics, group, policy, fetch_max_wait_ms)
        # A consumer of a missing topic would join with nothing assigned and only notice the topic at its next
        # metadata refresh (minutes); creating it now makes the assignment cover its partitions at once.
        await create_topics(self.bootstrap_servers, names, partitions=self._default_partitions)
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
        subscription = KafkaSubscription(self, names, group, delivery, fetch_max_wait_ms)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _write_dead_letter(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        if topic not in self._known_dead_letter_topics:
            # Explicitly, rather than by auto-creation, which a production broker may have switched off.
            await create_topics(self.bootstrap_servers, [topic], partitions=self._default_partitions)
            self._known_dead_letter_topics.add(topic)
        producer = self._producer
        if producer is None:
            raise PortError(f"cannot write a dead letter to {topic!r}: the bus is stopping")
        await producer.send_and_wait(topic, value, key=key, headers=list(headers))

    def _forget(self, subscription: KafkaSubscription) -> None:
        self._subscriptions.discard(subscription)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self._subscription._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._subscription._on_assigned(assigned)


class KafkaSubscription(Resource):
    """One consumer-group member: an ``AIOKafkaConsumer`` and the loop that feeds its records to the handler."""

    def __init__(
        self,
        bus: KafkaEventBus,
        topics: tuple[str, ...],
        group: str,
        delivery: Delivery,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        super().__init__()
        self.resource_name = f"kafka subscription of group {group!r} to {', '.join(topics)}"
        self._bus = bus
        self._topics = topics
        self._group = group
        self._delivery = delivery
        self._settings = dict(bus._consumer_settings)
        if fetch_max_wait_ms is not None:
            self._settings["fetch_max_wait_ms"] = fetch_max_wait_ms
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._assigned = asyncio.Event()
        # Set to stop starting new records: by stop() for good, by a revocation until it has committed.
        self._interrupt = asyncio.Event()
        self._stopping = False
        # Held while a batch is handled; a revocation takes it to wait for the handlers in flight.
        self._batch_lock = asyncio.Lock()
        self._in_batch = False
        self._revocations = 0
        self._pending: dict[Any, int] = {}
        self._commit_task: asyncio.Task[None] | None = None

    @property
    def group(self) -> str:
        return self._group

    @property
    def topics(self) -> Sequence[str]:
        return self._topics

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        """The (topic, partition) pairs this member consumes now."""
        if self._consumer is None:
            return frozenset()
        return frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())

    async def _start(self) -> None:
        bus = self._bus
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            client_id=bus.client_id,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._settings,
        )
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise _port_error(
                f"connecting a consumer of group {self._group!r} to {bus.bootstrap_servers}", exc
            ) from exc
        self._consumer.subscribe(list(self._topics), listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"kafka-bus {self._group} {','.join(self._topics)}")
        self._task.add_done_callback(self._report_crash)
        joined = asyncio.ensure_future(self._assigned.wait())
        try:
            await asyncio.wait({joined, self._task}, timeout=bus._join_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._task.done():
            raise PortError(f"{self.name} failed while joining its group: {self._task.exception()!r}")
        if not self._assigned.is_set():
            raise RetriablePortError(
                f"{self.name} was not assigned partitions within {bus._join_timeout_s} s; is the broker at "
                f"{bus.bootstrap_servers} reachable and the group coordinator answering?"
            )
        logger.info(
            "kafka subscription joined",
            extra={"group": self._group, "topics": list(self._topics), "partitions": sorted(self.assignment)},
        )

    async def _stop(self) -> None:
        self._stopping = True
        self._interrupt.set()
        task = self._task
        try:
            if task is not None and not task.done():
                if not self._in_batch:
                    # Idle in getmany() (perhaps waiting out a rebalance): nothing is in flight.
                    task.cancel()
                else:
                    _, late = await asyncio.wait({task}, timeout=self._bus._drain_timeout_s)
                    if late:
                        logger.warning(
                            "handler did not finish within the drain timeout; cancelled, its message will be "
                            "redelivered",
                            extra={"group": self._group, "drain_timeout_s": self._bus._drain_timeout_s},
                        )
                        task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if self._consumer is not None:
                await self._flush_commits()
        finally:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await self._leave(consumer)
            self._bus._forget(self)
        logger.info("kafka subscription left", extra={"group": self._group, "topics": list(self._topics)})

    async def _leave(self, consumer: Any) -> None:
        """Close ``consumer``, leaving the group so that the others rebalance at once, not after a session timeout.

        aiokafka sends LeaveGroup only from generation 1 on, but Tansu numbers a group's first generation 0: the
        first member of every group would leave silently, and its successor would wait out the session timeout.
        So in generation 0 the request is sent here, after the coordinator has stopped its heartbeats (a heartbeat
        after the leave would make it rejoin). This reaches into aiokafka's coordinator; if that changes, the worst
        case is the slow path.
        """
        coordinator = getattr(consumer, "_coordinator", None)
        member_id = getattr(coordinator, "member_id", "")
        if coordinator is not None and getattr(coordinator, "generation", None) == 0 and member_id:
            try:
                await coordinator.close()
                await coordinator._send_req(LeaveGroupRequest(self._group, member_id))
            except Exception as exc:  # best effort, as aiokafka's own leave is
                logger.warning(
                    "could not leave the consumer group; its members rebalance after the session timeout",
                    extra={"group": self._group, "error": repr(exc)},
                )
        await consumer.stop()

    # --- the consume loop ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        while not self._stopping:
            try:
                batch = await consumer.getmany(timeout_ms=self._bus._poll_timeout_ms)
            except Exception as exc:  # the member must outlive a broker hiccup; stop() cancels this sleep
                logger.error(
                    "kafka fetch failed, will retry", extra={"group": self._group, "error": repr(exc)}, exc_info=exc
                )
                await asyncio.sleep(1.0)
                continue
            if not batch:
                self._schedule_commit()  # offsets whose commit failed or waited for an earlier one
                continue
            revocations = self._revocations
            self._in_batch = True
            try:
                async with self._batch_lock:
                    interrupt = self._interrupt
                    # A revocation that ran since these records were fetched reset the positions to the committed
                    # offsets: the records come again from whoever owns their partitions now.
                    if revocations == self._revocations and not interrupt.is_set():
                        if len(batch) == 1:
                            [(tp, records)] = batch.items()
                            await self._consume(tp, records, interrupt)
                        else:
                            await asyncio.gather(
                                *(self._consume(tp, records, interrupt) for tp, records in batch.items())
                            )
            finally:
                self._in_batch = False
            self._schedule_commit()

    async def _consume(self, tp: Any, records: list[Any], interrupt: asyncio.Event) -> None:
        handle = self._delivery.handle
        pending = self._pending
        for record in records:
            if interrupt.is_set() or not await handle(record, interrupt):
                return
            pending[tp] = record.offset + 1

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error(
                "kafka consume loop crashed; this member consumes nothing more until it is stopped",
                exc_info=exc,
                extra={"group": self._group, "topics": list(self._topics)},
            )

    # --- commits -------------------------------------------------------------------------------------------------

    def _schedule_commit(self) -> None:
        if self._pending and (self._commit_task is None or self._commit_task.done()):
            self._commit_task = asyncio.create_task(self._commit_pending())

    async def _commit_pending(self) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            if not await self._commit(offsets):
                return

    async def _commit(self, offsets: dict[Any, int]) -> bool:
        """Commit ``offsets``; on a transient failure put them back for the next attempt and return False."""
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: these partitions belong to another member, which starts from the last commit.
            logger.warning(
                "offset commit refused after a rebalance; the records will be redelivered",
                extra={"group": self._group, "offsets": _show(offsets), "error": repr(exc)},
            )
        except Exception as exc:  # a commit task must not die silently: keep the offsets and try again later
            logger.warning(
                "offset commit failed, will retry",
                extra={"group": self._group, "offsets": _show(offsets), "error": repr(exc)},
            )
            for tp, offset in offsets.items():
                if self._pending.get(tp, -1) < offset:
                    self._pending[tp] = offset
            return False
        else:
            logger.debug("offsets committed", extra={"group": self._group, "offsets": _show(offsets)})
        return True

    async def _flush_commits(self) -> None:
        task = self._commit_task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if self._pending:
            await self._commit_pending()

    # --- rebalance -----------------------------------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[Any]) -> None:
        self._revocations += 1
        self._interrupt.set()
        async with self._batch_lock:  # the handlers in flight finish; no new record starts
            await self._flush_commits()
            if not self._stopping:
                self._interrupt = asyncio.Event()
        if revoked:
            logger.info(
                "partitions revoked",
                extra={"group": self._group, "partitions": sorted((tp.topic, tp.partition) for tp in revoked)},
            )

    def _on_assigned(self, assigned: set[Any]) -> None:
        self._assigned.set()
        logger.info(
            "partitions assigned",
            extra={"group": self._group, "partitions": sorted((tp.topic, tp.partition) for tp in assigned)},
        )


async def _stop_all(subscriptions: Sequence[Resource]) -> None:
    """Stop every subscription, each draining on its own; one failing does not keep the others running."""
    results = await asyncio.gather(*(subscription.stop() for subscription in subscriptions), return_exceptions=True)
    for subscription, result in zip(subscriptions, results, strict=True):
        if isinstance(result, Exception):
            logger.error(
                "subscription did not stop cleanly", exc_info=result, extra={"subscription": subscription.name}
            )


def _show(offsets: dict[Any, int]) -> dict[str, int]:
    return {f"{tp.topic}[{tp.partition}]": offset for tp, offset in offsets.items()}
