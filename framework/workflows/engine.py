"""The workflow engine: runs a workflow subcontract as a LlamaIndex Workflow, drives the workflow FSM with the
steps' outcomes, persists every transition and outcome, bounds the workflows in flight, and resumes unfinished ones.

The FSM (``pending → processing → completed | failed``) is fired with these triggers and context fields:

- ``start`` when the workflow is recorded, with ``workflow_id``, ``workflow_name``, ``total_steps``,
  ``completed_steps`` and ``skipped_steps`` (0), ``error`` (null);
- ``succeed`` when every stage went through, with the counts (an optional step that failed or timed out, and a step
  whose ``when`` did not hold, count as skipped);
- ``fail`` when a required step failed or timed out, the workflow timed out, or it could not be resumed, with
  ``error`` and ``failed_step``.

Each transition commits together with the ``workflow_executions`` row and the events it emits (outbox rows, when the
host has a database); each step outcome with its ``workflow_steps`` row and its events.

A step's row says ``running`` before its target is called. The steps a stage lets start (the next stage's, whose
guards hold) are marked in the same write as the outcome that lets them start, and the first stage's with the
workflow's own row, so marking costs no write of its own; a step not marked that way (after a resume) is marked
alone just before it runs.

Each workflow is owned by ``owner`` under a lease of ``lease_s`` seconds, renewed by :meth:`WorkflowEngine.keep_leases`;
recovery takes over only workflows without a live owner (see :mod:`framework.ports.workflow_store`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from workflows.errors import WorkflowTimeoutError

from framework.contract.subcontracts import Step
from framework.contract.subcontracts import Workflow as WorkflowSpec
from framework.errors import OnexError, TransitionError
from framework.ports.workflow_store import WorkflowStore
from framework.runtime.fsm import FireResult, FSMEngine, FSMInstance
from framework.workflows.builder import build_workflow_class, run_workflow, stages
from framework.workflows.outcome import StepCall, StepOutcome, StepStatus, WorkflowResult
from framework.workflows.runner import StepRunner

log = logging.getLogger("onex.workflows")


class WorkflowBusy(OnexError):
    """The workflows in flight are at their limit and the queue is full: try again later (HTTP 503)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WorkflowHooks(Protocol):
    """What the engine needs from its orchestrator node."""

    async def invoke_step(self, call: StepCall) -> Any:
        """Reach the step's target and return its result."""
        ...

    async def fire(self, instance: FSMInstance, trigger: str, context: dict[str, Any] | None = None) -> FireResult:
        """Fire the workflow FSM and publish what it emits."""
        ...

    async def step_finished(self, workflow_id: str, outcome: StepOutcome, results: Mapping[str, Any]) -> None:
        """Publish what a step's outcome means (called inside the transaction that records it)."""
        ...


@dataclass
class _Run:
    workflow_id: str
    data: dict[str, Any]
    instance: FSMInstance
    outcomes: dict[str, StepOutcome] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    marked: set[str] = field(default_factory=set)  # steps whose row says running


