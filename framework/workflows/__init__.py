"""Workflows: a workflow subcontract built into a LlamaIndex Workflow, run by an engine that drives the workflow FSM
with the steps' outcomes and persists them."""

from framework.workflows.builder import build_workflow_class, stages
from framework.workflows.engine import WorkflowBusy, WorkflowEngine, WorkflowHooks
from framework.workflows.outcome import StepCall, StepOutcome, StepStatus, WorkflowResult
from framework.workflows.runner import StepFailed, StepRunner

__all__ = [
    "StepCall",
    "StepFailed",
    "StepOutcome",
    "StepRunner",
    "StepStatus",
    "WorkflowBusy",
    "WorkflowEngine",
    "WorkflowHooks",
    "WorkflowResult",
    "build_workflow_class",
    "stages",
]
