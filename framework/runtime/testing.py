"""The harness of ``onex test``: runs the ``tests:`` of a contract against its node, in process.

Each test case builds the node on a capturing in-memory bus and an in-memory FSM store, with its effects
**recorded instead of executed** (a recording effects binder): a call is written down and answered without I/O —
a ``given.returns`` value when the case names one, else per adapter: ``blake3`` hashes (pure, so it is computed),
``kafka`` publishes through the node (so the event shows among the published ones), ``postgres`` insert/upsert
returns the row, select ``[]``, update/delete ``0``, ``http`` ``None``. The case's input event is then delivered to
the node as the host would (payload checked against its model, handler run with the event current), and the
expectations are compared: published events (name and payload subset), the FSM instance's end state, effect calls
(name, then ``args``/``kwargs`` subsets) and an expected error. Every failure names the case's line in the contract
and shows a unified diff of expected and actual.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from framework.adapters.hashing import hash_bytes_async
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.findings import Level
from framework.contract.loader import Document
from framework.contract.spec import Contract, ContractTest, PostgresEffect
from framework.contract.validate import validate_paths
from framework.errors import ContractError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import DeliveryPolicy, Handler, Headers, Message, Subscription
from framework.ports.fsm_store import TransitionRecord
from framework.runtime.catalog import node_class
from framework.runtime.effects import Effects
from framework.runtime.kinds.base import Node, NodeRuntime
from framework.runtime.metrics import Metrics

__all__ = ["CaseResult", "ContractTests", "load_tests", "run_case", "run_paths"]


@dataclass(frozen=True)
class CapturedEvent:
    topic: str
    envelope: OnexEnvelopeV1


class CapturingBus:
    """An EventBus that keeps what is published, in order, and delivers nothing."""

    def __init__(self) -> None:
        self.published: list[CapturedEvent] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ensure_topics(self, topics: Iterable[str], *, partitions: int = 3) -> None:
        return None

    async def publish(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        self.published.append(CapturedEvent(topic, envelope))

    async def publish_many(self, topic: str, envelopes: Sequence[OnexEnvelopeV1], *, headers: Headers = ()) -> None:
        self.published.extend(CapturedEvent(topic, e) for e in envelopes)

    async def subscribe(
        self, topics: Sequence[str], *, group: str, handler: Handler, policy: DeliveryPolicy | None = None
    ) -> Subscription:
        raise ContractError("onex test delivers the test case's event itself; a node may not subscribe on its own")


class TrackingFSMStore(MemoryFSMStore):
    """The memory FSM store, remembering which instance moved last."""

    def __init__(self) -> None:
        super().__init__()
        self.last_touched: tuple[str, str] | None = None

    async def record(self, record: TransitionRecord) -> None:
        await super().record(record)
        self.last_touched = (record.machine, record.instance_id)


@dataclass
class EffectCall:
    effect: str
    args: list[Any]
    kwargs: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"effect": self.effect, "args": self.args, "kwargs": self.kwargs}


def plain(value: Any) -> Any:
    """A recorded value as YAML can write it: bytes as text, mappings as dicts, tuples as lists."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID | datetime):
        return str(value)
    return value


class RecordedEffect:
    """One declared effect, recorded: calls are written down and answered without I/O."""

    def __init__(self, spec: Any, node: Node, calls: list[EffectCall], returns: Mapping[str, Any]) -> None:
        self.spec = spec
        self.node = node
        self.calls = calls
        self.returns = returns

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(EffectCall(self.spec.name, plain(list(args)), plain(dict(kwargs))))
        if self.spec.name in self.returns:
            return self.returns[self.spec.name]
        adapter = self.spec.adapter
        if adapter == "blake3":
            return await hash_bytes_async(args[0])
        if adapter == "kafka":
            return await self.node.publish(self.spec.event, *args, **kwargs)
        if adapter == "postgres":
            operation = self.spec.operation
            if operation in ("insert", "upsert"):
                return dict(args[0]) if args else {}
            return [] if operation == "select" else 0
        return None

    async def many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        batch = [dict(r) for r in rows]
        self.calls.append(EffectCall(self.spec.name, plain([batch]), {}))
        if isinstance(self.spec, PostgresEffect) and self.spec.name in self.returns:
            count: int = self.returns[self.spec.name]
            return count
        return len(batch)


def recording_binder(calls: list[EffectCall], returns: Mapping[str, Any]) -> Any:
    """An effects binder for :class:`NodeRuntime` that records instead of executing."""

    def bind(node: Node) -> Effects:
        return Effects(node.name, {e.name: RecordedEffect(e, node, calls, returns) for e in node.contract.effects})

    return bind


# --- comparing ---------------------------------------------------------------------------------------------------


