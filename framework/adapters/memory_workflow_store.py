"""The workflow store in this process only: for hosts without a database, tests and benchmarks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from framework.ports.workflow_store import Execution, StepOutcome


class MemoryWorkflowStore:
    """In this process only: for hosts without a database, tests and benchmarks."""

    def __init__(self) -> None:
        self.executions: dict[str, Execution] = {}
        self.step_rows: dict[str, dict[str, StepOutcome]] = {}

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return _nothing()

    async def create(self, workflow_id: str, workflow_name: str, data: dict[str, Any]) -> bool:
        if workflow_id in self.executions:
            return False
        self.executions[workflow_id] = Execution(workflow_id, workflow_name, "pending", data, False)
        self.step_rows[workflow_id] = {}
        return True

    async def set_state(
        self, workflow_id: str, state: str, *, finished: bool, error: str | None, result: dict[str, Any] | None
    ) -> None:
        old = self.executions[workflow_id]
        self.executions[workflow_id] = Execution(
            workflow_id,
            old.workflow_name,
            state,
            old.input,
            finished,
            error,
            result if result is not None else old.result,
        )

    async def save_step(self, workflow_id: str, outcome: StepOutcome) -> None:
        self.step_rows.setdefault(workflow_id, {})[outcome.step] = outcome

    async def load(self, workflow_id: str) -> Execution | None:
        return self.executions.get(workflow_id)

    async def steps(self, workflow_id: str) -> dict[str, StepOutcome]:
        return dict(self.step_rows.get(workflow_id, {}))

    async def unfinished(self, workflow_name: str) -> list[str]:
        return [e.workflow_id for e in self.executions.values() if e.workflow_name == workflow_name and not e.finished]


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None
