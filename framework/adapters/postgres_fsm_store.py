"""``PostgresFSMStore``: the :class:`~framework.ports.fsm_store.FSMStore` on the append-only ``fsm_transitions``
table, so FSM instances survive restarts and several processes can drive the same instances safely.

The port's rule — a record's sequence must be the instance's last one plus one — is checked by the insert itself
(one statement, one round trip): the row is written only when the sequence follows the highest one recorded. Two
writers that both read sequence N and both try N+1 both pass that check, and the primary key (machine, instance_id,
sequence) turns the second into a unique violation; either way the loser gets a
:class:`~framework.errors.TransitionConflict` worded as the memory store's.

Calls join the transaction open in the caller's context, so a transition commits together with the handler's other
effects (and its outbox events).
"""

from __future__ import annotations

from typing import Any, TypeVar

from framework.errors import QueryError, TransitionConflict
from framework.ports.fsm_store import TransitionRecord
from framework.ports.store import Store, in_transaction

__all__ = ["PostgresFSMStore"]

T = TypeVar("T")

_COLUMNS = "machine, instance_id, sequence, transition, trigger, from_state, to_state, context, at"
_RECORD = f"""
WITH last AS (
    SELECT coalesce(max(sequence), 0) AS sequence FROM fsm_transitions WHERE machine = $1 AND instance_id = $2
), inserted AS (
    INSERT INTO fsm_transitions ({_COLUMNS})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM last WHERE last.sequence + 1 = $3
    RETURNING 1
)
SELECT (SELECT sequence FROM last) + 1 AS expected, EXISTS (SELECT 1 FROM inserted) AS inserted
"""
_LAST_SEQUENCE = "SELECT coalesce(max(sequence), 0) FROM fsm_transitions WHERE machine = $1 AND instance_id = $2"
_LAST = f"""
SELECT {_COLUMNS} FROM fsm_transitions WHERE machine = $1 AND instance_id = $2 ORDER BY sequence DESC LIMIT 1
"""
_HISTORY = f"SELECT {_COLUMNS} FROM fsm_transitions WHERE machine = $1 AND instance_id = $2 ORDER BY sequence"
_UNIQUE_VIOLATION = "23505"


class PostgresFSMStore:
    """Implements :class:`framework.ports.fsm_store.FSMStore` on ``store`` (a migrated database)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, record: TransitionRecord) -> None:
        args = (
            record.machine,
            record.instance_id,
            record.sequence,
            record.transition,
            record.trigger,
            record.from_state,
            record.to_state,
            record.context,
            record.at,
        )
        try:
            # A savepoint when joining a caller's transaction: a losing writer's unique violation must not abort it.
            async with self._store.transaction() as tx:
                row = await tx.fetchrow(_RECORD, *args)
        except QueryError as exc:
            if exc.sqlstate != _UNIQUE_VIOLATION:
                raise
            expected = int(
                await in_transaction(
                    self._store, lambda tx: tx.fetchval(_LAST_SEQUENCE, record.machine, record.instance_id)
                )
            )
            raise _conflict(record, expected + 1) from None
        assert row is not None
        if not row["inserted"]:
            raise _conflict(record, int(row["expected"]))

    async def last(self, machine: str, instance_id: str) -> TransitionRecord | None:
        row = await in_transaction(self._store, lambda tx: tx.fetchrow(_LAST, machine, instance_id))
        return None if row is None else _record(row)

    async def history(self, machine: str, instance_id: str) -> list[TransitionRecord]:
        rows = await in_transaction(self._store, lambda tx: tx.fetch(_HISTORY, machine, instance_id))
        return [_record(row) for row in rows]


def _conflict(record: TransitionRecord, expected: int) -> TransitionConflict:
    # Worded exactly as the memory store's, so callers and logs read the same whichever store is behind the port.
    why = (
        "that sequence is already recorded: another writer moved the instance first"
        if record.sequence < expected
        else "it would leave a gap"
    )
    return TransitionConflict(
        f"FSM store refused transition '{record.transition}' of machine '{record.machine}', instance "
        f"'{record.instance_id}': expected sequence {expected}, got {record.sequence} ({why})"
    )


def _record(row: dict[str, Any]) -> TransitionRecord:
    return TransitionRecord(
        machine=row["machine"],
        instance_id=row["instance_id"],
        sequence=row["sequence"],
        transition=row["transition"],
        trigger=row["trigger"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        at=row["at"],
        # Decoded afresh from JSON on every read, so no two readers (and not the writer) share one dict.
        context=row["context"] if row["context"] is not None else {},
    )
