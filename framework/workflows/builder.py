"""Build a LlamaIndex Workflow class from a workflow subcontract.

Steps run in their declared order; consecutive steps of one ``parallel_group`` form a stage that fans out (one event
per member, sent with ``ctx.send_event``) and fans back in (``ctx.collect_events``) before the next stage. Each stage
is a step of the LlamaIndex Workflow, so the engine's routing, concurrency and timeout apply; what a step *does* —
guard, timeout, retries, persistence of its outcome — is the ``run_step`` callback's. A step whose outcome stops the
workflow (a required step that failed) ends the run with ``StopEvent(result=outcome)``; a run that gets through every
stage ends with ``StopEvent(result=None)``.

Classes are made with ``type(...)`` and steps registered as free functions with ``step(workflow=Cls)``; their
annotations are set explicitly, because they route the events. The first stage takes the ``StartEvent`` itself, and
every event carries the run's id (``run``), so a workflow has no step beyond its stages and never touches
``ctx.store``: each LlamaIndex step and each store access costs the engine a tick.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, Union

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from framework.contract.subcontracts import Step
from framework.contract.subcontracts import Workflow as WorkflowSpec
from framework.workflows.outcome import StepOutcome

RunStep = Callable[[Any, Step], Awaitable[StepOutcome]]
RUN_KEY = "run"
#: Runs in progress by id. The run object stays out of the events: the engine serialises and snapshots their
#: contents, and a run holds the FSM instance and step results; only the run's id travels with the events.
_RUNS: dict[str, Any] = {}


def stages(spec: WorkflowSpec) -> list[list[Step]]:
    """The steps grouped into stages: a parallel group is one stage, every other step a stage of its own."""
    out: list[list[Step]] = []
    for group, members in itertools.groupby(spec.steps, key=lambda s: s.parallel_group):
        if group is None:
            out.extend([s] for s in members)
        else:
            out.append(list(members))
    return out


def _event(name: str) -> type[Event]:
    return type(name, (Event,), {"__module__": __name__, "__annotations__": {RUN_KEY: str}})


def _run_id(ev: Event) -> str:
    """The run's id: a field of our events; an extra of the StartEvent (kept in its data)."""
    return str(ev.get(RUN_KEY) if isinstance(ev, StartEvent) else getattr(ev, RUN_KEY))


def _register(cls: type[Workflow], fn: Callable[..., Any], name: str, accepts: type[Event], returns: Any) -> None:
    fn.__name__ = fn.__qualname__ = name
    fn.__annotations__ = {"ctx": Context, "ev": accepts, "return": returns}
    step(workflow=cls)(fn)


async def run_workflow(workflow: Workflow, run_id: str, run: Any) -> Any:
    """Run ``workflow`` (an instance of a built class) on ``run``; returns the StopEvent's result."""
    _RUNS[run_id] = run
    try:
        return await workflow.run(start_event=StartEvent(**{RUN_KEY: run_id}))
    finally:
        del _RUNS[run_id]


def build_workflow_class(spec: WorkflowSpec, run_step: RunStep) -> type[Workflow]:
    """A Workflow class for ``spec``; run an instance of it with :func:`run_workflow`, which hands the run to
    ``run_step``."""
    prefix = "".join(part.title() for part in spec.workflow_name.split("_"))
    cls: type[Workflow] = type(f"{prefix}Workflow", (Workflow,), {"__module__": __name__, "_get_steps": _free_steps})
    grouped = stages(spec)
    entries: list[type[Event]] = [StartEvent, *(_event(f"{prefix}Stage{i}") for i in range(1, len(grouped)))]
    exits: list[type[Event]] = [*entries[1:], StopEvent]

    for i, members in enumerate(grouped):
        if len(members) == 1 and members[0].parallel_group is None:
            _single(cls, members[0], entries[i], exits[i], run_step)
        else:
            _parallel(cls, f"{prefix}{i}", members, entries[i], exits[i], run_step)
    return cls


def _free_steps(self: Workflow) -> dict[str, Any]:
    """``Workflow._get_steps`` for a built class, whose steps are all free functions registered on it: the library's
    own also walks every attribute of the instance for step methods (``inspect.getmembers``, ~45 us), and it asks
    before every step. ``tests/workflows/test_engine.py`` holds the two to the same answer."""
    return dict(type(self)._step_functions)


def _advance(nxt: type[Event], run_id: str) -> Event:
    return StopEvent(result=None) if nxt is StopEvent else nxt(**{RUN_KEY: run_id})


def _single(cls: type[Workflow], s: Step, entry: type[Event], nxt: type[Event], run_step: RunStep) -> None:
    async def run_one(ctx: Context, ev: Event) -> Event:
        run_id = _run_id(ev)
        outcome = await run_step(_RUNS[run_id], s)
        return _advance(nxt, run_id) if outcome.ok else StopEvent(result=outcome)

    _register(cls, run_one, f"step_{s.name}", entry, Union[nxt, StopEvent])  # noqa: UP007 - built at run time


def _parallel(  # noqa: PLR0917 - one stage, its place in the chain and its runner
    cls: type[Workflow], tag: str, members: list[Step], entry: type[Event], nxt: type[Event], run_step: RunStep
) -> None:
    branches = [_event(f"{tag}Branch{j}") for j in range(len(members))]
    joined = type(f"{tag}Joined", (Event,), {"__module__": __name__, "__annotations__": {"outcome": Any, RUN_KEY: str}})

    async def fan_out(ctx: Context, ev: Event) -> None:
        for branch in branches:
            ctx.send_event(branch(**{RUN_KEY: _run_id(ev)}))

    _register(cls, fan_out, f"fan_out_{tag}", entry, Union[tuple(branches)] | None)  # noqa: UP007

    for s, branch in zip(members, branches, strict=True):
        _register(cls, _branch_step(s, joined, run_step), f"step_{s.name}", branch, joined)

    async def fan_in(ctx: Context, ev: Event) -> Event | None:
        collected = ctx.collect_events(ev, [joined] * len(members))
        if collected is None:
            return None
        outcomes: list[StepOutcome] = [e.outcome for e in collected]
        failed = [o for o in outcomes if not o.ok]
        return StopEvent(result=failed[0]) if failed else _advance(nxt, _run_id(ev))

    _register(cls, fan_in, f"fan_in_{tag}", joined, Union[nxt, StopEvent, None])  # noqa: UP007


def _branch_step(s: Step, joined: type[Event], run_step: RunStep) -> Callable[..., Awaitable[Event]]:
    async def run_branch(ctx: Context, ev: Event) -> Event:
        run_id = _run_id(ev)
        return joined(outcome=await run_step(_RUNS[run_id], s), **{RUN_KEY: run_id})

    return run_branch