def project(expected: Any, actual: Any) -> Any:
    """``actual`` cut down to what ``expected`` mentions: mappings to its keys, lists element by element."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: project(v, actual[k]) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list):
        head = [project(e, a) for e, a in zip(expected, actual, strict=False)]
        return head + actual[len(expected) :]
    return actual


def _dump(value: Any) -> list[str]:
    return (json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n").splitlines(True)


def diff(what: str, expected: Any, actual: Any) -> str:
    lines = difflib.unified_diff(_dump(expected), _dump(actual), f"expected {what}", f"actual {what}")
    return "".join(lines).rstrip("\n")


@dataclass
class CaseResult:
    path: str
    line: int
    contract: str
    case: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def format(self) -> str:
        head = f"{self.path}:{self.line}: {'PASS' if self.passed else 'FAIL'} {self.contract}.{self.case}"
        body = "".join("\n" + "\n".join("    " + line for line in f.splitlines()) for f in self.failures)
        return head + body


@dataclass
class ContractTests:
    path: str
    doc: Document
    contract: Contract

    def line_of(self, index: int) -> int:
        return self.doc.position(("tests", index)).line


def _seed(contract: Contract, case: ContractTest) -> TransitionRecord | None:
    fsm = contract.subcontracts.fsm
    given = case.given
    if fsm is None or (given.state is None and not given.context):
        return None
    return TransitionRecord(
        machine=fsm.state_machine_name,
        instance_id=given.instance,
        sequence=1,
        transition="onex_test_seed",
        trigger="onex_test_seed",
        from_state=fsm.initial_state,
        to_state=given.state or fsm.initial_state,
        at=datetime.now(UTC),
        context=dict(given.context),
    )


async def run_case(contract: Contract, case: ContractTest, *, path: str = "", line: int = 0) -> CaseResult:
    """Run one test case of ``contract``; the result lists each failure with a diff."""
    result = CaseResult(path, line, contract.name, case.name)
    fail = result.failures.append
    given, expect = case.given, case.expect
    subscribed = [s.event for s in contract.subscriptions]
    if given.event not in subscribed:
        fail(f"given.event '{given.event}' is not subscribed by {contract.name}; it subscribes {subscribed or 'none'}")
        return result
    fsm = contract.subcontracts.fsm
    if (given.state is not None or expect.state is not None) and fsm is None:
        fail("the case names an FSM state, but the contract has no fsm subcontract")
        return result
    bus = CapturingBus()
    store = TrackingFSMStore()
    calls: list[EffectCall] = []
    seed = _seed(contract, case)
    if seed is not None:
        await store.record(seed)
        store.last_touched = None
    runtime = NodeRuntime(
        bus=bus,
        env="test",
        instance="onex-test",
        metrics=Metrics(),
        bind_effects=recording_binder(calls, given.returns),
        fsm_store=store,
    )
    error: BaseException | None = None
    try:
        node = node_class(contract)(contract, runtime)
    except Exception as exc:
        fail(f"the node could not be built: {type(exc).__name__}: {exc}")
        return result
    route = node.routes[given.event]
    envelope = OnexEnvelopeV1(
        event_type=given.event,
        event_version=route.spec.version,
        source_node_id="onex-test",
        source_service="onex-test",
        source_version="0.0.0",
        environment="test",
        correlation_id=uuid.uuid4(),
        payload=dict(given.payload),
    )
    message = Message(route.topic, 0, 0, None, envelope.to_json(), (), envelope)
    try:
        await node.start()
        try:
            await node.receive(message)
        finally:
            await node.stop()
    except Exception as exc:
        error = exc
    if expect.error is not None:
        if error is None:
            fail(f"expected an error containing {expect.error!r}; the handler returned normally")
        elif expect.error not in str(error):
            fail(diff("error", expect.error, f"{type(error).__name__}: {error}"))
    elif error is not None:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        fail(f"the handler raised {detail}")
    published = [
        {"event": c.envelope.event_type, "payload": plain(c.envelope.payload)}
        for c in bus.published
        if c.envelope.event_type not in ("node-introspection", "node-heartbeat")
    ]
    if expect.events is not None:
        wanted = [{"event": e.event, "payload": e.payload} for e in expect.events]
        got = project(wanted, published)
        if got != wanted:
            fail(diff("events", wanted, got))
    if expect.effects is not None:
        wanted_calls = [e.model_dump(exclude_none=True) for e in expect.effects]
        got_calls = project(wanted_calls, [c.as_dict() for c in calls])
        if got_calls != wanted_calls:
            fail(diff("effect calls", wanted_calls, got_calls))
    if expect.state is not None and fsm is not None:
        instance = given.instance if await store.last(fsm.state_machine_name, given.instance) else None
        if instance is None and store.last_touched is not None:
            instance = store.last_touched[1]
        last = await store.last(fsm.state_machine_name, instance) if instance else None
        state = last.to_state if last else fsm.initial_state
        if state != expect.state:
            fail(diff("state", expect.state, state))
    return result


def load_tests(paths: Sequence[Path]) -> list[ContractTests]:
    """The contracts found in ``paths`` (files or directories), validated; contract errors stop here."""
    report = validate_paths(paths, import_implementation=False, cross_check=False)
    errors = [f for f in report.findings if f.level is Level.ERROR]
    if errors:
        raise ContractError(
            "\n".join(f.format() for f in errors) + f"\n{len(errors)} error(s) in the contracts: fix them first"
        )
    return [ContractTests(str(doc.path), doc, contract) for doc, contract in report.contracts]


async def run_all(suites: Sequence[ContractTests]) -> list[CaseResult]:
    results = []
    for suite in suites:
        for index, case in enumerate(suite.contract.tests):
            results.append(await run_case(suite.contract, case, path=suite.path, line=suite.line_of(index)))
    return results


def run_paths(paths: Sequence[Path | str]) -> list[CaseResult]:
    """Run the tests of every contract in ``paths`` (synchronously, in a loop of its own)."""
    return asyncio.run(run_all(load_tests([Path(p) for p in paths])))
