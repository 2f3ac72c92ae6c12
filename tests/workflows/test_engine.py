"""Workflows from test contracts, on the in-memory bus and FSM store: shapes, failures, timeouts, limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from workflows import Workflow

from framework.contract.subcontracts import Workflow as WorkflowSpec
from framework.ports.fsm_store import TransitionRecord
from framework.workflows import StepStatus, WorkflowBusy, WorkflowResult
from framework.workflows.builder import build_workflow_class
from tests.workflows.flow_nodes import FlowOrchestrator
from tests.workflows.helpers import Published, build

RETRY_TWICE = {"kind": "retry", "max_attempts": 2, "backoff": {"initial_ms": 1, "max_ms": 2}}


@pytest.fixture
async def flow(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FlowOrchestrator, Published]]:
    node, published, bus = await build(request.param)
    try:
        yield node, published
    finally:
        await node.stop()
        await bus.stop()


def workflow(*steps: dict[str, Any], **options: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("flow", [{"steps": list(steps), **options}], indirect=True)


async def run(node: FlowOrchestrator, **data: Any) -> WorkflowResult:
    result = await node.run_workflow(data)
    assert result is not None
    return result


def statuses(result: WorkflowResult) -> dict[str, str]:
    return {name: str(o.status) for name, o in result.outcomes.items()}


@workflow(
    {"name": "first", "target": {"handler": "add_one"}},
    {"name": "second", "target": {"node": "calculator", "handler": "double"}},
)
async def test_linear_workflow_runs_its_steps_in_order_and_completes(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, published = flow
    result = await run(node, n=20)
    assert result.state == "completed" and result.error is None
    assert result.results == {"first": {"value": 21}, "second": {"value": 40}}
    assert list(result.outcomes) == ["first", "second"]
    wid = result.workflow_id
    assert published.types(wid) == [
        "stamp-workflow-started",
        "workflow-state-transition",
        "workflow-step-completed",
        "workflow-step-completed",
        "stamp-workflow-completed",
        "workflow-state-transition",
    ]
    completed = next(e for e in published if e.event_type == "stamp-workflow-completed")
    assert completed.payload == {"workflow_id": wid, "completed_steps": 2}
    history = await node.runtime.fsm_store.history("workflow", wid)
    assert [(r.from_state, r.to_state) for r in history] == [("pending", "processing"), ("processing", "completed")]
    assert history[-1].context["completed_steps"] == 2
    transitions = node.runtime.metrics.transitions  # onex_fsm_transitions_total, one per transition taken
    assert transitions.value(machine="workflow", from_state="pending", to_state="processing") >= 1
    before = transitions.value(machine="workflow", from_state="processing", to_state="completed")
    await run(node, n=1)
    assert transitions.value(machine="workflow", from_state="processing", to_state="completed") == before + 1


@workflow(
    {"name": "a", "target": {"handler": "ok"}},
    {"name": "left", "target": {"handler": "ok"}, "when": 'branch == "left"'},
    {"name": "right", "target": {"handler": "ok"}, "when": 'branch == "right"'},
    {"name": "after_a", "target": {"handler": "ok"}, "when": 'steps.a.step == "a"'},
)
async def test_branches_follow_their_guards(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    left = await run(node, n=1, branch="left")
    right = await run(node, n=1, branch="right")
    assert statuses(left) == {"a": "completed", "left": "completed", "right": "skipped", "after_a": "completed"}
    assert statuses(right) == {"a": "completed", "left": "skipped", "right": "completed", "after_a": "completed"}
    assert left.state == right.state == "completed"
    history = await node.runtime.fsm_store.history("workflow", left.workflow_id)
    assert history[-1].context["skipped_steps"] == 1 and history[-1].context["completed_steps"] == 3


@workflow(
    {"name": "a", "target": {"handler": "ok"}, "when": "missing_field"},
    {"name": "b", "target": {"handler": "ok"}},
)
async def test_a_guard_that_cannot_be_evaluated_fails_its_step(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    result = await run(node, n=1)
    assert result.state == "failed" and result.failed_step == "a"
    assert "unknown name 'missing_field'" in (result.outcomes["a"].error or "")


@workflow(
    {"name": "before", "target": {"handler": "ok"}},
    {"name": "p1", "target": {"handler": "ok"}, "parallel_group": "fan"},
    {"name": "p2", "target": {"handler": "ok"}, "parallel_group": "fan"},
    {"name": "p3", "target": {"handler": "ok"}, "parallel_group": "fan"},
    {"name": "join", "target": {"handler": "sum_parallel"}},
)
async def test_parallel_group_fans_out_and_in(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    result = await run(node, n=1, delay_s=0.05)
    assert result.state == "completed"
    wid = result.workflow_id
    marks = [(step, what) for w, step, what in node.calls if w == wid and step.startswith("p")]
    # All three started before any of them ended: they ran concurrently.
    assert [what for _, what in marks[:3]] == ["start"] * 3 and {s for s, _ in marks[:3]} == {"p1", "p2", "p3"}
    # The join ran after all of them, and saw their results.
    assert result.results["join"] == {"seen": ["before", "p1", "p2", "p3"]}
    assert list(result.outcomes) == ["before", "p1", "p2", "p3", "join"]


@workflow(
    {"name": "p1", "target": {"handler": "ok"}, "parallel_group": "fan"},
    {"name": "p2", "target": {"handler": "ok"}, "parallel_group": "fan", "required": False},
    {"name": "p3", "target": {"handler": "ok"}, "parallel_group": "fan"},
    {"name": "join", "target": {"handler": "sum_parallel"}},
)
async def test_parallel_group_fails_on_a_required_member_only(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    optional_failed = await run(node, n=1, fail=["p2"])
    assert optional_failed.state == "completed"
    assert statuses(optional_failed)["p2"] == "failed"
    assert optional_failed.results["join"] == {"seen": ["p1", "p3"]}
    required_failed = await run(node, n=1, fail=["p3"])
    assert required_failed.state == "failed" and required_failed.failed_step == "p3"
    assert "join" not in required_failed.outcomes


@workflow(
    {"name": "a", "target": {"handler": "ok"}},
    {"name": "b", "target": {"handler": "broken"}, "retry": RETRY_TWICE},
    {"name": "c", "target": {"handler": "ok"}},
)
async def test_failing_required_step_fails_the_workflow(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, published = flow
    result = await run(node, n=1)
    assert result.state == "failed" and result.failed_step == "b"
    assert result.outcomes["b"].status is StepStatus.FAILED and result.outcomes["b"].attempts == 2
    assert "b is broken" in (result.error or "")
    assert "c" not in result.outcomes  # nothing after it ran
    failed = [e for e in published if e.event_type == "stamp-workflow-failed"]
    assert [e.payload["workflow_id"] for e in failed] == [result.workflow_id]
    assert "b is broken" in failed[0].payload["error"]
    instance = await node.fsm.restore(result.workflow_id) if node.fsm else None
    assert instance is not None and instance.state == "failed"


@workflow(
    {"name": "a", "target": {"handler": "refuse"}, "retry": RETRY_TWICE},
)
async def test_a_step_failed_for_good_is_not_retried(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    result = await run(node, n=1)
    assert result.state == "failed" and result.outcomes["a"].attempts == 1


@workflow(
    {"name": "a", "target": {"handler": "ok"}},
    {"name": "b", "target": {"handler": "broken"}, "required": False},
    {"name": "c", "target": {"handler": "ok"}},
)
async def test_failing_optional_step_is_skipped_and_recorded(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, published = flow
    result = await run(node, n=1)
    assert result.state == "completed"
    assert statuses(result) == {"a": "completed", "b": "failed", "c": "completed"}
    steps = [e.payload for e in published if e.event_type == "workflow-step-completed"]
    assert [(p["step"], p["status"]) for p in steps] == [("a", "completed"), ("b", "failed"), ("c", "completed")]
    history = await node.runtime.fsm_store.history("workflow", result.workflow_id)
    assert history[-1].context["completed_steps"] == 2 and history[-1].context["skipped_steps"] == 1


@workflow(
    {"name": "a", "target": {"handler": "flaky"}, "retry": RETRY_TWICE},
)
async def test_a_step_is_retried_per_its_policy(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    result = await run(node, n=1)
    assert result.state == "completed"
    assert result.outcomes["a"].attempts == 2 and result.results["a"] == {"attempt": 2}


@workflow(
    {"name": "a", "target": {"handler": "ok"}},
    {"name": "stuck_optional", "target": {"handler": "hang"}, "timeout_ms": 20, "required": False},
    {"name": "stuck", "target": {"handler": "hang"}, "timeout_ms": 20, "retry": RETRY_TWICE},
)
async def test_step_timeouts(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    result = await run(node, n=1)
    assert statuses(result) == {"a": "completed", "stuck_optional": "timed_out", "stuck": "timed_out"}
    assert result.outcomes["stuck"].attempts == 2
    assert result.state == "failed" and result.failed_step == "stuck"
    assert "timed out after 20 ms" in (result.error or "")


@workflow(
    {"name": "a", "target": {"handler": "hang"}, "timeout_ms": 60_000},
    timeout_ms=50,
)
async def test_workflow_timeout_fails_the_workflow(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, published = flow
    result = await run(node, n=1)
    assert result.state == "failed" and "timed out after 50 ms" in (result.error or "")
    assert "stamp-workflow-failed" in published.types(result.workflow_id)


@workflow({"name": "a", "target": {"handler": "ok"}}, max_in_flight=2)
async def test_over_the_limit_callers_queue_or_are_refused(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    node.engine.max_queued = 1
    running = [asyncio.create_task(run(node, n=i, delay_s=0.2)) for i in range(2)]
    queued = asyncio.create_task(run(node, n=3))
    while node.engine.in_flight < 2 or node.engine.queued < 1:  # noqa: ASYNC110 - polling the engine's counters
        await asyncio.sleep(0.001)
    with pytest.raises(WorkflowBusy, match="2 running \\(limit 2\\) and 1 queued"):
        await node.run_workflow({"n": 4}, wait=False)
    results = await asyncio.gather(*running, queued)
    assert [r.state for r in results] == ["completed"] * 3


@workflow(
    {"name": "a", "target": {"handler": "ok"}},
    {"name": "p1", "target": {"handler": "ok"}, "parallel_group": "g"},
    {"name": "p2", "target": {"handler": "ok"}, "parallel_group": "g", "required": False},
    {"name": "b", "target": {"node": "calculator", "handler": "double"}},
    max_in_flight=100,
)
async def test_a_thousand_concurrent_workflows_reach_the_right_final_state(
    flow: tuple[FlowOrchestrator, Published],
) -> None:
    node, published = flow
    cases: list[dict[str, Any]] = []
    for i in range(1000):
        fail = ["p1"] if i % 7 == 0 else ["p2"] if i % 5 == 0 else []
        cases.append({"n": i, "fail": fail})
    results = await asyncio.gather(*(run(node, **case) for case in cases))
    for case, result in zip(cases, results, strict=True):
        expected = "failed" if "p1" in case["fail"] else "completed"
        assert result.state == expected, (case, result.error)
        if expected == "completed":
            assert result.results["b"] == {"value": case["n"] * 2}
    assert len({r.workflow_id for r in results}) == 1000
    terminal = [e for e in published if e.event_type in ("stamp-workflow-completed", "stamp-workflow-failed")]
    assert len(terminal) == 1000
    assert node.engine.in_flight == 0 and node.engine.queued == 0


@pytest.mark.parametrize(
    "steps",
    [
        [{"name": "a", "target": {"handler": "echo"}}, {"name": "b", "target": {"handler": "echo"}}],
        [
            {"name": "a", "target": {"handler": "echo"}},
            {"name": "p", "target": {"handler": "echo"}, "parallel_group": "g"},
            {"name": "q", "target": {"handler": "echo"}, "parallel_group": "g"},
            {"name": "z", "target": {"handler": "echo"}},
        ],
    ],
)
def test_a_built_workflow_lists_its_steps_as_the_library_would(steps: list[dict[str, Any]]) -> None:
    """The built class answers ``_get_steps`` without walking the instance; the library's own answer must agree."""
    spec = WorkflowSpec.model_validate({"workflow_name": "listing", "steps": steps})
    cls = build_workflow_class(spec, run_step=None)  # type: ignore[arg-type]  # never run here
    workflow = cls(timeout=10)
    assert workflow._get_steps() == Workflow._get_steps(workflow)
    assert {f"step_{s['name']}" for s in steps} <= set(workflow._get_steps())


@workflow({"name": "first", "target": {"handler": "add_one"}})
async def test_a_workflow_that_cannot_be_resumed_is_failed_explicitly(flow: tuple[FlowOrchestrator, Published]) -> None:
    node, _ = flow
    engine = node.engine
    wid = f"unresumable-{uuid.uuid4()}"
    await engine.store.create(wid, engine.spec.workflow_name, {"n": 1}, owner=engine.owner, lease_s=30)
    await engine.store.set_state(wid, "processing", finished=False, error=None, result=None)
    # Its FSM history ends in a state this FSM does not have (written by another version of the contract, say).
    record = TransitionRecord("workflow", wid, 1, "gone", "start", "pending", "vanished", datetime.now(UTC))
    await node.runtime.fsm_store.record(record)
    assert await engine.resume(wid) is None
    execution = await engine.store.load(wid)
    assert execution is not None and execution.state == "failed" and execution.finished
    assert execution.error is not None and execution.error.startswith("could not be resumed after a restart: ")
    assert "recorded state 'vanished' is not a state of this FSM" in execution.error
    assert wid not in await engine.store.unfinished(engine.spec.workflow_name)  # none stays in processing
