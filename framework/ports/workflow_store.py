"""The workflow store port: where orchestrated workflows are kept (``workflow_executions``, one row per workflow;
``workflow_steps``, one row per step outcome), beside the FSM's own transitions. Implementations: memory and
PostgreSQL (framework/adapters/). Writes join the transaction open in the caller's context, so a step's row, the FSM
transition it causes and the events that describe them commit together.
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class StepStatus(enum.StrEnum):
    """The outcomes of a step (the ``status`` of workflow_steps and of workflow-step-completed)."""

    COMPLETED = "completed"
    SKIPPED = "skipped"  # its ``when`` guard did not hold
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class StepOutcome:
    step: str
    status: StepStatus
    required: bool
    attempts: int = 0
    duration_ms: float = 0.0
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The workflow may go on: the step completed, was skipped, or was optional."""
        return self.status in (StepStatus.COMPLETED, StepStatus.SKIPPED) or not self.required

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": str(self.status),
            "required": self.required,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_ms, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class Execution:
    workflow_id: str
    workflow_name: str
    state: str
    input: dict[str, Any]
    finished: bool
    error: str | None = None
    result: dict[str, Any] | None = None


class WorkflowStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def create(self, workflow_id: str, workflow_name: str, data: dict[str, Any]) -> bool:
        """Record a new workflow in state pending; ``False`` when ``workflow_id`` is already recorded."""
        ...

    async def set_state(
        self, workflow_id: str, state: str, *, finished: bool, error: str | None, result: dict[str, Any] | None
    ) -> None: ...

    async def save_step(self, workflow_id: str, outcome: StepOutcome) -> None: ...

    async def load(self, workflow_id: str) -> Execution | None: ...

    async def steps(self, workflow_id: str) -> dict[str, StepOutcome]: ...

    async def unfinished(self, workflow_name: str) -> list[str]:
        """Ids of the workflows of that name that have not finished, oldest first."""
        ...
