"""The workflow store port: where orchestrated workflows are kept (``workflow_executions``, one row per workflow;
``workflow_steps``, one row per step: ``running`` once it may have started, then its outcome), beside the FSM's own
transitions. Implementations: memory and PostgreSQL (framework/adapters/). Writes join the transaction open in the
caller's context, so a step's row, the FSM transition it causes and the events that describe them commit together.

Ownership: each unfinished workflow has an ``owner`` (the orchestrator instance running it) and a lease expiry that
the owner renews (:meth:`WorkflowStore.renew`). An orchestrator resumes only workflows it can :meth:`claim`: unowned,
its own, or whose lease expired (their owner stopped renewing, so it is gone). Claiming is atomic, so two
orchestrators on one database never both resume the same workflow.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
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

    async def create(
        self,
        workflow_id: str,
        workflow_name: str,
        data: dict[str, Any],
        *,
        owner: str,
        lease_s: float,
        running: Sequence[str] = (),
    ) -> bool:
        """Record a new workflow in state pending, owned by ``owner`` for ``lease_s`` seconds, with the steps
        ``running`` marked running; ``False`` (and nothing written) when ``workflow_id`` is already recorded."""
        ...

    async def set_state(
        self, workflow_id: str, state: str, *, finished: bool, error: str | None, result: dict[str, Any] | None
    ) -> None: ...

    async def save_step(self, workflow_id: str, outcome: StepOutcome, *, running: Sequence[str] = ()) -> None:
        """Record a step's outcome, and mark the steps ``running`` (the ones it lets start) running, in one write."""
        ...

    async def mark_running(self, workflow_id: str, steps: Sequence[str]) -> None:
        """Mark ``steps`` running: they may have started, and have no outcome yet."""
        ...

    async def running(self, workflow_id: str) -> list[str]:
        """The steps marked running (in flight, or in flight when their process stopped)."""
        ...

    async def load(self, workflow_id: str) -> Execution | None: ...

    async def steps(self, workflow_id: str) -> dict[str, StepOutcome]: ...

    async def unfinished(self, workflow_name: str) -> list[str]:
        """Ids of the workflows of that name that have not finished, oldest first."""
        ...

    async def claim(self, workflow_name: str, owner: str, lease_s: float) -> list[str]:
        """Take over the unfinished workflows of that name that have no owner, are ``owner``'s, or whose lease has
        expired: they become ``owner``'s for ``lease_s`` seconds. Returns their ids, oldest first."""
        ...

    async def renew(self, owner: str, lease_s: float) -> int:
        """Extend to ``lease_s`` seconds from now the lease of every unfinished workflow ``owner`` holds; returns
        how many."""
        ...

    async def owner(self, workflow_id: str) -> tuple[str | None, float | None]:
        """Who holds the workflow, and for how many more seconds (negative once expired); ``(None, None)`` if
        nobody does."""
        ...
