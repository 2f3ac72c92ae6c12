"""What a workflow step and a workflow end with: the records the engine persists and reports."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from framework.contract.subcontracts import Step


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
class StepCall:
    """What a step's target is called with: the workflow's input and the results of the steps before it."""

    workflow_id: str
    step: Step
    input: Mapping[str, Any]
    results: Mapping[str, Any]
    attempt: int = 1


@dataclass
class WorkflowResult:
    workflow_id: str
    workflow_name: str
    state: str  # the FSM's final state
    outcomes: dict[str, StepOutcome] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    resumed: bool = False

    @property
    def completed_steps(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status is StepStatus.COMPLETED)

    @property
    def skipped_steps(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status is not StepStatus.COMPLETED and o.ok)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "workflow_name": self.workflow_name,
            "state": self.state,
            "steps": [o.as_dict() for o in self.outcomes.values()],
            "error": self.error,
            "failed_step": self.failed_step,
        }
