"""The workflow store in this process only: for hosts without a database, tests and benchmarks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from framework.ports.workflow_store import Execution, StepOutcome


class MemoryWorkflowStore:
    """In this process only: for hosts without a database, tests and benchmarks. Several engines may share one (as
    several orchestrators share a database): leases are kept on a monotonic clock."""

    def __init__(self) -> None:
        self.executions: dict[str, Execution] = {}
        self.step_rows: dict[str, dict[str, StepOutcome]] = {}
        self.running_steps: dict[str, set[str]] = {}
        self.leases: dict[str, tuple[str, float]] = {}  # workflow id → (owner, monotonic expiry)
        self._order: dict[str, int] = {}

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return _nothing()

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
        if workflow_id in self.executions:
            return False
        self.executions[workflow_id] = Execution(workflow_id, workflow_name, "pending", data, False)
        self.step_rows[workflow_id] = {}
        self.running_steps[workflow_id] = set(running)
        self.leases[workflow_id] = (owner, time.monotonic() + lease_s)
        self._order[workflow_id] = len(self._order)
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
        if finished:
            self.leases.pop(workflow_id, None)

    async def save_step(self, workflow_id: str, outcome: StepOutcome, *, running: Sequence[str] = ()) -> None:
        self.step_rows.setdefault(workflow_id, {})[outcome.step] = outcome
        marked = self.running_steps.setdefault(workflow_id, set())
        marked.discard(outcome.step)
        marked.update(running)

    async def mark_running(self, workflow_id: str, steps: Sequence[str]) -> None:
        rows = self.step_rows.get(workflow_id, {})
        for step in steps:
            rows.pop(step, None)
        self.running_steps.setdefault(workflow_id, set()).update(steps)

    async def running(self, workflow_id: str) -> list[str]:
        return sorted(self.running_steps.get(workflow_id, ()))

    async def load(self, workflow_id: str) -> Execution | None:
        return self.executions.get(workflow_id)

    async def steps(self, workflow_id: str) -> dict[str, StepOutcome]:
        return dict(self.step_rows.get(workflow_id, {}))

    async def unfinished(self, workflow_name: str) -> list[str]:
        return [e.workflow_id for e in self.executions.values() if e.workflow_name == workflow_name and not e.finished]

    async def claim(self, workflow_name: str, owner: str, lease_s: float) -> list[str]:
        now = time.monotonic()
        claimed = []
        for wid in await self.unfinished(workflow_name):
            holder, expiry = self.leases.get(wid, (None, 0.0))
            if holder is None or holder == owner or expiry < now:
                self.leases[wid] = (owner, now + lease_s)
                claimed.append(wid)
        return claimed

    async def renew(self, owner: str, lease_s: float) -> int:
        expiry = time.monotonic() + lease_s
        mine = [wid for wid, (holder, _) in self.leases.items() if holder == owner]
        for wid in mine:
            self.leases[wid] = (owner, expiry)
        return len(mine)

    async def owner(self, workflow_id: str) -> tuple[str | None, float | None]:
        holder = self.leases.get(workflow_id)
        if holder is None:
            return None, None
        return holder[0], holder[1] - time.monotonic()


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None
