"""The Store port: transactions on the database, with the transactional outbox and durable idempotency built in.

A :class:`Store` hands out :class:`Transaction` objects through ``async with store.transaction() as tx``: the block
commits when it ends normally and rolls back when it raises. Besides plain SQL (``execute``, ``executemany``,
``fetch``/``fetchrow``/``fetchval``, ``copy_records``), a transaction has the two operations that make event handling
safe:

- ``enqueue(topic, envelope)`` writes the event as an outbox row *in this transaction*: it is published (by the
  outbox relay) if and only if the transaction commits, so a handler's data and the events describing it cannot
  disagree, and a broker outage loses nothing;
- ``claim_event(group, event_id)`` records that ``group`` processed the event, in the same transaction as the
  handler's effects; it returns ``False`` when the group already processed it (the caller then skips the work). As the
  claim commits or rolls back with the effects, a redelivered event is handled effectively once.

While a transaction is open, :func:`current_transaction` returns it to any code running in the same task (and in
tasks the block starts), so effects, FSM stores and publishers join the handler's transaction instead of opening
their own. It returns ``None`` once the transaction has ended, so a task that outlives the block never sees a
finished transaction. A transaction is one connection: its statements run one at a time, so tasks started inside the
block must not use it concurrently (await them one after another, or give each a transaction of its own).

SQL parameters are always passed separately (``$1``, ``$2``, ...), never formatted into the text. JSON and JSONB
parameters take Python values (dicts, lists, ...) and come back decoded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar, cast

from framework.events.envelope import OnexEnvelopeV1

__all__ = [
    "Headers",
    "Store",
    "Transaction",
    "current_transaction",
    "deferred_outbox",
    "in_transaction",
    "reset_current_transaction",
    "rows_affected",
    "set_current_transaction",
]

#: Extra Kafka headers of an outbox event, as the EventBus port takes them.
Headers = tuple[tuple[str, bytes], ...]


class Transaction(Protocol):
    """One open database transaction. Every method raises a ``PortError`` (``RetriablePortError`` when the connection
    was lost or the database is unreachable) and may not be used after the transaction ended."""

    @property
    def store(self) -> Store:
        """The store this transaction belongs to."""
        ...

    @property
    def active(self) -> bool:
        """``True`` until the transaction commits or rolls back."""
        ...

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; return its status (e.g. ``INSERT 0 1``)."""
        ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per argument tuple, pipelined: one round trip per batch, not per row."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def copy_records(self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]) -> int:
        """Bulk-load ``records`` into ``table`` (COPY); return the number of rows copied."""
        ...

    async def enqueue(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> int:
        """Write ``envelope`` to the outbox in this transaction; return the outbox row id. ``key`` defaults to
        ``envelope.kafka_key()`` (resolved now, so the relay publishes exactly what was enqueued)."""
        ...

    async def enqueue_many(self, topic: str, envelopes: Iterable[OnexEnvelopeV1], *, headers: Headers = ()) -> int:
        """:meth:`enqueue` for many envelopes of one topic (each with its own key), in one batch; returns how many."""
        ...

    async def claim_event(self, group: str, event_id: str) -> bool:
        """Record that ``group`` processed ``event_id``; ``False`` if it already had (then skip the work)."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A new transaction, or, inside one of this store's open transactions in the same task, a nested one
        (a savepoint: its rollback undoes only its own work)."""
        ...


T = TypeVar("T")

_current: ContextVar[Transaction | None] = ContextVar("onex_current_transaction", default=None)


def rows_affected(status: str) -> int:
    """The row count of a command status that ``execute`` returns (``DELETE 3``, ``INSERT 0 1``, ``COPY 5``); 0 for a
    status without one."""
    tail = str(status).rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def current_transaction(store: Store | None = None) -> Transaction | None:
    """The transaction open in this context (of ``store``, when given), or ``None``."""
    transaction = _current.get()
    if transaction is None or not transaction.active:
        return None
    if store is not None and transaction.store is not store:
        return None
    return transaction


async def in_transaction(store: Store, work: Callable[[Transaction], Awaitable[T]]) -> T:
    """Run ``work`` in the transaction open in this context on ``store`` (a handler's, say), or in a new one."""
    tx = current_transaction(store)
    if tx is not None:
        return await work(tx)
    async with store.transaction() as own:
        return await work(own)


def set_current_transaction(transaction: Transaction) -> Token[Transaction | None]:
    """Make ``transaction`` the current one (for Store implementations, on entering a transaction block)."""
    return _current.set(transaction)


def reset_current_transaction(token: Token[Transaction | None]) -> None:
    """Undo :func:`set_current_transaction` (on leaving the block)."""
    _current.reset(token)


class _DeferredOutbox:
    """A transaction as publishers see it inside :func:`deferred_outbox`: everything passes through to it, except
    that enqueued events are kept and written by :meth:`flush`."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._events: list[tuple[str, OnexEnvelopeV1, bytes | None, Headers]] = []
        self._flushed = False  # from then on, events go to the transaction at once (a task that outlived the block)

    def __getattr__(self, name: str) -> Any:  # store, active, execute, fetch, claim_event, ...
        return getattr(self._tx, name)

    async def enqueue(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> int:
        if self._flushed:
            return await self._tx.enqueue(topic, envelope, key=key, headers=headers)
        self._events.append((topic, envelope, key, headers))
        return 0  # the row id exists only once flush() has written the row

    async def enqueue_many(self, topic: str, envelopes: Iterable[OnexEnvelopeV1], *, headers: Headers = ()) -> int:
        if self._flushed:
            return await self._tx.enqueue_many(topic, envelopes, headers=headers)
        added = [(topic, envelope, None, headers) for envelope in envelopes]
        self._events.extend(added)
        return len(added)

    async def flush(self) -> None:
        """Write the kept events in the order they were enqueued: each run of one topic and headers (default keys)
        with one ``enqueue_many``, an event with an explicit key with ``enqueue``."""
        events, self._events = self._events, []
        start = 0
        while start < len(events):
            topic, envelope, key, headers = events[start]
            if key is not None:
                await self._tx.enqueue(topic, envelope, key=key, headers=headers)
                start += 1
                continue
            end = start + 1
            while end < len(events) and (events[end][0], events[end][2], events[end][3]) == (topic, None, headers):
                end += 1
            await self._tx.enqueue_many(topic, [e[1] for e in events[start:end]], headers=headers)
            start = end
        self._flushed = True


@asynccontextmanager
async def deferred_outbox(tx: Transaction) -> AsyncIterator[Transaction]:
    """Inside the block, events enqueued in ``tx`` (by ``node.publish`` in a handler, say) are kept, and written when
    the block ends, in their order, with one ``enqueue_many`` per run of one topic: one round trip instead of one per
    event. They still commit (or roll back) with ``tx``. Row ids are not known inside the block (``enqueue`` returns
    0), and the rows are not visible to queries there. Once the block has ended, what still enqueues through it (a
    task started inside) goes straight to ``tx``. When the block raises, nothing is written: the transaction is about
    to roll back."""
    outbox = _DeferredOutbox(tx)
    token = set_current_transaction(cast(Transaction, outbox))
    try:
        yield cast(Transaction, outbox)
    finally:
        reset_current_transaction(token)
    await outbox.flush()
