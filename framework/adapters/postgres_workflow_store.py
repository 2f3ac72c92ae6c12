"""The workflow store on PostgreSQL (workflow_executions, workflow_steps). A step's row is written when the step has
an outcome, not when it starts: a step that was running when the process died has no row and runs again on resume."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from framework.ports.store import Store
from framework.ports.workflow_store import Execution, StepOutcome, StepStatus

_CREATE = """
INSERT INTO workflow_executions (workflow_id, workflow_name, state, context) VALUES ($1, $2, 'pending', $3)
ON CONFLICT (workflow_id) DO NOTHING RETURNING 1
"""
_SET_STATE = """
UPDATE workflow_executions SET state = $2, updated_at = now(),
    completed_at = CASE WHEN $3 THEN now() ELSE NULL END, error = $4,
    context = CASE WHEN $5::jsonb IS NULL THEN context ELSE context || jsonb_build_object('result', $5::jsonb) END
WHERE workflow_id = $1
"""
_SAVE_STEP = """
INSERT INTO workflow_steps (workflow_id, step, status, attempts, started_at, finished_at, duration_ms, error, result)
VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5 / 1000.0), now(), $5, $6, $7)
ON CONFLICT (workflow_id, step) DO UPDATE SET status = EXCLUDED.status,
    attempts = workflow_steps.attempts + EXCLUDED.attempts, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error,
    result = EXCLUDED.result
"""
_LOAD = """
SELECT workflow_id::text AS workflow_id, workflow_name, state, context, completed_at IS NOT NULL AS finished, error
FROM workflow_executions WHERE workflow_id = $1
"""
_STEPS = """
SELECT step, status, attempts, coalesce(duration_ms, 0) AS duration_ms, error, result
FROM workflow_steps WHERE workflow_id = $1 AND status NOT IN ('pending', 'running')
"""
_UNFINISHED = """
SELECT workflow_id::text AS workflow_id FROM workflow_executions
WHERE completed_at IS NULL AND workflow_name = $1 ORDER BY updated_at
"""


class PostgresWorkflowStore:
    """The tables of migrations 005 and 006 on a :class:`~framework.ports.store.Store`."""

    def __init__(self, store: Store, required: dict[str, bool]) -> None:
        self._store = store
        self._required = required  # step name → required, to rebuild outcomes

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self._store.transaction()

    async def create(self, workflow_id: str, workflow_name: str, data: dict[str, Any]) -> bool:
        async with self._store.transaction() as tx:
            return await tx.fetchval(_CREATE, workflow_id, workflow_name, {"input": data}) is not None

    async def set_state(
        self, workflow_id: str, state: str, *, finished: bool, error: str | None, result: dict[str, Any] | None
    ) -> None:
        async with self._store.transaction() as tx:
            await tx.execute(_SET_STATE, workflow_id, state, finished, error, result)

    async def save_step(self, workflow_id: str, outcome: StepOutcome) -> None:
        async with self._store.transaction() as tx:
            await tx.execute(
                _SAVE_STEP,
                workflow_id,
                outcome.step,
                str(outcome.status),
                outcome.attempts,
                outcome.duration_ms,
                outcome.error,
                {"value": outcome.result},
            )

    async def load(self, workflow_id: str) -> Execution | None:
        async with self._store.transaction() as tx:
            row = await tx.fetchrow(_LOAD, workflow_id)
        if row is None:
            return None
        context = row["context"] or {}
        return Execution(
            row["workflow_id"],
            row["workflow_name"],
            row["state"],
            context.get("input", {}),
            row["finished"],
            row["error"],
            context.get("result"),
        )

    async def steps(self, workflow_id: str) -> dict[str, StepOutcome]:
        async with self._store.transaction() as tx:
            rows = await tx.fetch(_STEPS, workflow_id)
        return {
            r["step"]: StepOutcome(
                r["step"],
                StepStatus(r["status"]),
                self._required.get(r["step"], True),
                r["attempts"],
                r["duration_ms"],
                (r["result"] or {}).get("value"),
                r["error"],
            )
            for r in rows
        }

    async def unfinished(self, workflow_name: str) -> list[str]:
        async with self._store.transaction() as tx:
            rows = await tx.fetch(_UNFINISHED, workflow_name)
        return [r["workflow_id"] for r in rows]
