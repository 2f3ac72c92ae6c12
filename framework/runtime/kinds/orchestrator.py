"""ORCHESTRATOR: runs workflows built from its workflow subcontract (LlamaIndex Workflows) and owns a workflow FSM.

A step's target is reached by :meth:`OrchestratorNode.invoke_step`:

- ``{handler: METHOD}``: ``await self.METHOD(call)`` on the orchestrator's own implementation;
- ``{node: NAME, handler: METHOD}``: ``await node.METHOD(request)`` on the node NAME hosted in the same process;
- ``{command: EVENT, reply: EVENT}``: publish the command and await the reply event caused by it (the contract
  subscribes to the reply with the handler ``on_step_reply``);
- ``{http: URL, method: M}``: call the service with the request as JSON, on the host's HTTP client.

``request`` is what :meth:`step_request` makes of the call (by default, the workflow's input). Workflows run in a
context of their own — not inside the transaction of the event that asked for them — so that each FSM transition and
step outcome commits on its own, as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar

from framework.adapters.http_effect import HttpEffect
from framework.adapters.memory_workflow_store import MemoryWorkflowStore
from framework.adapters.postgres_workflow_store import PostgresWorkflowStore
from framework.contract.spec import Contract, NodeType
from framework.contract.subcontracts import CommandTarget, HttpTarget, LocalTarget, NodeTarget
from framework.errors import NodeRuleError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.workflow_store import WorkflowStore
from framework.runtime.fsm import FireResult, FSMInstance
from framework.runtime.kinds.base import Node, NodeRuntime, current_event
from framework.runtime.payloads import PayloadValidator
from framework.workflows import (
    StepCall,
    StepOutcome,
    WorkflowEngine,
    WorkflowResult,
)

STATE_TRANSITION = "workflow-state-transition"
STEP_COMPLETED = "workflow-step-completed"
#: Workflow ids of command-started workflows derive from the command's event id, so a redelivery finds its workflow.
WORKFLOW_NAMESPACE = uuid.UUID("6f1c1f5e-4a8e-4d0c-9a53-6b2f0e7f6a11")

log = logging.getLogger("onex.orchestrator")


class OrchestratorNode(Node):
    node_type: ClassVar[NodeType] = NodeType.ORCHESTRATOR
    #: How long stop() lets running workflows finish before cancelling them (they are resumed on the next start).

    def __init__(self, contract: Contract, runtime: NodeRuntime) -> None:
        super().__init__(contract, runtime)
        spec = contract.subcontracts.workflow
        if spec is None or self.fsm is None:
            raise NodeRuleError(
                f"ORCHESTRATOR '{contract.name}' needs a workflow subcontract and a workflow fsm subcontract"
            )
        self.workflow_spec = spec
        store = runtime.resources.get("store")
        self.workflow_store: WorkflowStore = (
            PostgresWorkflowStore(store, {s.name: s.required for s in spec.steps})
            if store is not None
            else MemoryWorkflowStore()
        )
        self.engine = WorkflowEngine(
            spec,
            self.fsm,
            self.workflow_store,
            self,
            owner=self.node_id,
            lease_s=runtime.workflow_lease_s,
        )
        models = contract.models
        self._input = (
            PayloadValidator(contract.input_model, models[contract.input_model], models)
            if contract.input_model
            else None
        )
        properties = models[contract.input_model].get("properties", {}) if contract.input_model else {}
        self._defaults = {k: v["default"] for k, v in properties.items() if isinstance(v, dict) and "default" in v}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replies: dict[uuid.UUID, asyncio.Future[OnexEnvelopeV1]] = {}
        self.recovery: asyncio.Task[int] | None = None
        self._leases: asyncio.Task[None] | None = None

    # --- life -----------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume (or fail), in the background, the unfinished workflows no live orchestrator owns; then keep this
        one's leases, and take over the workflows of orchestrators that stop renewing theirs."""
        self.recovery = self._spawn(self.engine.recover(), cause=None)
        self._leases = asyncio.create_task(
            self.engine.keep_leases(lambda coro: self._spawn(coro, cause=None)), context=contextvars.Context()
        )

    async def stop(self) -> None:
        """Let running workflows finish for ``drain_timeout_s``; cancel the rest (they stay unfinished in the
        database and are resumed by the next start)."""
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.runtime.drain_timeout_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        if self._leases is not None:  # after draining: the leases of the workflows that finished meanwhile held
            self._leases.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leases

    def _spawn(self, coro: Coroutine[Any, Any, Any], cause: OnexEnvelopeV1 | None) -> asyncio.Task[Any]:
        # A fresh context: no transaction of the caller (a consumed event's) is joined, and the workflow's events
        # are chained to ``cause``.
        context = contextvars.Context()
        context.run(current_event.set, cause)
        task = asyncio.create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        """Forget the task, and say when it failed: nobody else awaits a workflow run after it was accepted."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("workflow task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    # --- starting workflows ---------------------------------------------------------------------------------------

    def check_input(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check a request against ``input_model`` (raises PayloadInvalid); returns it with the model's top-level
        defaults filled in, so that step guards can name optional fields."""
        if self._input is not None:
            self._input.check(data, what=f"input of workflow '{self.workflow_spec.workflow_name}'")
        return {**self._defaults, **data}

    async def run_workflow(
        self,
        data: dict[str, Any],
        *,
        workflow_id: str | None = None,
        wait: bool = True,
        cause: OnexEnvelopeV1 | None = None,
    ) -> WorkflowResult | None:
        """Run a workflow to its end and return its result. ``wait=False``: raise WorkflowBusy rather than queue
        when the limit of workflows in flight and the queue are full."""
        data = self.check_input(data)
        return await self._spawn(self.engine.run(data, workflow_id=workflow_id, wait=wait), cause)  # type: ignore[no-any-return]

    async def accept_workflow(self, event: OnexEnvelopeV1, data: dict[str, Any] | None = None) -> str:
        """For command handlers: record the workflow the command asks for, run it in the background, and return
        once it is durably recorded (waiting for a free slot: backpressure on the topic). Its id derives from the
        command's event id, so a redelivered command does not start it twice."""
        payload = self.check_input(event.payload if data is None else data)
        workflow_id = str(uuid.uuid5(WORKFLOW_NAMESPACE, str(event.event_id)))
        accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._spawn(self.engine.run(payload, workflow_id=workflow_id, accepted=accepted), cause=event)
        await accepted
        return workflow_id

    # --- reaching step targets ------------------------------------------------------------------------------------

    def step_request(self, call: StepCall) -> Any:
        """What a node, command or HTTP target is sent; by default the workflow's input."""
        return dict(call.input)

    async def invoke_step(self, call: StepCall) -> Any:
        target = call.step.target
        if isinstance(target, LocalTarget):
            return await self._method(self, target.handler, call.step.name)(call)
        request = self.step_request(call)
        if isinstance(target, NodeTarget):
            nodes: Mapping[str, Node] = self.runtime.resources.get("nodes", {})
            node = nodes.get(target.node)
            if node is None:
                hosted = ", ".join(sorted(nodes)) or "none"
                raise NodeRuleError(
                    f"step '{call.step.name}' calls node '{target.node}', which this host does not run "
                    f"(hosted: {hosted})"
                )
            return await self._method(node, target.handler, call.step.name)(request)
        if isinstance(target, CommandTarget):
            return await self._command(target, request)
        if isinstance(target, HttpTarget):
            return await self._http(target, request, call.step.timeout_ms)
        raise NodeRuleError(f"step '{call.step.name}': unknown target {target!r}")  # pragma: no cover

    @staticmethod
    def _method(owner: object, name: str, step: str) -> Any:
        method = getattr(owner, name, None)
        if not callable(method):
            raise NodeRuleError(f"step '{step}' calls '{name}', but {type(owner).__name__} has no such method")
        return method

    async def _command(self, target: CommandTarget, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        envelope = await self.publish(target.command, request)
        future: asyncio.Future[OnexEnvelopeV1] = loop.create_future()
        self._replies[envelope.event_id] = future
        try:
            reply = await future
        finally:
            self._replies.pop(envelope.event_id, None)
        return reply.payload

    async def on_step_reply(self, event: OnexEnvelopeV1) -> None:
        """Subscription handler for the reply events of command steps: wakes the step whose command caused it."""
        future = self._replies.get(event.causation_id) if event.causation_id is not None else None
        if future is not None and not future.done():
            future.set_result(event)

    async def _http(self, target: HttpTarget, request: Any, timeout_ms: int) -> Any:
        session = self.runtime.resources.get("http_session")
        if session is None:
            raise NodeRuleError(f"node '{self.name}': HTTP steps need the host's HTTP client")
        # The step's own timeout (per attempt) bounds the call, so it ends as timed_out; the client's is a backstop.
        return await HttpEffect(session, target.http, target.method, timeout_ms + 1000)(request)

    # --- what the engine calls back -------------------------------------------------------------------------------

    async def fire(self, instance: FSMInstance, trigger: str, context: dict[str, Any] | None = None) -> FireResult:
        result = await super().fire(instance, trigger, context)
        if STATE_TRANSITION in self._publishes:
            await self.publish(
                STATE_TRANSITION,
                {
                    "workflow_id": instance.instance_id,
                    "from_state": result.previous,
                    "to_state": result.state,
                    "trigger": trigger,
                },
            )
        return result

    async def step_finished(self, workflow_id: str, outcome: StepOutcome, results: Mapping[str, Any]) -> None:
        if STEP_COMPLETED in self._publishes:
            payload: dict[str, Any] = {
                "workflow_id": workflow_id,
                "step": outcome.step,
                "status": str(outcome.status),
                "duration_ms": round(outcome.duration_ms, 3),
            }
            if outcome.attempts:
                payload["attempts"] = outcome.attempts
            await self.publish(STEP_COMPLETED, payload)
        await self.on_step_outcome(workflow_id, outcome, results)

    async def on_step_outcome(self, workflow_id: str, outcome: StepOutcome, results: Mapping[str, Any]) -> None:
        """Override to publish events of your own about a step's outcome (in the transaction that records it)."""
