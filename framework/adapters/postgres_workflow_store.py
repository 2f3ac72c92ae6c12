"""The workflow store on PostgreSQL (workflow_executions, workflow_steps).

A step's row says ``running`` from when it may start until its outcome replaces it: a step that was running when the
process died keeps that row (it runs again on resume). Marking the next steps running rides on the statement that
records the previous outcome (and the first steps' on the one that records the workflow), so it costs no round trip
of its own. Every call joins the transaction open in the caller's context (no savepoint), else opens one.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from framework.ports.store import Store, Transaction, in_transaction, rows_affected
from framework.ports.workflow_store import Execution, StepOutcome, StepStatus

_LEASE = "now() + make_interval(secs => {})"
_CREATE = f"""
WITH created AS (
    INSERT INTO workflow_executions (workflow_id, workflow_name, state, context, owner, lease_expires_at)
    VALUES ($1, $2, 'pending', $3, $4, {_LEASE.format("$5::float8")})
    ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id
), running AS (
    INSERT INTO workflow_steps (workflow_id, step, status, started_at)
    SELECT created.workflow_id, s, 'running', now() FROM created, unnest($6::text[]) AS s
)
SELECT count(*) FROM created
"""
_SET_STATE = """
UPDATE workflow_executions SET state = $2, updated_at = now(),
    completed_at = CASE WHEN $3 THEN now() ELSE NULL END, error = $4,
    context = CASE WHEN $5::jsonb IS NULL THEN context ELSE context || jsonb_build_object('result', $5::jsonb) END
WHERE workflow_id = $1
"""
_MARK_RUNNING = """
INSERT INTO workflow_steps (workflow_id, step, status, started_at)
SELECT {wid}, s, 'running', now() FROM unnest({steps}::text[]) AS s
ON CONFLICT (workflow_id, step) DO UPDATE SET status = 'running', started_at = now(), finished_at = NULL,
    duration_ms = NULL, error = NULL, result = NULL
"""
_SAVE_OUTCOME = """
INSERT INTO workflow_steps (workflow_id, step, status, attempts, started_at, finished_at, duration_ms, error, result)
VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5 / 1000.0), now(), $5, $6, $7)
ON CONFLICT (workflow_id, step) DO UPDATE SET status = EXCLUDED.status,
    attempts = workflow_steps.attempts + EXCLUDED.attempts, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error,
    result = EXCLUDED.result
"""
# The outcome and the steps it lets start, in one statement (two rows of different steps, so no row is hit twice).
_SAVE_STEP = f"""
WITH outcome AS ({_SAVE_OUTCOME.strip()} RETURNING 1)
{_MARK_RUNNING.format(wid="$1", steps="$8").strip()}
"""
_LOAD = """
SELECT workflow_id::text AS workflow_id, workflow_name, state, context, completed_at IS NOT NULL AS finished, error
FROM workflow_executions WHERE workflow_id = $1
"""
_STEPS = """
SELECT step, status, attempts, coalesce(duration_ms, 0) AS duration_ms, error, result
FROM workflow_steps WHERE workflow_id = $1 AND status NOT IN ('pending', 'running')
"""
_RUNNING = "SELECT step FROM workflow_steps WHERE workflow_id = $1 AND status = 'running' ORDER BY step"
_UNFINISHED = """
SELECT workflow_id::text AS workflow_id FROM workflow_executions
WHERE completed_at IS NULL AND workflow_name = $1 ORDER BY updated_at
"""
# Row locks make this atomic: a second claimer blocks on the rows the first one updates, then re-checks the WHERE
# on their new versions (owner and lease changed) and skips them.
_CLAIM = f"""
WITH claimed AS (
    UPDATE workflow_executions SET owner = $2, lease_expires_at = {_LEASE.format("$3::float8")}
    WHERE completed_at IS NULL AND workflow_name = $1
      AND (owner IS NULL OR owner = $2 OR lease_expires_at IS NULL OR lease_expires_at < now())
    RETURNING workflow_id, updated_at
)
SELECT workflow_id::text AS workflow_id FROM claimed ORDER BY updated_at
"""
_RENEW = f"""
UPDATE workflow_executions SET lease_expires_at = {_LEASE.format("$2::float8")}
WHERE owner = $1 AND completed_at IS NULL
"""
_OWNER = """
SELECT owner, extract(epoch FROM lease_expires_at - now())::float8 AS left_s
FROM workflow_executions WHERE workflow_id = $1 AND completed_at IS NULL
"""


class PostgresWorkflowStore:
    """The tables of migrations 005, 006 and 013 on a :class:`~framework.ports.store.Store`."""

    def __init__(self, store: Store, required: dict[str, bool]) -> None:
        self._store = store
        self._required = required  # step name → required, to rebuild outcomes

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self._store.transaction()

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
        args = (workflow_id, workflow_name, {"input": data}, owner, lease_s, list(running))
        created = await in_transaction(self._store, lambda tx: tx.fetchval(_CREATE, *args))
        return bool(created)

    async def set_state(
        self, workflow_id: str, state: str, *, finished: bool, error: str | None, result: dict[str, Any] | None
    ) -> None:
        await in_transaction(
            self._store, lambda tx: tx.execute(_SET_STATE, workflow_id, state, finished, error, result)
        )

    async def save_step(self, workflow_id: str, outcome: StepOutcome, *, running: Sequence[str] = ()) -> None:
        args = (
            workflow_id,
            outcome.step,
            str(outcome.status),
            outcome.attempts,
            outcome.duration_ms,
            outcome.error,
            {"value": outcome.result},
            list(running),
        )
        await in_transaction(self._store, lambda tx: tx.execute(_SAVE_STEP, *args))

    async def mark_running(self, workflow_id: str, steps: Sequence[str]) -> None:
        sql = _MARK_RUNNING.format(wid="$1::uuid", steps="$2")
        await in_transaction(self._store, lambda tx: tx.execute(sql, workflow_id, list(steps)))

    async def running(self, workflow_id: str) -> list[str]:
        rows = await in_transaction(self._store, lambda tx: tx.fetch(_RUNNING, workflow_id))
        return [r["step"] for r in rows]

    async def load(self, workflow_id: str) -> Execution | None:
        row = await in_transaction(self._store, lambda tx: tx.fetchrow(_LOAD, workflow_id))
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
        rows = await in_transaction(self._store, lambda tx: tx.fetch(_STEPS, workflow_id))
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
        return await self._ids(_UNFINISHED, workflow_name)

    async def claim(self, workflow_name: str, owner: str, lease_s: float) -> list[str]:
        return await self._ids(_CLAIM, workflow_name, owner, lease_s)

    async def renew(self, owner: str, lease_s: float) -> int:
        status: str = await in_transaction(self._store, lambda tx: tx.execute(_RENEW, owner, lease_s))
        return rows_affected(status)

    async def owner(self, workflow_id: str) -> tuple[str | None, float | None]:
        row = await in_transaction(self._store, lambda tx: tx.fetchrow(_OWNER, workflow_id))
        if row is None or row["owner"] is None:
            return None, None
        return row["owner"], row["left_s"]

    async def _ids(self, sql: str, *args: Any) -> list[str]:
        async def fetch(tx: Transaction) -> list[str]:
            return [r["workflow_id"] for r in await tx.fetch(sql, *args)]

        return await in_transaction(self._store, fetch)