class WorkflowEngine:
    """One workflow subcontract, run on behalf of ``hooks`` with its FSM on ``fsm`` and its rows in ``store``.

    ``max_in_flight`` workflows run at once (default: the subcontract's); callers beyond it wait in a queue.
    A caller that passes ``wait=False`` is refused with :class:`WorkflowBusy` when ``max_queued`` are already
    waiting (default: as many as may run)."""

    def __init__(
        self,
        spec: WorkflowSpec,
        fsm: FSMEngine,
        store: WorkflowStore,
        hooks: WorkflowHooks,
        *,
        max_in_flight: int | None = None,
        max_queued: int | None = None,
        owner: str = "local",
        lease_s: float = 30.0,
    ) -> None:
        self.spec = spec
        self.fsm = fsm
        self.store = store
        self.hooks = hooks
        self.max_in_flight = max_in_flight or spec.max_in_flight
        self.max_queued = self.max_in_flight if max_queued is None else max_queued
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._waiting = 0
        self._running = 0
        self._runner = StepRunner(spec.steps, hooks.invoke_step)
        self._order = {s.name: i for i, s in enumerate(spec.steps)}
        self._stages = stages(spec)
        self._stage_of = {s.name: i for i, members in enumerate(self._stages) for s in members}
        self.owner = owner
        self.lease_s = lease_s
        #: Workflows running (or queued) in this engine: never resumed a second time beside themselves.
        self._active: set[str] = set()
        self.workflow_class = build_workflow_class(spec, self._run_step)
        self._workflow = self.workflow_class(timeout=spec.timeout_ms / 1000)

    # --- admission ------------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return self._waiting

    async def _admit(self, wait: bool) -> None:
        if self._slots.locked():
            if not wait and self._waiting >= self.max_queued:
                raise WorkflowBusy(
                    f"workflow '{self.spec.workflow_name}': {self._running} running (limit {self.max_in_flight}) "
                    f"and {self._waiting} queued (limit {self.max_queued}); retry later"
                )
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._running += 1

    def _release(self) -> None:
        self._running -= 1
        self._slots.release()

    # --- running --------------------------------------------------------------------------------------------------

    async def run(
        self,
        data: dict[str, Any],
        *,
        workflow_id: str | None = None,
        wait: bool = True,
        accepted: asyncio.Future[bool] | None = None,
    ) -> WorkflowResult | None:
        """Run a new workflow on ``data`` to its end. Returns ``None`` when ``workflow_id`` was already recorded
        (a redelivered request: that workflow finished, or is resumed after a restart). ``accepted`` is resolved
        once the workflow is durably recorded (``True``) or found to exist (``False``)."""
        wid = workflow_id or str(uuid.uuid4())
        if wid in self._active:  # the same request again while it runs here
            if accepted is not None and not accepted.done():
                accepted.set_result(False)
            return None
        try:
            await self._admit(wait)
        except BaseException as exc:
            if accepted is not None and not accepted.done():
                accepted.set_exception(exc)
            raise
        self._active.add(wid)
        try:
            try:
                run = await self._create(wid, data)
            except BaseException as exc:
                if accepted is not None and not accepted.done():
                    accepted.set_exception(exc)
                raise
            if accepted is not None and not accepted.done():
                accepted.set_result(run is not None)
            if run is None:
                return None
            return await self._execute(run)
        finally:
            self._active.discard(wid)
            self._release()

    def _initial_context(self, wid: str) -> dict[str, Any]:
        """What the workflow FSM's guards and actions see before the first step."""
        return {
            "workflow_id": wid,
            "workflow_name": self.spec.workflow_name,
            "total_steps": len(self.spec.steps),
            "completed_steps": 0,
            "skipped_steps": 0,
            "error": None,
        }

    async def _create(self, wid: str, data: dict[str, Any]) -> _Run | None:
        context = self._initial_context(wid)
        instance = FSMInstance(self.fsm, wid, self.fsm.definition.initial_state, context, 0)
        run = _Run(wid, data, instance)
        starting = self._starting(run, 0)
        async with self.store.transaction():
            created = await self.store.create(
                wid, self.spec.workflow_name, data, owner=self.owner, lease_s=self.lease_s, running=starting
            )
            if not created:
                return None
            await self._move(instance, "start", {})
        run.marked.update(starting)
        return run

    async def _move(
        self,
        instance: FSMInstance,
        trigger: str,
        update: dict[str, Any],
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        fired = await self.hooks.fire(instance, trigger, update)
        await self.store.set_state(
            instance.instance_id,
            fired.state,
            finished=instance.terminal,
            error=error,
            result=result,
        )

    def _starting(self, run: _Run, index: int) -> list[str]:
        """The steps of stage ``index`` that will be called: no outcome yet, and their guard holds (a guard reads
        only the input and the results of earlier stages, all known once the stage before has finished)."""
        if index >= len(self._stages):
            return []
        return [
            s.name
            for s in self._stages[index]
            if s.name not in run.outcomes and self._runner.check(s, run.workflow_id, run.data, run.results) is None
        ]

    def _unlocked(self, run: _Run, step: Step) -> list[str]:
        """The steps that may start now that ``step`` has its outcome: the next stage's, once every member of this
        one has an outcome that lets the workflow go on."""
        index = self._stage_of[step.name]
        members = self._stages[index]
        if not all(s.name in run.outcomes and run.outcomes[s.name].ok for s in members):
            return []
        return self._starting(run, index + 1)

    async def _run_step(self, run: _Run, step: Step) -> StepOutcome:
        previous = run.outcomes.get(step.name)
        if previous is not None:  # recorded before a restart: not run again
            return previous
        outcome = self._runner.check(step, run.workflow_id, run.data, run.results)
        if outcome is None:
            if step.name not in run.marked:
                async with self.store.transaction():
                    await self.store.mark_running(run.workflow_id, [step.name])
                run.marked.add(step.name)
            outcome = await self._runner.attempt(step, run.workflow_id, run.data, run.results)
        if outcome.status is StepStatus.COMPLETED:
            run.results[step.name] = outcome.result
        run.outcomes[step.name] = outcome
        run.marked.discard(step.name)
        unlocked = self._unlocked(run, step)
        async with self.store.transaction():
            await self.store.save_step(run.workflow_id, outcome, running=unlocked)
            await self.hooks.step_finished(run.workflow_id, outcome, run.results)
        run.marked.update(unlocked)
        return outcome

    async def _execute(self, run: _Run) -> WorkflowResult:
        failure: str | None = None
        failed_step: str | None = None
        try:
            stopped = await run_workflow(self._workflow, run.workflow_id, run)
        except WorkflowTimeoutError:
            failure = f"workflow '{self.spec.workflow_name}' timed out after {self.spec.timeout_ms} ms"
            return await self._finish(run, failure, None, interrupted=StepStatus.TIMED_OUT)
        except Exception as exc:
            failure = f"workflow '{self.spec.workflow_name}' raised {type(exc).__name__}: {exc}"
            log.exception("workflow raised", extra={"workflow_id": run.workflow_id})
        else:
            if isinstance(stopped, StepOutcome):
                failed_step = stopped.step
                failure = f"required step '{stopped.step}' {stopped.status}: {stopped.error}"
        return await self._finish(run, failure, failed_step)

    async def _finish(
        self,
        run: _Run,
        failure: str | None,
        failed_step: str | None,
        *,
        interrupted: StepStatus = StepStatus.FAILED,
    ) -> WorkflowResult:
        result = WorkflowResult(
            run.workflow_id,
            self.spec.workflow_name,
            "",
            dict(sorted(run.outcomes.items(), key=lambda kv: self._order.get(kv[0], 0))),
            run.results,
            resumed=run.resumed,
        )
        counts = {"completed_steps": result.completed_steps, "skipped_steps": result.skipped_steps}
        summary = {"steps": [o.as_dict() for o in result.outcomes.values()]}
        in_flight = [name for name in sorted(run.marked) if name not in run.outcomes] if failure else []
        async with self.store.transaction():
            for name in in_flight:  # still running when the workflow failed: their rows must not say running
                step = self.spec.steps[self._order[name]]
                await self.store.save_step(
                    run.workflow_id, StepOutcome(name, interrupted, step.required, error=f"interrupted: {failure}")
                )
            if failure is None:
                try:
                    await self._move(run.instance, "succeed", counts, result=summary)
                except TransitionError as exc:  # the FSM's guard refused: report it rather than hide it
                    failure = f"the workflow FSM refused 'succeed': {exc}"
            if failure is not None:
                await self._move(
                    run.instance,
                    "fail",
                    {**counts, "error": failure, "failed_step": failed_step},
                    error=failure,
                    result=summary,
                )
        result.state = run.instance.state
        result.error, result.failed_step = failure, failed_step
        return result

    # --- after a restart ------------------------------------------------------------------------------------------

    async def resume(self, workflow_id: str) -> WorkflowResult | None:
        """Run an unfinished workflow on from its recorded steps; a workflow that cannot be resumed is failed
        explicitly. ``None`` when there is nothing to do (unknown or finished)."""
        if workflow_id in self._active:
            return None
        self._active.add(workflow_id)
        try:
            await self._admit(True)
        except BaseException:
            self._active.discard(workflow_id)
            raise
        try:
            execution = await self.store.load(workflow_id)
            if execution is None or execution.finished:
                return None
            try:
                run = await self._restore(workflow_id, execution.input)
            except Exception as exc:
                log.exception("workflow cannot be resumed: failing it", extra={"workflow_id": workflow_id})
                await self._fail_unresumable(workflow_id, f"could not be resumed after a restart: {exc}")
                return None
            if run.instance.terminal:  # the transition committed but the row did not say so
                await self.store.set_state(workflow_id, run.instance.state, finished=True, error=None, result=None)
                return None
            log.info(
                "resuming workflow",
                extra={
                    "workflow_id": workflow_id,
                    "steps_done": sorted(run.outcomes),
                    "steps_in_flight": await self.store.running(workflow_id),
                },
            )
            return await self._execute(run)
        finally:
            self._active.discard(workflow_id)
            self._release()

    async def _restore(self, wid: str, data: dict[str, Any]) -> _Run:
        instance = await self.fsm.restore(wid)
        if instance is None:
            context = self._initial_context(wid)
            instance = FSMInstance(self.fsm, wid, self.fsm.definition.initial_state, context, 0)
            async with self.store.transaction():
                await self._move(instance, "start", {})
        outcomes = await self.store.steps(wid)
        results = {name: o.result for name, o in outcomes.items() if o.status is StepStatus.COMPLETED}
        return _Run(wid, data, instance, outcomes, results, resumed=True)

    async def _fail_unresumable(self, wid: str, error: str) -> None:
        try:
            instance = await self.fsm.restore(wid)
            async with self.store.transaction():
                if instance is not None and not instance.terminal:
                    await self._move(instance, "fail", {"error": error, "failed_step": None}, error=error)
                else:
                    await self.store.set_state(wid, "failed", finished=True, error=error, result=None)
        except Exception:
            log.exception("could not record the failure of an unresumable workflow", extra={"workflow_id": wid})
            async with self.store.transaction():
                await self.store.set_state(wid, "failed", finished=True, error=error, result=None)

    async def claim(self) -> list[str]:
        """Take over the unfinished workflows of this subcontract that no live orchestrator owns (and this one's
        own), except those running here; returns their ids."""
        claimed = await self.store.claim(self.spec.workflow_name, self.owner, self.lease_s)
        return [wid for wid in claimed if wid not in self._active]

    async def recover(self) -> int:
        """Resume (or fail) every unfinished workflow of this subcontract this engine can claim; returns how many."""
        ids = await self.claim()
        if ids:
            log.warning("resuming unfinished workflows", extra={"count": len(ids), "owner": self.owner})
        results = await asyncio.gather(*(self.resume(wid) for wid in ids), return_exceptions=True)
        for wid, outcome in zip(ids, results, strict=True):
            if isinstance(outcome, BaseException):
                log.error("resuming workflow failed", exc_info=outcome, extra={"workflow_id": wid})
        return len(ids)

    async def keep_leases(self, spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        """Forever, every third of a lease: renew the leases this engine holds, and take over (resuming each with
        ``spawn``) the workflows whose owner stopped renewing. Cancel it to stop."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.store.renew(self.owner, self.lease_s)
                for wid in await self.claim():
                    log.warning("taking over a workflow whose lease expired", extra={"workflow_id": wid})
                    spawn(self.resume(wid))
            except Exception:
                log.exception("renewing workflow leases failed; retrying", extra={"owner": self.owner})
