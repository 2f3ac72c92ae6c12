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

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar

from framework.events.envelope import OnexEnvelopeV1

__all__ = [
    "Headers",
    "Store",
    "Transaction",
    "current_transaction",
    "in_transaction",
    "reset_current_transaction",
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
