"""The in-memory FSM store: an append-only log of transition records per (machine, instance), in this process only.

It enforces the port's one rule, the same one the PostgreSQL store enforces with a unique key: a record's sequence
must be the last one plus one, so two writers that both saw sequence N cannot both record N+1.
"""

from __future__ import annotations

import copy
import dataclasses

from framework.errors import TransitionConflict
from framework.ports.fsm_store import TransitionRecord

__all__ = ["MemoryFSMStore"]


def _copy(record: TransitionRecord) -> TransitionRecord:
    # Records are frozen but their context is a dict: copy it both ways, so that neither the writer (after
    # recording) nor a reader (after reading) can change what is stored.
    return dataclasses.replace(record, context=copy.deepcopy(record.context))


class MemoryFSMStore:
    """Implements :class:`framework.ports.fsm_store.FSMStore`. Nothing survives the process."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], list[TransitionRecord]] = {}

    async def record(self, record: TransitionRecord) -> None:
        # No await between the check and the append: under asyncio the two are one atomic step.
        log = self._logs.setdefault((record.machine, record.instance_id), [])
        expected = len(log) + 1
        if record.sequence != expected:
            why = (
                "that sequence is already recorded: another writer moved the instance first"
                if record.sequence < expected
                else "it would leave a gap"
            )
            raise TransitionConflict(
                f"FSM store refused transition '{record.transition}' of machine '{record.machine}', instance "
                f"'{record.instance_id}': expected sequence {expected}, got {record.sequence} ({why})"
            )
        log.append(_copy(record))

    async def last(self, machine: str, instance_id: str) -> TransitionRecord | None:
        log = self._logs.get((machine, instance_id))
        return _copy(log[-1]) if log else None

    async def history(self, machine: str, instance_id: str) -> list[TransitionRecord]:
        return [_copy(record) for record in self._logs.get((machine, instance_id), [])]
