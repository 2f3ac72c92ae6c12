"""The workflow store's rows: steps marked running while in flight, many workflows at once on PostgreSQL, and
ownership — two orchestrators on one database never resume the same workflow."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.postgres_store import PostgresStore
from framework.workflows import StepStatus, WorkflowResult
from tests.pg import migrated_database, wait_for
from tests.workflows.flow_nodes import FlowOrchestrator
from tests.workflows.helpers import build

HELD = {
    "steps": [
        {"name": "a", "target": {"handler": "ok"}},
        {"name": "h1", "target": {"handler": "hold"}, "parallel_group": "g"},
        {"name": "h2", "target": {"handler": "hold"}, "parallel_group": "g"},
        {"name": "never", "target": {"handler": "ok"}, "parallel_group": "g", "when": "n < 0"},
        {"name": "b", "target": {"handler": "ok"}},
    ]
}


@pytest.fixture
async def dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with migrated_database(postgres_dsn) as url:
        yield url


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(dsn, min_size=1, max_size=10) as opened:
        yield opened


@contextlib.asynccontextmanager
async def orchestrator(workflow: dict[str, Any], **options: Any) -> AsyncIterator[FlowOrchestrator]:
    node, _, bus = await build(workflow, **options)
    try:
        yield node
    finally:
        for task in list(node._tasks):
            task.cancel()
        await node.stop()
        await bus.stop()


async def step_rows(store: PostgresStore, wid: str) -> dict[str, tuple[str, int]]:
    async with store.transaction() as tx:
        rows = await tx.fetch("SELECT step, status, attempts FROM workflow_steps WHERE workflow_id = $1", wid)
    return {r["step"]: (r["status"], r["attempts"]) for r in rows}


# --- running rows ---------------------------------------------------------------------------------------------------


async def test_steps_in_flight_are_marked_running_in_memory() -> None:
    await _steps_in_flight_are_marked_running(None)


async def test_steps_in_flight_are_marked_running_on_postgresql(store: PostgresStore) -> None:
    await _steps_in_flight_are_marked_running(store)


async def _steps_in_flight_are_marked_running(store: PostgresStore | None) -> None:
    async with orchestrator(HELD, store=store) as node:
        wid = str(uuid.uuid4())
        running = asyncio.create_task(node.run_workflow({"n": 1}, workflow_id=wid))
        await node.holding.wait()
        await wait_for(lambda: len([c for c in node.calls if c[1].startswith("h")]) == 2, "both holds to start")
        # Both members of the group are in flight; the one whose guard does not hold never was.
        assert await node.workflow_store.running(wid) == ["h1", "h2"]
        recorded = {n: str(o.status) for n, o in (await node.workflow_store.steps(wid)).items()}
        assert recorded == {"a": "completed", "never": "skipped"}
        if store is not None:
            assert await step_rows(store, wid) == {
                "a": ("completed", 1),
                "h1": ("running", 0),
                "h2": ("running", 0),
                "never": ("skipped", 0),
            }
        node.release.set()
        result = await running
    assert result is not None and result.state == "completed"
    assert await node.workflow_store.running(wid) == []
    statuses = {n: str(o.status) for n, o in (await node.workflow_store.steps(wid)).items()}
    assert statuses == {"a": "completed", "h1": "completed", "h2": "completed", "never": "skipped", "b": "completed"}


async def test_a_step_in_flight_when_the_workflow_times_out_is_not_left_running() -> None:
    workflow = {"steps": [{"name": "a", "target": {"handler": "hold"}, "timeout_ms": 60_000}], "timeout_ms": 100}
    async with orchestrator(workflow) as node:
        result = await node.run_workflow({"n": 1})
        assert result is not None and result.state == "failed"
        assert await node.workflow_store.running(result.workflow_id) == []
        row = (await node.workflow_store.steps(result.workflow_id))["a"]
        assert row.status is StepStatus.TIMED_OUT and "interrupted" in (row.error or "")


# --- many workflows on PostgreSQL -----------------------------------------------------------------------------------


async def test_a_thousand_concurrent_workflows_reach_the_right_final_state_on_postgresql(
    store: PostgresStore,
) -> None:
    workflow = {
        "steps": [
            {"name": "a", "target": {"handler": "ok"}},
            {"name": "p1", "target": {"handler": "ok"}, "parallel_group": "fan"},
            {"name": "p2", "target": {"handler": "ok"}, "parallel_group": "fan", "required": False},
            {"name": "b", "target": {"node": "calculator", "handler": "double"}},
        ],
        "max_in_flight": 100,
    }
    cases: list[dict[str, Any]] = [
        {"n": i, "fail": ["p1"] if i % 7 == 0 else ["p2"] if i % 5 == 0 else []} for i in range(1000)
    ]
    async with orchestrator(workflow, store=store) as node:
        results: list[WorkflowResult | None] = await asyncio.gather(*(node.run_workflow(c) for c in cases))
        assert node.engine.in_flight == 0 and node.engine.queued == 0
    ids = [r.workflow_id for r in results if r is not None]
    assert len(set(ids)) == 1000
    expected = {wid: "failed" if "p1" in case["fail"] else "completed" for wid, case in zip(ids, cases, strict=True)}
    async with store.transaction() as tx:
        rows = await tx.fetch(
            "SELECT workflow_id::text AS id, state, completed_at IS NOT NULL AS finished, error "
            "FROM workflow_executions WHERE workflow_id = ANY($1::uuid[])",
            ids,
        )
        steps = await tx.fetch(
            "SELECT workflow_id::text AS id, step, status, result FROM workflow_steps "
            "WHERE workflow_id = ANY($1::uuid[])",
            ids,
        )
        last = await tx.fetch(
            "SELECT DISTINCT ON (instance_id) instance_id, to_state FROM fsm_transitions "
            "WHERE machine = 'workflow' AND instance_id = ANY($1::text[]) ORDER BY instance_id, sequence DESC",
            ids,
        )
        outbox = await tx.fetch("SELECT topic, count(*) AS n FROM outbox GROUP BY topic")
    assert {r["id"]: r["state"] for r in rows} == expected
    assert all(r["finished"] for r in rows)
    assert all("p1" in r["error"] for r in rows if r["state"] == "failed")
    assert {r["instance_id"]: r["to_state"] for r in last} == expected
    by_workflow: dict[str, dict[str, str]] = {}
    for s in steps:
        by_workflow.setdefault(s["id"], {})[s["step"]] = s["status"]
        if s["step"] == "b":
            n = cases[ids.index(s["id"])]["n"]
            assert s["result"] == {"value": {"value": n * 2}}
    for wid, case in zip(ids, cases, strict=True):
        if "p1" in case["fail"]:
            assert by_workflow[wid]["p1"] == "failed" and "b" not in by_workflow[wid]
        else:
            p2 = "failed" if case["fail"] else "completed"
            assert by_workflow[wid] == {"a": "completed", "p1": "completed", "p2": p2, "b": "completed"}
    failed = sum(1 for state in expected.values() if state == "failed")
    counts = {r["topic"].split(".")[-2]: r["n"] for r in outbox}
    assert counts["stamp-workflow-failed"] == failed and counts["stamp-workflow-completed"] == 1000 - failed


# --- ownership ------------------------------------------------------------------------------------------------------


PAUSED = {
    "steps": [
        {"name": "first", "target": {"handler": "add_one"}},
        {"name": "pause", "target": {"handler": "pause"}, "timeout_ms": 120_000},
        {"name": "second", "target": {"node": "calculator", "handler": "double"}},
    ],
    "timeout_ms": 120_000,
}


async def _start_paused(node: FlowOrchestrator, count: int) -> list[str]:
    """Start ``count`` workflows on ``node`` and return once each is in its pause step."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for i, wid in enumerate(ids):
        node._spawn(node.engine.run({"n": i}, workflow_id=wid), cause=None)
    await wait_for(
        lambda: {w for w, step, _ in node.calls if step == "pause"} >= set(ids), f"{count} workflows to pause"
    )
    return ids


