"""What every node kind shares: identity from the contract, checked publishing, checked handling, effects."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from framework.adapters.outbox_relay import publish_or_enqueue
from framework.contract.spec import Contract, NodeType, Subscription
from framework.errors import NodeRuleError
from framework.events.envelope import EnvelopeTemplate, OnexEnvelopeV1
from framework.ports.event_bus import EventBus, Message
from framework.ports.fsm_store import FSMStore, TransitionRecord
from framework.ports.store import Store, Transaction
from framework.runtime.effects import Effects
from framework.runtime.fsm import FireResult, FSMDefinition, FSMEngine, FSMInstance
from framework.runtime.routing import Routes

if TYPE_CHECKING:
    from framework.runtime.metrics import Metrics

#: The event being handled, so that what a handler publishes is chained to it (correlation and causation ids).
current_event: contextvars.ContextVar[OnexEnvelopeV1 | None] = contextvars.ContextVar("current_event", default=None)

EffectBinder = Callable[["Node"], Effects]


@dataclass
class NodeRuntime:
    """What the host gives a node: the bus, where its events live, its metrics and its adapters."""

    bus: EventBus
    env: str
    instance: str
    metrics: Metrics
    bind_effects: EffectBinder
    fsm_store: FSMStore
    resources: dict[str, Any] = field(default_factory=dict)
    #: How long a node's stop waits for its own work in flight (an orchestrator's workflows), as the host's drain.
    drain_timeout_s: float = 30.0
    #: How long an orchestrator's claim on a workflow lasts without renewal (``ONEX_WORKFLOW_LEASE_S``).
    workflow_lease_s: float = 30.0
    #: Told of each event a node published directly (not through the outbox) once the broker acknowledged it:
    #: ``(topic, envelope, started, acknowledged)`` in ``time.time()`` values. The host's event log, when it has one.
    on_published: Callable[[str, OnexEnvelopeV1, float, float], None] | None = None


def uses_database(contract: Contract) -> bool:
    """A node whose work lives in PostgreSQL: postgres effects, postgres state, or an FSM to persist."""
    sub = contract.subcontracts
    return (
        any(e.adapter == "postgres" for e in contract.effects)
        or (sub.state is not None and sub.state.backend == "postgres")
        or sub.fsm is not None
    )


class Node:
    """Base of every node. Subclass the base of your contract's kind and name it in ``implementation``; each
    subscription's ``handler`` is an ``async def handler(self, event: OnexEnvelopeV1) -> None`` method."""

    node_type: ClassVar[NodeType]

    def __init__(self, contract: Contract, runtime: NodeRuntime) -> None:
        if contract.node_type != self.node_type:
            raise NodeRuleError(
                f"{type(self).__name__} is a {self.node_type} node; contract '{contract.name}' is {contract.node_type}"
            )
        self.contract = contract
        self.runtime = runtime
        self.name = contract.name
        self.node_id = f"{contract.name}@{runtime.instance}"
        self.routes = Routes(contract, runtime.env)
        self.log = logging.getLogger(f"onex.node.{contract.name}")
        self._publishes = frozenset(contract.publishes)
        self._version = str(contract.version)
        self._templates: dict[str, EnvelopeTemplate] = {}
        # What a refused payload's error names, built once per event rather than on every publish.
        self._published_what = {event: f"payload of '{event}' published by {self.name}" for event in self._publishes}
        self._effects = runtime.bind_effects(self)
        self._uses_database = uses_database(contract)
        self._handlers = {s.event: self._resolve_handler(s) for s in contract.subscriptions}
        fsm = contract.subcontracts.fsm
        self.fsm: FSMEngine | None = None
        if fsm is not None:
            self.fsm = FSMEngine(
                FSMDefinition(fsm), runtime.fsm_store, implementation=self, on_transition=self._count_transition
            )

    def _count_transition(self, record: TransitionRecord) -> None:
        self.runtime.metrics.transitions.inc(
            machine=record.machine, from_state=record.from_state, to_state=record.to_state
        )

    def _resolve_handler(self, sub: Subscription) -> Callable[[OnexEnvelopeV1], Awaitable[None]]:
        handler = getattr(self, sub.handler, None)
        if not callable(handler):
            raise NodeRuleError(
                f"node '{self.name}' subscribes to '{sub.event}' with handler '{sub.handler}', but "
                f"{type(self).__name__} has no such method"
            )
        return handler  # type: ignore[no-any-return]

    # --- life ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Called once the bus is up, before consuming starts. Override to open resources of your own."""

    async def stop(self) -> None:
        """Called after consuming stopped and in-flight handlers finished."""

    # --- what a handler may do -------------------------------------------------------------------------------------

    @property
    def effects(self) -> Effects:
        return self._effects

    async def publish(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        cause: OnexEnvelopeV1 | None = None,
        partition_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> OnexEnvelopeV1:
        """Publish a declared event. The payload is checked against its model; the envelope is chained to ``cause``
        (by default, the event being handled) and keyed by the catalog's partition_key field when it has one."""
        if event not in self._publishes:
            declared = ", ".join(sorted(self._publishes)) or "none"
            raise NodeRuleError(f"node '{self.name}' may not publish '{event}': its contract publishes {declared}")
        route = self.routes[event]
        route.validator.check(payload, what=self._published_what[event])
        if partition_key is None and route.spec.partition_key is not None:
            value = payload.get(route.spec.partition_key)
            partition_key = str(value) if value is not None else None
        template = self._templates.get(event)
        if template is None:
            template = self._templates[event] = EnvelopeTemplate(
                event_type=event,
                event_version=route.spec.version,
                source_node_id=self.node_id,
                source_service=self.name,
                source_version=self._version,
                environment=self.runtime.env,  # the publisher's environment, also when chained to another's event
            )
        parent = cause if cause is not None else current_event.get()
        if parent is not None:
            envelope = template.child_of(parent, payload, partition_key=partition_key, metadata=metadata)
        else:
            envelope = template.new(payload, partition_key=partition_key, metadata=metadata)
        # Inside a handler's database transaction the event becomes an outbox row of it: it is published (by the
        # relay) only if the transaction commits. Elsewhere it goes to the bus at once.
        traced = self.runtime.on_published
        if traced is None:
            await publish_or_enqueue(self.runtime.bus, route.topic, envelope)
        else:
            started = time.time()
            if await publish_or_enqueue(self.runtime.bus, route.topic, envelope):
                traced(route.topic, envelope, started, time.time())
        self.runtime.metrics.published.inc(topic=route.topic)
        return envelope

    @property
    def store(self) -> Store:
        """The host's database; a node whose contract declares no postgres effect, state or FSM has none, also on a
        host that has one for the nodes beside it."""
        store: Store | None = self.runtime.resources.get("store") if self._uses_database else None
        if store is None:
            raise NodeRuleError(
                f"node '{self.name}' has no database: its contract declares no postgres effect, postgres state or FSM"
            )
        return store

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A database transaction for work that does not arrive as an event (an HTTP request, say): effects,
        FSM transitions and published events inside it commit together. Event handlers of nodes whose work lives in
        PostgreSQL already run inside one."""
        return self.store.transaction()

    async def fire(self, instance: FSMInstance, trigger: str, context: dict[str, Any] | None = None) -> FireResult:
        """Fire a trigger on an instance of this node's FSM and publish what its actions emitted."""
        result = await instance.fire(trigger, context)
        for emitted in result.emitted:
            await self.publish(emitted.event, emitted.payload)
        return result

    # --- called by the host -------------------------------------------------------------------------------------

    async def receive(self, message: Message) -> None:
        """Check the payload against the subscribed event's model, then run the handler with the event current."""
        event = message.envelope.event_type
        handler = self._handlers.get(event)
        if handler is None:
            raise NodeRuleError(
                f"node '{self.name}' received '{event}' on {message.topic}, which it does not subscribe to"
            )
        self.routes[event].validator.check(message.envelope.payload, what=f"payload of '{event}'")
        token = current_event.set(message.envelope)
        started = time.perf_counter()
        try:
            await self.dispatch(handler, message.envelope)
        finally:
            current_event.reset(token)
            self.runtime.metrics.handler_seconds.observe(time.perf_counter() - started, node=self.name, event=event)

    async def dispatch(self, handler: Callable[[OnexEnvelopeV1], Awaitable[None]], event: OnexEnvelopeV1) -> None:
        """How a kind runs a handler; kinds with rules of their own override this."""
        await handler(event)

    def introspection(self) -> dict[str, Any]:
        """What the node registry learns about this node."""
        return {
            "node_id": self.node_id,
            "node_type": str(self.node_type),
            "node_version": str(self.contract.version),
            "capabilities": {
                "subscribes": [s.event for s in self.contract.subscriptions],
                "publishes": list(self.contract.publishes),
                "effects": [e.name for e in self.contract.effects],
            },
            "metadata": {"description": self.contract.description},
        }
