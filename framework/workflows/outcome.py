"""What a workflow step and a workflow end with: the records the engine persists and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from framework.contract.subcontracts import Step
from framework.ports.workflow_store import StepOutcome, StepStatus

# The step records are declared by the workflow store port; the engine's vocabulary re-exports them.
__all__ = ["StepCall", "StepOutcome", "StepStatus", "WorkflowResult"]


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