async def test_two_orchestrators_on_one_database_never_resume_the_same_workflow(
    dsn: str,
) -> None:
    stores = [PostgresStore(dsn, min_size=1, max_size=5) for _ in range(4)]
    for s in stores:
        await s.start()
    bus = MemoryEventBus()
    await bus.start()
    try:
        dead, _, _ = await build(PAUSED, store=stores[0], instance="dead", bus=bus, lease_s=0.5)
        # alive for the whole test, renewal or not
        live, _, _ = await build(PAUSED, store=stores[1], instance="live", bus=bus, lease_s=60)
        dead.pause_s = live.pause_s = 3600.0
        orphaned = await _start_paused(dead, 20)
        held = await _start_paused(live, 5)
        for task in list(dead._tasks):  # the dead orchestrator stops without a word: no renewal, no outcome
            task.cancel()
        await asyncio.gather(*dead._tasks, return_exceptions=True)

        async def expired() -> bool:  # a transaction per look: now() is the transaction's start
            async with stores[2].transaction() as tx:
                return bool(
                    await tx.fetchval(
                        "SELECT bool_and(lease_expires_at < now()) FROM workflow_executions "
                        "WHERE workflow_id = ANY($1::uuid[])",
                        orphaned,
                    )
                )

        await wait_for(expired, "the dead orchestrator's leases to expire")

        first, _, _ = await build(PAUSED, store=stores[2], instance="first", bus=bus)
        second, _, _ = await build(PAUSED, store=stores[3], instance="second", bus=bus)
        first.pause_s = second.pause_s = 0.0
        counts = await asyncio.gather(first.engine.recover(), second.engine.recover())

        assert sum(counts) == len(orphaned)  # each orphan claimed once, the live orchestrator's not at all
        resumed = [w for node in (first, second) for w, step, _ in node.calls if step == "pause"]
        assert sorted(resumed) == sorted(orphaned)  # every orphan resumed exactly once, in one of the two
        async with stores[2].transaction() as tx:
            rows = await tx.fetch(
                "SELECT workflow_id::text AS id, state, owner, completed_at IS NOT NULL AS finished "
                "FROM workflow_executions WHERE workflow_id = ANY($1::uuid[])",
                [*orphaned, *held],
            )
            pauses = await tx.fetch(
                "SELECT workflow_id::text AS id, attempts FROM workflow_steps "
                "WHERE step = 'pause' AND workflow_id = ANY($1::uuid[])",
                orphaned,
            )
        by_id = {r["id"]: r for r in rows}
        assert all(by_id[w]["state"] == "completed" and by_id[w]["finished"] for w in orphaned)
        assert {by_id[w]["owner"] for w in orphaned} <= {first.node_id, second.node_id}
        assert all(not by_id[w]["finished"] and by_id[w]["owner"] == live.node_id for w in held)
        assert {p["id"]: p["attempts"] for p in pauses} == dict.fromkeys(orphaned, 1)
        for w in held:
            holder, left_s = await live.workflow_store.owner(w)
            assert holder == live.node_id and left_s is not None and left_s > 0
        for task in list(live._tasks):
            task.cancel()
        await live.stop()
    finally:
        await bus.stop()
        for s in stores:
            await s.stop()


async def test_an_orchestrator_resumes_its_own_workflows_and_takes_over_expired_ones_later(
    store: PostgresStore,
) -> None:
    async with orchestrator(PAUSED, store=store, instance="gone", lease_s=0.3) as gone:
        gone.pause_s = 3600.0
        ids = await _start_paused(gone, 3)
        for task in list(gone._tasks):
            task.cancel()
    async with orchestrator(PAUSED, store=store, instance="heir", lease_s=0.3) as heir:
        heir.pause_s = 0.0
        # Started while the leases still hold: nothing to resume at once, then the lease keeper takes them over.
        await heir.start()
        assert heir.recovery is not None

        async def finished() -> bool:
            async with store.transaction() as tx:
                n = await tx.fetchval(
                    "SELECT count(*) FROM workflow_executions WHERE state = 'completed' "
                    "AND workflow_id = ANY($1::uuid[])",
                    ids,
                )
            return bool(n == len(ids))

        await wait_for(finished, "the heir to take over the expired workflows")
        assert sorted(w for w, step, _ in heir.calls if step == "pause") == sorted(ids)
