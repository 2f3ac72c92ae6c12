"""``OutboxRelay``: publishes the transactional outbox (rows written by ``tx.enqueue``) through the event bus.

One relay is active per database: each relay holds a dedicated connection (outside the pool) and tries
``pg_try_advisory_lock`` on it; the one that gets the lock is the leader, the others are standbys that try again
every ``leader_retry_s``. PostgreSQL releases the lock when the leader's connection ends — the process died, or it
was cut off — so a standby takes over within ``leader_retry_s``. A leader whose lock connection breaks stops being
leader at once and competes again.

The leader loops:

1. in one transaction, select the oldest unsent rows ``ORDER BY id LIMIT batch_size FOR UPDATE``;
2. publish them through the bus: rows of the same (topic, key) one after another in id order (each publish waits
   for the broker's acknowledgement), different keys concurrently — Kafka orders per partition, hence per key, and
   never across keys, so this keeps every order a consumer can observe while not waiting on one key for another.
   Rows whose key has no other row in the batch go out together, one ``publish_many`` per (topic, headers);
3. mark the acknowledged rows sent (``sent_at``) and commit.

When a publish fails, the rest of that key's rows in the batch are not attempted (a later row must not overtake
it), the rows that were acknowledged are marked sent, the failed row gets ``attempts``/``last_error``, and the relay
backs off exponentially (``initial_backoff_s`` doubling up to ``max_backoff_s``, ±10% jitter) before the next batch,
which starts again from the oldest unsent row. It never drops a row: a broker outage only delays the outbox. The one
exception is a row whose value is not an envelope (only possible if something else wrote the table): it could never
be published, so it is copied to ``dead_letters`` and marked sent with its reason in ``last_error``.

``enqueue`` sends no ``NOTIFY`` inside its transaction (that would serialise every enqueuing commit on PostgreSQL's
notify lock): once a transaction that enqueued has committed, the store sends ``NOTIFY onex_outbox`` on a pooled
connection outside any transaction, coalescing the commits of a short window into one notification (see
:mod:`framework.adapters.postgres_store`). It wakes the relay, which is listening on its lock connection, right
after the commit; a notification that is lost (the store stopping, a connection error) is covered by the relay's
poll every ``poll_interval_s``.

Delivery is at least once: if the relay dies (or loses its database connection) after the broker acknowledged a
batch and before the commit that marks it sent, the next leader publishes those rows again. Consumers deduplicate by
event id (``PostgresProcessedEvents`` / ``tx.claim_event``), so only the rows of that one batch can appear twice.

Ordering caveat: ids are assigned at insert time but become visible at commit, so rows of two *concurrent*
transactions may be published in commit order rather than id order. Writes that are ordered (one commits before the
next begins) are published in order.

Sent rows are kept (with ``sent_at``) for inspection; :meth:`OutboxRelay.prune` deletes those older than a given age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from framework.adapters.postgres_store import OUTBOX_CHANNEL, PostgresStore, decode_outbox_headers
from framework.backoff import backoff_s
from framework.errors import PortError, UsageError
from framework.events.envelope import EnvelopeError, OnexEnvelopeV1
from framework.ports.event_bus import EventBus, Headers, PublishManyError, dead_letter_topic
from framework.ports.resource import Resource
from framework.ports.store import Store, current_transaction, rows_affected

__all__ = ["OUTBOX_LOCK_KEY", "OutboxRelay", "publish_or_enqueue", "wait_until_drained"]

logger = logging.getLogger(__name__)

#: Session advisory lock held by the leading relay of a database: the bytes of ``onexoutb`` as a bigint.
OUTBOX_LOCK_KEY: Final = int.from_bytes(b"onexoutb", "big")

_SELECT_BATCH: Final = """
SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE
"""
_MARK_SENT: Final = "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY ($1::bigint[])"
_MARK_FAILED: Final = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1"
_DEAD_LETTER: Final = """
INSERT INTO dead_letters (topic, original_topic, key, value, headers, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6, 0)
"""
_MARK_DEAD: Final = "UPDATE outbox SET sent_at = now(), last_error = $2 WHERE id = $1"
_PENDING: Final = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
_PRUNE: Final = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval"
_MAX_ERROR_TEXT: Final = 2000
#: Counting the backlog after every full batch would cost more than the batches while draining a large one.
_COUNT_INTERVAL_S: Final = 1.0

#: ``on_published(topic, envelope, started, acknowledged)``: an outbox row the broker acknowledged (wall-clock times).
Published = Callable[[str, OnexEnvelopeV1, float, float], None]


async def publish_or_enqueue(
    bus: EventBus,
    topic: str,
    envelope: OnexEnvelopeV1,
    *,
    key: bytes | None = None,
    headers: Headers = (),
    store: Store | None = None,
) -> bool:
    """Publish ``envelope``, through the outbox of the transaction open in this context (of ``store``, if given)
    when there is one, so the event commits with that transaction's writes; directly through ``bus`` otherwise.
    Returns whether it was published directly (``True``: the broker acknowledged it) rather than enqueued."""
    tx = current_transaction(store)
    if tx is not None:
        await tx.enqueue(topic, envelope, key=key, headers=headers)
        return False
    await bus.publish(topic, envelope, key=key, headers=headers)
    return True


class _PublishFailed(Exception):
    """A publish failed after the batch's outcome was committed; carries the error for the backoff."""

    def __init__(self, outbox_id: int, error: BaseException) -> None:
        super().__init__(f"publishing outbox row {outbox_id} failed: {type(error).__name__}: {error}")
        self.outbox_id = outbox_id
        self.error = error


