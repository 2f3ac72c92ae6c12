"""The FSM store port: every transition of every FSM instance is recorded, and an instance is restored from its
last record after a restart. In memory until the persistence layer brings PostgreSQL (table fsm_transitions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    machine: str
    instance_id: str
    sequence: int  # 1 for the first transition of an instance; the store refuses gaps and repeats
    transition: str
    trigger: str
    from_state: str
    to_state: str
    at: datetime
    context: dict[str, Any] = field(default_factory=dict)


class FSMStore(Protocol):
    async def record(self, record: TransitionRecord) -> None:
        """Append a transition. Raises ``TransitionConflict`` when ``sequence`` is not the next one (another
        writer moved the instance first)."""
        ...

    async def last(self, machine: str, instance_id: str) -> TransitionRecord | None: ...

    async def history(self, machine: str, instance_id: str) -> list[TransitionRecord]: ...
