"""The host: the composition root. It builds nodes from contracts, owns every resource in one AsyncExitStack, and
runs start → ready → drain (finish in-flight handlers, commit) → stop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID

import aiohttp
from aiohttp import web

from framework.adapters.circuit_breaker import CircuitState
from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.adapters.outbox_relay import OutboxRelay
from framework.adapters.postgres_effects import PostgresEffects
from framework.adapters.postgres_fsm_store import PostgresFSMStore
from framework.adapters.postgres_store import PostgresStore
from framework.adapters.services import open_services, redact_dsn
from framework.contract.spec import Contract
from framework.errors import PoisonMessage
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DEAD_LETTERED,
    INTERRUPTED,
    DeliveryPolicy,
    DuplicateObserver,
    EventBus,
    FailureObserver,
    Handler,
    Message,
    Subscription,
)
from framework.ports.fsm_store import FSMStore
from framework.ports.resource import Resource
from framework.runtime.catalog import bind_effects, node_class
from framework.runtime.config import RETENTION_ONLY_MAINTENANCE_S, Settings
from framework.runtime.http import respond, unified_errors
from framework.runtime.kinds.base import Node, NodeRuntime, uses_database
from framework.runtime.logs import log_context
from framework.runtime.metrics import Counter, CounterReading, Gauge, Metrics
from framework.runtime.tracing import (
    CANCELLED,
    DUPLICATE,
    HANDLED,
    RETRYING,
    EventTracer,
    error_text,
)

log = logging.getLogger("onex.host")

INTROSPECTION = "node-introspection"
HEARTBEAT = "node-heartbeat"
INTROSPECTION_REQUESTED = "registry-introspection-requested"
#: How long the host's consumer of requests for introspection may wait for one (a Kafka fetch held by the broker):
#: the bus default (20 ms) would poll 50 times a second for an event that comes rarely.
INTROSPECTION_FETCH_WAIT_MS = 500
#: A request for introspection older than the host's start by more than this was answered by the host's own
#: announcement on start; a fresh host's group reads its topic from the beginning and skips those.
_REQUEST_MARGIN = timedelta(seconds=60)
_hosts_made = itertools.count(1)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass
class Endpoints:
    """Where everything the host uses can be reached; printed on start and written to endpoints.json."""

    http: str = ""
    kafka_bootstrap: str | None = None
    postgres_dsn: str | None = None
    embedded: list[str] = field(default_factory=list)
    consumes: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "http": self.http,
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            "postgres_dsn": self.postgres_dsn,
            "embedded": self.embedded,
            "consumes": self.consumes,
        }


def delivery_policy(contract: Contract) -> DeliveryPolicy:
    retry = contract.subcontracts.retry
    if retry is None:
        return DeliveryPolicy()
    return DeliveryPolicy(
        max_attempts=retry.max_attempts,
        initial_backoff_s=retry.backoff.initial_ms / 1000,
        multiplier=retry.backoff.multiplier,
        max_backoff_s=retry.backoff.max_ms / 1000,
        jitter=retry.backoff.jitter,
        dead_letter=retry.dead_letter,
    )


#: The status of a handler attempt that failed for good, until the delivery says what became of its message.
_FAILED_FOR_GOOD: Final = "failed for good"


class _LastAttempt(NamedTuple):
    """A handler attempt that failed for good, waiting for the delivery to say what became of its message."""

    envelope: OnexEnvelopeV1
    started: float
    finished: float
    error: str | None


class _Consumer(NamedTuple):
    """One consumer the host subscribes: its topics, handler and delivery settings."""

    topics: list[str]
    handler: Handler
    policy: DeliveryPolicy
    fetch_max_wait_ms: int | None = None
    on_duplicate: DuplicateObserver | None = None
    on_failed: FailureObserver | None = None


class Host(Resource):
    """Hosts the nodes of ``contracts`` in this process."""

    resource_name = "host"

    def __init__(self, contracts: list[Contract], settings: Settings) -> None:
        super().__init__()
        if not contracts:
            raise ValueError("a host needs at least one contract")
        self.contracts = contracts
        self.settings = settings
        self.metrics = Metrics()
        self.nodes: list[Node] = []
        self.endpoints = Endpoints()
        self.ready = False
        self.bus: EventBus | None = None
        self.store: PostgresStore | None = None
        self.relay: OutboxRelay | None = None
        #: The event log (event_logs), when the host has a database and ONEX_EVENT_LOG is on.
        self.tracer: EventTracer | None = None
        # Failed last attempts by (group, topic, event id), until their delivery reports what became of them.
        self._failing: dict[tuple[str, str, UUID], _LastAttempt] = {}
        self._stack = contextlib.AsyncExitStack()
        self._subscriptions: list[Subscription] = []
        self._in_flight = 0
        self._started_at = time.monotonic()
        self._started_wall = datetime.now(UTC)
        # Names this host's nodes (``name@instance``): ONEX_INSTANCE_ID, stable across restarts, or hostname-pid (a
        # second host in one process gets a suffix of its own).
        number = next(_hosts_made)
        self.instance = settings.instance_id or (
            f"{socket.gethostname()}-{os.getpid()}" + (f"-{number}" if number > 1 else "")
        )
        self._gauges = {
            "pool_in_use": Gauge("onex_db_pool_connections_in_use", "PostgreSQL connections in use."),
            "pool_size": Gauge("onex_db_pool_connections", "PostgreSQL connections open."),
            "pool_max": Gauge("onex_db_pool_connections_max", "Most PostgreSQL connections the pool opens."),
            "circuit_open": Gauge("onex_db_circuit_open", "1 while the database circuit breaker is not closed."),
            "circuit_state": Gauge(
                "onex_db_circuit_state",
                "Database circuit breaker state: 1 for the current one of closed, open, half_open.",
                ("state",),
            ),
            "outbox_pending": Gauge("onex_outbox_pending", "Outbox rows not yet published (last measured)."),
            "outbox_sent": Gauge("onex_outbox_sent", "Outbox rows published since start."),
        }
        #: Circuit breaker counters, by the key of the breaker's stats they are read from.
        self._circuit_counters = {
            "opened_total": CounterReading(
                "onex_db_circuit_opened_total", "Times the database circuit breaker opened."
            ),
            "rejected_total": CounterReading(
                "onex_db_circuit_rejected_total",
                "Database calls failed fast by the circuit breaker (open, or half-open with a probe in flight).",
            ),
            "probes_total": CounterReading(
                "onex_db_circuit_probes_total", "Half-open probes the database circuit breaker let through."
            ),
        }
        #: The two jobs of the periodic database maintenance (_maintain_database).
        self._partition_runs = Counter(
            "onex_db_partition_maintenance_total",
            "Runs of the database maintenance's hash_metrics partition creation (it never drops partitions).",
            ("result",),
        )
        self._retention_runs = Counter(
            "onex_db_event_log_retention_total", "Runs of the database maintenance's event log retention.", ("result",)
        )
        self._event_log_pruned = Counter(
            "onex_db_event_logs_pruned_total",
            "event_logs rows deleted by the event log retention (ONEX_EVENT_LOG_RETENTION_S).",
        )
        self._event_log_metrics: dict[str, CounterReading | Gauge] = {
            "written": CounterReading("onex_event_log_written_total", "Rows written to event_logs."),
            "dropped": CounterReading(
                "onex_event_log_dropped_total",
                "Event log rows lost: the queue was full, the database refused them, or a stop could not write them.",
            ),
            "pending": Gauge("onex_event_log_pending", "Event log rows queued, not yet written."),
        }
        for metric in (
            *self._gauges.values(),
            *self._circuit_counters.values(),
            self._partition_runs,
            self._retention_runs,
            self._event_log_pruned,
            *self._event_log_metrics.values(),
        ):
            self.metrics.register(metric)
        self.metrics.on_render(self._read_gauges)

    # --- life -----------------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        stack = self._stack
        need_postgres = any(uses_database(c) for c in self.contracts)
        services = await open_services(
            stack,
            data_dir=s.data_dir,
            env=self._service_env(),
            need_kafka=s.bus == "kafka",
            need_postgres=need_postgres,
        )
        if services.kafka_embedded:
            self.endpoints.embedded.append("kafka")
        if services.postgres_embedded:
            self.endpoints.embedded.append("postgres")
        if need_postgres:
            self.endpoints.postgres_dsn = redact_dsn(services.postgres_dsn)
        resources: dict[str, Any] = {}
        fsm_store: FSMStore = MemoryFSMStore()
        if need_postgres:
            self.store = PostgresStore(services.postgres_dsn, min_size=s.db_pool_min, max_size=s.db_pool_max)
            await self.store.start()
            stack.push_async_callback(self.store.stop)
            applied = await self.store.migrate()
            if applied:
                log.info("migrated", extra={"applied": [f"{m.version:03d}_{m.name}" for m in applied]})
            fsm_store = PostgresFSMStore(self.store)
            resources["postgres_effects"] = PostgresEffects(self.store)
            resources["store"] = self.store
        self.bus = await self._open_bus(services.kafka_bootstrap if s.bus == "kafka" else None)
        if self.store is not None:
            if s.event_log:
                # Stopped after the relay and the nodes (whose traces it writes), before the store.
                self.tracer = EventTracer(self.store)
                self.tracer.start()
                stack.push_async_callback(self.tracer.stop, s.drain_timeout_s)
            self.relay = OutboxRelay(
                self.store, self.bus, on_published=self.tracer.published if self.tracer is not None else None
            )
            await self.relay.start()
            stack.push_async_callback(self.relay.stop)
            if s.partition_maintenance_s > 0 or s.event_log_retention_s > 0:
                maintenance = asyncio.create_task(self._maintain_database(self.store), name="onex-db-maintenance")
                stack.push_async_callback(_cancel, maintenance)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        resources["http_session"] = session
        runtime = NodeRuntime(
            bus=self.bus,
            env=s.env,
            instance=self.instance,
            metrics=self.metrics,
            bind_effects=bind_effects,
            fsm_store=fsm_store,
            resources=resources,
            drain_timeout_s=s.drain_timeout_s,
            workflow_lease_s=s.workflow_lease_s,
            on_published=self.tracer.published if self.tracer is not None else None,
        )
        self.nodes = [node_class(c)(c, runtime) for c in self.contracts]
        if self.store is not None:
            # Every bound postgres effect against its table (columns, types, nullability, the upsert's key) now,
            # rather than at its first event: a contract that does not fit the database stops the start.
            await resources["postgres_effects"].verify()
        # Orchestrators reach the nodes hosted beside them by name (workflow steps with a node target).
        resources["nodes"] = {node.name: node for node in self.nodes}
        topics: set[str] = set()
        for node in self.nodes:
            topics |= node.routes.topics([s.event for s in node.contract.subscriptions] + node.contract.publishes)
        await self.bus.ensure_topics(sorted(topics))
        for node in self.nodes:
            await node.start()
            stack.push_async_callback(node.stop)
        await self._serve_http(stack)
        await self._subscribe_all()
        await self._announce(stack)
        self._write_endpoints()
        self.ready = True
        log.info("host ready", extra={"endpoints": self.endpoints.as_dict()})

    async def _stop(self) -> None:
        """Drain: stop consuming (each subscription finishes its handler in flight and commits), then close
        nodes, the HTTP server, the bus and the embedded services, in reverse order of opening."""
        self.ready = False
        subscriptions, self._subscriptions = self._subscriptions, []
        try:
            async with asyncio.timeout(self.settings.drain_timeout_s):
                await asyncio.gather(*(sub.stop() for sub in subscriptions))
        except TimeoutError:
            log.error(
                "drain timed out; handlers still running are abandoned and their events will be redelivered",
                extra={"in_flight": self._in_flight, "timeout_s": self.settings.drain_timeout_s},
            )
        self._trace_unreported_failures()
        await self._stack.aclose()

    async def _announce(self, stack: contextlib.AsyncExitStack) -> None:
        """Nodes that declare node-introspection announce themselves once started; nodes that declare
        node-heartbeat send one every ``heartbeat_interval_s`` until the host stops."""
        for node in self.nodes:
            if INTROSPECTION in node.contract.publishes:
                await node.publish(INTROSPECTION, node.introspection())
        beating = [n for n in self.nodes if HEARTBEAT in n.contract.publishes]
        if beating:
            task = asyncio.create_task(self._heartbeats(beating), name="onex-heartbeats")
            stack.push_async_callback(_cancel, task)

    def _answering_nodes(self) -> dict[str, list[Node]]:
        """The nodes that announce themselves, by the topic on which the registry asks them to announce again."""
        by_topic: dict[str, list[Node]] = {}
        for node in self.nodes:
            if INTROSPECTION in node.contract.publishes and INTROSPECTION_REQUESTED in node.routes:
                by_topic.setdefault(node.routes[INTROSPECTION_REQUESTED].topic, []).append(node)
        return by_topic

    def _introspection_answer(self, nodes: list[Node]) -> Handler:
        async def answer(message: Message) -> None:
            request = message.envelope
            if request.event_timestamp < self._started_wall - _REQUEST_MARGIN:
                return  # from before this host started: its announcement on start answered it
            wanted = request.payload.get("node_type")
            for node in nodes:
                if wanted in (None, str(node.node_type)):
                    await node.publish(INTROSPECTION, node.introspection())
            log.info("introspection requested: announced again", extra={"requested_node_type": wanted})

        return answer

    async def _heartbeats(self, nodes: list[Node]) -> None:
        while True:
            for node in nodes:
                try:
                    await node.publish(
                        HEARTBEAT,
                        {
                            "node_id": node.node_id,
                            "health_status": "healthy" if self.ready else "degraded",
                            "uptime_s": round(time.monotonic() - self._started_at, 3),
                        },
                    )
                except Exception:
                    log.warning("heartbeat not sent", exc_info=True, extra={"node": node.name})
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _maintain_database(self, store: PostgresStore) -> None:
        """The host's periodic database maintenance, once on start and then every period for as long as it runs:

        - partitions, unless ``ONEX_PARTITION_MAINTENANCE_S`` is 0: create this month's ``hash_metrics`` partition
          and the next 3. It never drops a partition nor deletes a row: how many months to keep is the operator's
          choice, made with ``onex db partitions --keep N``;
        - event log retention, unless ``ONEX_EVENT_LOG_RETENTION_S`` is 0: delete the ``event_logs`` rows that
          started longer ago than that, in chunks.

        The period is ``ONEX_PARTITION_MAINTENANCE_S``, or :data:`RETENTION_ONLY_MAINTENANCE_S` when that is 0 (the
        host starts this only when at least one of the two is on). A job that fails (database down, the function
        missing) is logged and counted; the other still runs, and the next period tries both again."""
        s = self.settings
        interval_s = s.partition_maintenance_s or RETENTION_ONLY_MAINTENANCE_S
        if s.event_log_retention_s > 0:
            self._event_log_pruned.inc(0)  # shown as 0 rather than absent until the first rows go
        while True:
            if s.partition_maintenance_s > 0:
                await self._create_partitions(store, interval_s)
            if s.event_log_retention_s > 0:
                await self._apply_event_log_retention(store, timedelta(seconds=s.event_log_retention_s), interval_s)
            await asyncio.sleep(interval_s)

    async def _create_partitions(self, store: PostgresStore, interval_s: float) -> None:
        async def work() -> tuple[str, dict[str, Any]]:
            changes = await store.maintain_partitions(keep_months=None)  # None: create only, never drop
            done = ", ".join(f"{c.action} {c.partition}" for c in changes) or "nothing to do"
            listed = [{"action": c.action, "partition": c.partition, "detail": c.detail} for c in changes]
            return f"hash_metrics partitions maintained: {done}", {"changes": listed}

        await self._maintenance_job("hash_metrics partition maintenance", self._partition_runs, interval_s, work)

    async def _apply_event_log_retention(self, store: PostgresStore, retention: timedelta, interval_s: float) -> None:
        deleted = 0

        def count(rows: int) -> None:
            nonlocal deleted
            deleted += rows
            self._event_log_pruned.inc(rows)

        async def work() -> tuple[str, dict[str, Any]]:
            await store.prune_event_logs(retention, on_chunk=count)
            seconds = retention.total_seconds()
            message = f"event log retention: deleted {deleted} event_logs rows started more than {seconds:g} s ago"
            return message, {"deleted": deleted, "retention_s": seconds}

        await self._maintenance_job("event log retention", self._retention_runs, interval_s, work)

    async def _maintenance_job(
        self,
        what: str,
        runs: Counter,
        interval_s: float,
        work: Callable[[], Awaitable[tuple[str, dict[str, Any]]]],
    ) -> None:
        """Run one job of the database maintenance: count it in ``runs`` by result, and log what it did, or why it
        failed (it is tried again next period)."""
        began = time.perf_counter()
        try:
            message, details = await work()
        except Exception as exc:
            runs.inc(result="failed")
            log.warning(
                "%s failed; trying again in %g s",
                what,
                interval_s,
                extra={"error": f"{type(exc).__name__}: {exc}", "next_run_s": interval_s},
            )
            return
        runs.inc(result="ok")
        duration_ms = round((time.perf_counter() - began) * 1000, 3)
        log.info(message, extra={**details, "duration_ms": duration_ms, "next_run_s": interval_s})

    def _service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, value in (
            ("POSTGRES_DSN", self.settings.postgres_dsn),
            ("KAFKA_BOOTSTRAP_SERVERS", self.settings.kafka_bootstrap_servers),
        ):
            if value:
                env[var] = value
            else:
                env.pop(var, None)
        return env

    async def _open_bus(self, bootstrap: str | None) -> EventBus:
        bus: EventBus
        if bootstrap is None:
            bus = MemoryEventBus()
        else:
            bus = KafkaEventBus(bootstrap)
            self.endpoints.kafka_bootstrap = bootstrap
        await bus.start()
        self._stack.push_async_callback(bus.stop)
        return bus

    async def _subscribe_all(self) -> None:
        """Every node's subscriptions, and the host's own to the registry's requests for introspection.

        A node's subscriptions in one consumer group are one consumer of all their topics (``node.receive`` routes
        by event type): one group join instead of one per event, and no rebalance of the group by its own node's
        later members (a join takes about 3 s on the embedded broker). Consumer groups join concurrently; two nodes
        that share a group join it one after the other, so each join settles before the next rebalances it. Each
        host hears every request for introspection, so it listens in a group of its own."""
        bus = self.bus
        assert bus is not None
        consumers: dict[tuple[str, str], _Consumer] = {}
        on_duplicate = self._trace_duplicate if self.tracer is not None else None
        for node in self.nodes:
            policy = delivery_policy(node.contract)
            for sub in node.contract.subscriptions:
                topic, group = node.routes[sub.event].topic, sub.group or node.name
                if (group, node.name) not in consumers:
                    handler = self._observed(node, group, policy)
                    consumers[group, node.name] = _Consumer(
                        [], handler, policy, on_duplicate=on_duplicate, on_failed=self._failure_observer(group)
                    )
                consumers[group, node.name].topics.append(topic)
                self.endpoints.consumes.setdefault(node.name, []).append(topic)
        best_effort = DeliveryPolicy(max_attempts=3, dead_letter=False)  # a stale request is not worth keeping
        for topic, nodes in self._answering_nodes().items():
            # A stable instance keeps its group (and its offsets) across restarts; otherwise each start is new.
            suffix = "" if self.settings.instance_id else f"-{uuid.uuid4().hex[:8]}"
            group = f"onex-introspection-{self.instance}{suffix}"
            # Requests are rare and a late answer costs nothing: a long poll keeps an idle host cheap.
            answer = self._introspection_answer(nodes)
            consumers[group, ""] = _Consumer([topic], answer, best_effort, INTROSPECTION_FETCH_WAIT_MS)
        by_group: dict[str, list[_Consumer]] = {}
        for (group, _), consumer in consumers.items():
            by_group.setdefault(group, []).append(consumer)

        async def join(group: str, members: list[_Consumer]) -> None:
            for c in members:
                self._subscriptions.append(
                    await bus.subscribe(
                        c.topics,
                        group=group,
                        handler=c.handler,
                        policy=c.policy,
                        fetch_max_wait_ms=c.fetch_max_wait_ms,
                        on_duplicate=c.on_duplicate,
                        on_failed=c.on_failed,
                    )
                )

        results = await asyncio.gather(*(join(g, m) for g, m in by_group.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _observed(self, node: Node, group: str, policy: DeliveryPolicy) -> Callable[[Message], Awaitable[None]]:
        """The node's receive wrapped with metrics, the log context of the event in hand, and for nodes whose work
        lives in PostgreSQL, one transaction around it all; with the event log on, one ``in`` row per attempt."""
        metrics = self.metrics
        store = self.store if uses_database(node.contract) else None
        trace = self.tracer.consumed if self.tracer is not None else None
        clock = time.time

        async def handler(message: Message) -> None:
            env = message.envelope
            token = log_context.set(
                {
                    "node": node.name,
                    "event_type": env.event_type,
                    "event_id": str(env.event_id),
                    "correlation_id": str(env.correlation_id or env.event_id),
                    "attempt": str(message.attempt),
                }
            )
            self._in_flight += 1
            started = clock() if trace is not None else 0.0
            status, error = CANCELLED, None  # unless the attempt ends below: cut off by a drain timeout
            try:
                if store is None:
                    await node.receive(message)
                else:
                    # Effects, FSM transitions, outbox events and the processed-event claim commit together:
                    # a redelivered event finds its claim and is skipped, so consumption is effectively once.
                    async with store.transaction() as tx:
                        if not await tx.claim_event(group, str(env.event_id)):
                            log.info("event already processed by this group: skipped")
                            status = DUPLICATE
                            return
                        await node.receive(message)
            except PoisonMessage as exc:
                metrics.failed.inc(topic=message.topic, group=group)
                log.warning("poison event: not retried", extra={"error": str(exc)})
                status, error = _FAILED_FOR_GOOD, error_text(exc)
                raise
            except Exception as exc:
                metrics.failed.inc(topic=message.topic, group=group)
                last = message.attempt >= policy.max_attempts
                log.warning("handler failed" + (" on its last attempt" if last else "; will retry"), exc_info=True)
                status, error = (_FAILED_FOR_GOOD if last else RETRYING), error_text(exc)
                raise
            else:
                metrics.consumed.inc(topic=message.topic, group=group)
                status = HANDLED
            finally:
                self._in_flight -= 1
                log_context.reset(token)
                if trace is not None and status is _FAILED_FOR_GOOD:
                    # What became of the message is the delivery's to say (on_failed): dead-lettered once the dead
                    # letter is written, dropped, or interrupted (delivered again) by a stop or a rebalance.
                    self._failing[group, message.topic, env.event_id] = _LastAttempt(env, started, clock(), error)
                elif trace is not None:
                    trace(message.topic, env, status, started, clock(), error=error)

        return handler

    def _failure_observer(self, group: str) -> FailureObserver:
        """The delivery of ``group`` says what became of a message that failed for good: count a dead letter, and
        log the attempt that failed last with the outcome (``retrying`` when it was interrupted: it comes again)."""
        metrics = self.metrics

        def failed(topic: str, envelope: OnexEnvelopeV1 | None, outcome: str, attempts: int) -> None:
            if outcome == DEAD_LETTERED:
                metrics.dead_lettered.inc(topic=topic, group=group)
            if envelope is None:  # undecodable: no event to log
                return
            last = self._failing.pop((group, topic, envelope.event_id), None)
            if self.tracer is not None and last is not None:
                status = RETRYING if outcome == INTERRUPTED else outcome
                self.tracer.consumed(topic, envelope, status, last.started, last.finished, error=last.error)

        return failed

    def _trace_unreported_failures(self) -> None:
        """After consuming stopped, a backstop: a failed last attempt whose outcome the delivery never reported (cut
        off between the handler and the dead-lettering) is delivered again."""
        failing, self._failing = self._failing, {}
        if self.tracer is None:
            return
        for (_, topic, _), last in failing.items():
            self.tracer.consumed(topic, last.envelope, RETRYING, last.started, last.finished, error=last.error)

    def _trace_duplicate(self, topic: str, envelope: OnexEnvelopeV1) -> None:
        """The subscription skipped an event its group already processed, without calling the handler: log it."""
        assert self.tracer is not None
        now = time.time()
        self.tracer.consumed(topic, envelope, DUPLICATE, now, now)

    # --- HTTP -----------------------------------------------------------------------------------------------------

    async def _serve_http(self, stack: contextlib.AsyncExitStack) -> None:
        app = web.Application(middlewares=[unified_errors])
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        for node in self.nodes:
            routes = getattr(node, "http_routes", None)
            if callable(routes):
                app.router.add_routes(routes())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", self.settings.service_port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.settings.service_port
        self.endpoints.http = f"http://127.0.0.1:{port}"

    async def _health(self, request: web.Request) -> web.Response:
        components: dict[str, Any] = {"bus": "up" if self.bus is not None else "down"}
        if self.store is not None:
            circuit = self.store.stats()["circuit"]["state"]
            components["postgres"] = "up" if circuit == "closed" else f"degraded (circuit {circuit})"
        if self.relay is not None:
            relay = self.relay.stats()
            components["outbox"] = {"role": relay["role"], "pending": relay["pending"], "failures": relay["failures"]}
        if self.tracer is not None:
            components["event_log"] = self.tracer.stats()
        components.update({f"node:{n.name}": "up" for n in self.nodes})
        data = {
            "live": True,
            "ready": self.ready,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
            "components": components,
        }
        if self.ready:
            return respond(request, data, message="ready")
        return respond(
            request, data, status="error", http_status=503, error="not_ready", message="starting or draining"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    def _read_gauges(self) -> None:
        if self.store is not None:
            stats = self.store.stats()
            self._gauges["pool_in_use"].set(stats["pool"]["used"])
            self._gauges["pool_size"].set(stats["pool"]["size"])
            self._gauges["pool_max"].set(stats["pool"]["max"])
            circuit = stats["circuit"]
            self._gauges["circuit_open"].set(0 if circuit["state"] == "closed" else 1)
            for state in CircuitState:
                self._gauges["circuit_state"].set(1 if circuit["state"] == state else 0, state=str(state))
            for key, counter in self._circuit_counters.items():
                counter.set(circuit[key])
        if self.relay is not None:
            relay = self.relay.stats()
            self._gauges["outbox_pending"].set(relay["pending"] or 0)
            self._gauges["outbox_sent"].set(relay["sent_total"])
        if self.tracer is not None:
            self._event_log_metrics["written"].set(self.tracer.written)
            self._event_log_metrics["dropped"].set(self.tracer.dropped)
            self._event_log_metrics["pending"].set(self.tracer.pending)

    def _write_endpoints(self) -> None:
        path = self.settings.data_dir / "endpoints.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.endpoints.as_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
