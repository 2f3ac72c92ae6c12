"""``PostgresProcessedEvents``: the bus's :class:`~framework.ports.event_bus.ProcessedEvents` on the
``processed_events`` table, so the ids a consumer group handled survive restarts and are shared by its members.

Both calls join the transaction open in the caller's context (:func:`~framework.ports.store.current_transaction`),
so a handler that marks its event inside its own transaction commits the mark with its effects. Called by the bus
around a handler (check before, mark after), the pair is not atomic with the handler: a crash between the handler's
commit and the mark lets the event be handled again. Handlers with database effects close that gap with
``tx.claim_event`` in their own transaction, which writes the same row.

Rows are never removed by the bus; :meth:`PostgresProcessedEvents.prune` deletes ids older than any redelivery can
be (the host can call it periodically).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from framework.errors import UsageError
from framework.ports.store import Store, in_transaction, rows_affected

__all__ = ["PostgresProcessedEvents"]

T = TypeVar("T")

_IS_PROCESSED = "SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer_group = $1 AND event_id = $2)"
_MARK = (
    "INSERT INTO processed_events (consumer_group, event_id) VALUES ($1, $2) "
    "ON CONFLICT (consumer_group, event_id) DO NOTHING"
)
_PRUNE = "DELETE FROM processed_events WHERE processed_at < now() - $1::interval"
_COUNT = "SELECT count(*) FROM processed_events WHERE consumer_group = $1"


class PostgresProcessedEvents:
    """Implements :class:`framework.ports.event_bus.ProcessedEvents` on ``store`` (a migrated database)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def is_processed(self, group: str, event_id: str) -> bool:
        uid = _uuid(event_id)
        return bool(await in_transaction(self._store, lambda tx: tx.fetchval(_IS_PROCESSED, group, uid)))

    async def mark_processed(self, group: str, event_id: str) -> None:
        if not isinstance(group, str) or not group:
            raise UsageError(f"group must be a non-empty string, got {group!r}")
        uid = _uuid(event_id)
        await in_transaction(self._store, lambda tx: tx.execute(_MARK, group, uid))

    async def count(self, group: str) -> int:
        """How many event ids ``group`` has recorded."""
        return int(await in_transaction(self._store, lambda tx: tx.fetchval(_COUNT, group)))

    async def prune(self, older_than: timedelta) -> int:
        """Delete ids recorded more than ``older_than`` ago (of every group); return how many."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise UsageError(f"older_than must be a positive timedelta, got {older_than!r}")
        status: str = await in_transaction(self._store, lambda tx: tx.execute(_PRUNE, older_than))
        return rows_affected(status)


def _uuid(event_id: Any) -> UUID:
    if isinstance(event_id, UUID):
        return event_id
    try:
        return UUID(str(event_id))
    except ValueError:
        raise UsageError(f"event_id must be a UUID (an envelope's event_id), got {event_id!r}") from None