class OutboxRelay(Resource):
    """Publishes ``store``'s outbox through ``bus`` (both started by the caller, before the relay).

    ``batch_size`` rows per transaction; ``poll_interval_s`` between polls when idle (notifications wake it
    earlier); ``leader_retry_s`` between a standby's attempts to become leader; publish failures back off from
    ``initial_backoff_s`` to ``max_backoff_s``; each publish may take ``publish_timeout_s``; at most
    ``max_concurrent_keys`` keys are published concurrently; ``stop()`` lets a batch in flight finish for up to
    ``drain_timeout_s`` before cancelling it (its rows are then published again by the next leader).
    ``on_published(topic, envelope, started, acknowledged)`` (``time.time()`` values; no I/O, it must not block) is
    called for each row the broker acknowledged: the host's event log.
    """

    resource_name = "outbox relay"

    def __init__(
        self,
        store: PostgresStore,
        bus: EventBus,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.05,
        leader_retry_s: float = 1.0,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        publish_timeout_s: float = 30.0,
        max_concurrent_keys: int = 64,
        drain_timeout_s: float = 10.0,
        lock_key: int = OUTBOX_LOCK_KEY,
        on_published: Published | None = None,
    ) -> None:
        super().__init__()
        if type(batch_size) is not int or batch_size < 1:
            raise UsageError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if type(max_concurrent_keys) is not int or max_concurrent_keys < 1:
            raise UsageError(f"max_concurrent_keys must be an integer >= 1, got {max_concurrent_keys!r}")
        for name, value in (
            ("poll_interval_s", poll_interval_s),
            ("leader_retry_s", leader_retry_s),
            ("initial_backoff_s", initial_backoff_s),
            ("max_backoff_s", max_backoff_s),
            ("publish_timeout_s", publish_timeout_s),
            ("drain_timeout_s", drain_timeout_s),
        ):
            if not value > 0:
                raise UsageError(f"{name} must be > 0 seconds, got {value!r}")
        self.resource_name = f"outbox relay of {store.display_dsn}"
        self._store = store
        self._bus = bus
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._leader_retry_s = leader_retry_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max(max_backoff_s, initial_backoff_s)
        self._publish_timeout_s = publish_timeout_s
        self._max_concurrent_keys = max_concurrent_keys
        self._drain_timeout_s = drain_timeout_s
        self._lock_key = lock_key
        self._on_published = on_published
        self._task: asyncio.Task[None] | None = None
        self._lock_connection: Any = None
        self._leader = False
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_batch = False
        self._consecutive_failures = 0
        self._last_count = float("-inf")
        self._stats: dict[str, Any] = {
            "pending": None,
            "sent_total": 0,
            "batches": 0,
            "failures": 0,
            "dead_lettered": 0,
            "leader_changes": 0,
            "last_error": None,
            "last_error_at": None,
        }
        #: Test hook, awaited with the ids of a batch after it was published and before it is marked sent.
        self._before_commit: Callable[[list[int]], Awaitable[None]] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    def stats(self) -> dict[str, Any]:
        """Role, backlog (as last measured by the leader), totals and the last error, for /health and /metrics."""
        role = "stopped" if not self.started else ("leader" if self._leader else "standby")
        return {"role": role, "consecutive_failures": self._consecutive_failures, **self._stats}

    async def pending_count(self) -> int:
        """Rows not yet published (an exact count, one query)."""
        async with self._store.transaction() as tx:
            return int(await tx.fetchval(_PENDING))

    async def prune(self, older_than: timedelta) -> int:
        """Delete rows sent more than ``older_than`` ago; return how many."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise UsageError(f"older_than must be a positive timedelta, got {older_than!r}")
        async with self._store.transaction() as tx:
            status = await tx.execute(_PRUNE, older_than)
        return rows_affected(status)

    # --- life ---------------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.resource_name)

    async def _stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        task, self._task = self._task, None
        try:
            if task is not None and not task.done():
                if self._in_batch:
                    await asyncio.wait({task}, timeout=self._drain_timeout_s)
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            await self._drop_lock_connection()
        logger.info("outbox relay stopped", extra={"relay": self.resource_name, "stats": self.stats()})

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not await self._ensure_leader():
                    # Notifications do not shorten a standby's wait: under load they would turn it into a busy loop.
                    await self._wait(self._leader_retry_s, wake_early=False)
                    continue
                self._wakeup.clear()
                sent = await self._relay_batch()
                self._consecutive_failures = 0
                if sent < self._batch_size:
                    await self._wait(self._poll_interval_s)
                else:
                    await asyncio.sleep(0)  # a full batch: there is probably more, but let others run
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried: the relay must outlive brokers and databases
                self._consecutive_failures += 1
                error = exc.error if isinstance(exc, _PublishFailed) else exc
                self._stats["failures"] += 1
                self._stats["last_error"] = _error_text(exc)
                self._stats["last_error_at"] = datetime.now(UTC).isoformat()
                delay = self._backoff(self._consecutive_failures)
                logger.warning(
                    "outbox relay failed, backing off",
                    extra={
                        "relay": self.resource_name,
                        "error": _error_text(exc),
                        "error_type": type(error).__name__,
                        "consecutive_failures": self._consecutive_failures,
                        "backoff_s": round(delay, 3),
                    },
                )
                if not isinstance(exc, _PublishFailed | PortError):
                    logger.debug("outbox relay failure detail", exc_info=exc)
                await self._wait(delay, wake_early=False)

    def _backoff(self, failures: int) -> float:
        return backoff_s(
            failures, initial_s=self._initial_backoff_s, multiplier=2.0, max_s=self._max_backoff_s, jitter=0.1
        )

    async def _wait(self, seconds: float, *, wake_early: bool = True) -> None:
        """Sleep ``seconds``; a stop ends it early, and so does a notification when ``wake_early``."""
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if wake_early:
            waiters.append(asyncio.ensure_future(self._wakeup.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # --- leadership ---------------------------------------------------------------------------------------------

    async def _ensure_leader(self) -> bool:
        connection = self._lock_connection
        if connection is not None and connection.is_closed():
            if self._leader:
                logger.warning(
                    "outbox relay lost its lock connection and with it the leadership",
                    extra={"relay": self.resource_name},
                )
            self._leader = False
            await self._drop_lock_connection()
            connection = None
        if connection is None:
            connection = await self._store.connect()
            try:
                await connection.add_listener(OUTBOX_CHANNEL, self._on_notify)
            except BaseException:
                connection.terminate()
                raise
            self._lock_connection = connection
        if not self._leader and await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
            self._leader = True
            self._stats["leader_changes"] += 1
            logger.info("outbox relay is the leader", extra={"relay": self.resource_name})
        return self._leader

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._wakeup.set()

    async def _drop_lock_connection(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        self._leader = False
        if connection is None:
            return
        if connection.is_closed():
            return
        try:
            # Closing ends the session, which releases the advisory lock for a standby.
            await asyncio.wait_for(connection.close(), 5.0)
        except Exception:  # a connection that cannot close cleanly is cut off; the lock goes with it
            connection.terminate()

    # --- one batch ----------------------------------------------------------------------------------------------

    async def _relay_batch(self) -> int:
        self._in_batch = True
        try:
            failure: _PublishFailed | None = None
            async with self._store.transaction() as tx:
                rows = await tx.fetch(_SELECT_BATCH, self._batch_size)
                if not rows:
                    self._stats["pending"] = 0
                    return 0
                sent, dead, failed = await self._publish(rows)
                if self._before_commit is not None:
                    await self._before_commit([row["id"] for row in rows])
                if sent:
                    await tx.execute(_MARK_SENT, sent)
                for row, reason in dead:
                    await tx.execute(
                        _DEAD_LETTER,
                        dead_letter_topic(row["topic"]),
                        row["topic"],
                        row["key"],
                        row["value"],
                        row["headers"] if isinstance(row["headers"], list) else [],
                        reason,
                    )
                    await tx.execute(_MARK_DEAD, row["id"], f"not publishable, copied to dead_letters: {reason}")
                for outbox_id, error in failed:
                    await tx.execute(_MARK_FAILED, outbox_id, _error_text(error))
                if failed:
                    failure = _PublishFailed(*failed[0])
                now = time.monotonic()
                if len(rows) < self._batch_size and not failed:
                    self._stats["pending"] = 0
                elif now - self._last_count >= _COUNT_INTERVAL_S:
                    self._stats["pending"] = int(await tx.fetchval(_PENDING))
                    self._last_count = now
        finally:
            self._in_batch = False
        self._stats["batches"] += 1
        self._stats["sent_total"] += len(sent)
        self._stats["dead_lettered"] += len(dead)
        if dead:
            logger.error(
                "outbox rows could not be decoded and were moved to dead_letters",
                extra={"relay": self.resource_name, "outbox_ids": [row["id"] for row, _ in dead]},
            )
        if failure is not None:
            raise failure
        return len(sent)

    async def _publish(
        self, rows: list[dict[str, Any]]
    ) -> tuple[list[int], list[tuple[dict[str, Any], str]], list[tuple[int, BaseException]]]:
        """Publish ``rows``: sequentially per (topic, key), keys concurrently. Returns the ids acknowledged, the rows
        that cannot be published, and the failures (row id and error, at most one per key) in id order.

        A key with one row in the batch (the usual case: most keys are an id or a hash) has no order to keep within
        it, so such rows go out together, one ``publish_many`` per (topic, headers): one run into the producer and
        one wait for all acknowledgements instead of a task and a wait per row. Keys with several rows are published
        one row after the other, and a failure stops the rest of its key."""
        groups: dict[tuple[str, bytes | None], list[tuple[dict[str, Any], OnexEnvelopeV1, Headers]]] = {}
        dead: list[tuple[dict[str, Any], str]] = []
        for row in rows:
            try:
                envelope = OnexEnvelopeV1.from_json(row["value"])
                headers = decode_outbox_headers(row["headers"])
            except (EnvelopeError, ValueError) as exc:
                dead.append((row, _error_text(exc)))
                continue
            groups.setdefault((row["topic"], row["key"]), []).append((row, envelope, headers))
        sent: list[int] = []
        failures: list[tuple[int, BaseException]] = []
        singles: dict[tuple[str, Headers], list[tuple[dict[str, Any], OnexEnvelopeV1, Headers]]] = {}
        sequences: list[list[tuple[dict[str, Any], OnexEnvelopeV1, Headers]]] = []
        for group in groups.values():
            if len(group) == 1 and group[0][1].kafka_key() == group[0][0]["key"]:
                row, _, headers = group[0]
                singles.setdefault((row["topic"], headers), []).append(group[0])
            else:
                sequences.append(group)
        limit = asyncio.Semaphore(self._max_concurrent_keys)
        on_published = self._on_published

        async def publish_together(topic: str, headers: Headers, items: list[Any]) -> None:
            envelopes = [envelope for _, envelope, _ in items]
            started = time.time()
            try:
                await asyncio.wait_for(
                    self._bus.publish_many(topic, envelopes, headers=headers), self._publish_timeout_s
                )
            except PublishManyError as exc:
                acknowledged = set(exc.acknowledged)
                finished = time.time()
                for index, (row, envelope, _) in enumerate(items):
                    if index in acknowledged:
                        sent.append(row["id"])
                        if on_published is not None:
                            on_published(topic, envelope, started, finished)
                    else:
                        failures.append((row["id"], exc.errors.get(index, exc)))
                return
            except Exception as exc:  # nothing is known to be published: every row is tried again
                failures.extend((row["id"], exc) for row, _, _ in items)
                return
            sent.extend(row["id"] for row, _, _ in items)
            if on_published is not None:
                finished = time.time()
                for envelope in envelopes:
                    on_published(topic, envelope, started, finished)

        async def publish_sequence(group: list[tuple[dict[str, Any], OnexEnvelopeV1, Headers]]) -> None:
            async with limit:
                for row, envelope, headers in group:
                    started = time.time()
                    try:
                        await asyncio.wait_for(
                            self._bus.publish(row["topic"], envelope, key=row["key"], headers=headers),
                            self._publish_timeout_s,
                        )
                    except Exception as exc:  # any failure: this key stops here, its later rows wait
                        failures.append((row["id"], exc))
                        return
                    sent.append(row["id"])
                    if on_published is not None:
                        on_published(row["topic"], envelope, started, time.time())

        await asyncio.gather(
            *(publish_together(topic, headers, items) for (topic, headers), items in singles.items()),
            *(publish_sequence(group) for group in sequences),
        )
        return sent, dead, sorted(failures, key=lambda failure: failure[0])


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, _PublishFailed) else str(exc)
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


async def wait_until_drained(relay: OutboxRelay, timeout_s: float, *, poll_s: float = 0.02) -> None:
    """Wait until the outbox has no unsent row (exact counts), or raise ``TimeoutError``: for tests and scripts."""
    deadline = time.monotonic() + timeout_s
    while await relay.pending_count() > 0:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the outbox still had unsent rows after {timeout_s:g} s")
        await asyncio.sleep(poll_s)
