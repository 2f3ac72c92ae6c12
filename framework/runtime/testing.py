"""The harness of ``onex test``: runs the ``tests:`` of a contract against its node, in process.

Each test case builds the node on a capturing in-memory bus and an in-memory FSM store, with its effects
**recorded instead of executed**:

- Declared effects go through a recording effects binder: a call is written down and answered without I/O — a
  ``given.returns`` value when the case names one, else per adapter: ``blake3`` hashes (pure, so it is computed),
  ``kafka`` publishes through the node (so the event shows among the published ones), ``postgres`` insert/upsert
  returns the row written (a mapping in ``given.returns`` is laid over it: the columns the database fills in),
  select ``[]``, update/delete ``0``, ``http`` ``None``.
- A node whose work lives in PostgreSQL (postgres effects or state, or an FSM: as the host decides) gets a
  recording store as its ``store`` and, like under the host, its handler runs inside a transaction of it. SQL run
  through it (``execute``, ``fetch``, ...) is recorded and answered from ``given.sql`` — the first entry whose
  ``match`` is part of the statement — else as by an empty database (``fetch`` ``[]``, ``fetchrow``/``fetchval``
  ``None``, ``execute`` a count of 0, ``copy_records`` 0). Events published inside a transaction are written to its
  outbox and count as published only when it commits, as with the real outbox.
- Values the database hands back (``given.sql`` answers and postgres effect results) come as the driver returns
  them: strings in ISO 8601 date-time form become aware ``datetime`` objects, strings in UUID form ``uuid.UUID``.

The case's input event is delivered to the node as the host would (payload checked against its model, handler run
with the event current), then the node is stopped (so work it defers, such as batched writes, is done). What the
node did while starting is not part of the case. The expectations are compared: published events (name and payload
subset), the FSM instance's end state, effect calls (name, then ``args``/``kwargs`` subsets), SQL statements (a part
of the text, then ``method``/``args`` subsets) and an expected error. Every failure names the case's line in the
contract and shows a unified diff of expected and actual.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from framework.adapters.hashing import hash_bytes_async
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.findings import Level
from framework.contract.loader import Document
from framework.contract.spec import Contract, ContractTest, PostgresEffect, SqlAnswer
from framework.contract.validate import validate_paths
from framework.errors import ContractError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DeliveryPolicy,
    DuplicateObserver,
    FailureObserver,
    Handler,
    Headers,
    Message,
    Subscription,
)
from framework.ports.fsm_store import TransitionRecord
from framework.ports.store import (
    Store,
    Transaction,
    current_transaction,
    reset_current_transaction,
    set_current_transaction,
)
from framework.runtime.catalog import node_class
from framework.runtime.effects import Effects
from framework.runtime.kinds.base import Node, NodeRuntime, uses_database
from framework.runtime.metrics import Metrics

__all__ = [
    "CaseResult",
    "ContractTests",
    "RecordingStore",
    "SqlCall",
    "load_tests",
    "run_case",
    "run_paths",
]


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
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy | None = None,
        fetch_max_wait_ms: int | None = None,
        on_duplicate: DuplicateObserver | None = None,
        on_failed: FailureObserver | None = None,
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
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def as_driver(value: Any) -> Any:
    """A value the case states for the database, as the driver would return it: ISO 8601 date-time strings as
    ``datetime`` (UTC when they name no offset), UUID strings as ``uuid.UUID``; containers converted throughout."""
    if isinstance(value, str):
        if _UUID.match(value):
            return uuid.UUID(value)
        if _DATETIME.match(value):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        return value
    if isinstance(value, Mapping):
        return {k: as_driver(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_driver(v) for v in value]
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
        adapter = self.spec.adapter
        given = self.spec.name in self.returns
        stated = self.returns.get(self.spec.name)
        if adapter == "postgres":
            operation = self.spec.operation
            if operation in ("insert", "upsert"):
                row = dict(args[0]) if args else {}
                if not given:
                    return row
                if isinstance(stated, Mapping):  # laid over the row: what the database fills in
                    return {**row, **as_driver(stated)}
            if given:
                return as_driver(stated)
            return [] if operation == "select" else 0
        if given:
            return stated
        if adapter == "blake3":
            return await hash_bytes_async(args[0])
        if adapter == "kafka":
            return await self.node.publish(self.spec.event, *args, **kwargs)
        return None

    async def many(self, rows: Iterable[Mapping[str, Any]], *, returning: bool = False, **kwargs: Any) -> Any:
        """A batch: how many rows (``given.returns`` states another count), or with ``returning`` (a generated
        typed ``<effect>_many``) the stored rows: each row, with a mapping in ``given.returns`` laid over it, or
        the list ``given.returns`` states."""
        batch = [dict(r) for r in rows]
        self.calls.append(EffectCall(self.spec.name, plain([batch]), plain(dict(kwargs))))
        given = isinstance(self.spec, PostgresEffect) and self.spec.name in self.returns
        stated = self.returns.get(self.spec.name)
        if returning:
            if given and isinstance(stated, Mapping):
                return [{**row, **as_driver(stated)} for row in batch]
            if given:
                return [dict(r) for r in as_driver(stated)]
            return batch
        if given:
            count: int = self.returns[self.spec.name]
            return count
        return len(batch)


def recording_binder(calls: list[EffectCall], returns: Mapping[str, Any]) -> Any:
    """An effects binder for :class:`NodeRuntime` that records instead of executing."""

    def bind(node: Node) -> Effects:
        return Effects(node.name, {e.name: RecordedEffect(e, node, calls, returns) for e in node.contract.effects})

    return bind


# --- the recorded database -----------------------------------------------------------------------------------------


def _squash(sql: str) -> str:
    return " ".join(sql.split())


@dataclass
class SqlCall:
    method: str
    statement: str
    args: list[Any]

    def as_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "method": self.method, "args": self.args}


_SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "execute": (str, "a status text such as 'UPDATE 1'"),
    "fetch": (list, "a list of rows"),
    "fetchrow": ((dict, type(None)), "a row (a mapping) or null"),
    "copy_records": (int, "a row count"),
}


class RecordingStore:
    """A :class:`~framework.ports.store.Store` whose transactions record SQL instead of running it and answer from
    the case's ``given.sql`` (else as an empty database would). Events enqueued in a transaction reach ``outbox``
    when the outermost transaction commits; a rollback (of a savepoint, too) drops its own."""

    def __init__(self, answers: Sequence[SqlAnswer], outbox: list[CapturedEvent]) -> None:
        self.answers = [(_squash(a.match), a) for a in answers]
        self.calls: list[SqlCall] = []
        self.outbox = outbox

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        parent = current_transaction(self)
        tx = RecordingTransaction(self, parent if isinstance(parent, RecordingTransaction) else None)
        token = set_current_transaction(tx)
        try:
            yield tx
        except BaseException:
            tx.end(commit=False)
            raise
        else:
            tx.end(commit=True)
        finally:
            reset_current_transaction(token)

    def answer(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        statement = _squash(sql)
        self.calls.append(SqlCall(method, statement, plain(list(args))))
        for i, (match, entry) in enumerate(self.answers):
            if match in statement:
                value = as_driver(entry.returns)
                shape = _SHAPES.get(method)
                if shape is not None and not isinstance(value, shape[0]):
                    raise ContractError(
                        f"given.sql[{i}] (match {entry.match!r}) answers {method}() of '{statement[:80]}' with "
                        f"{type(entry.returns).__name__}; {method}() returns {shape[1]}"
                    )
                if method == "fetch" and not all(isinstance(r, dict) for r in value):
                    raise ContractError(f"given.sql[{i}] (match {entry.match!r}): every row of a fetch is a mapping")
                return value
        if method == "execute":
            verb = statement.split(" ", 1)[0].upper() if statement else "OK"
            return "INSERT 0 0" if verb == "INSERT" else f"{verb} 0"
        return {"fetch": [], "copy_records": 0}.get(method)


class RecordingTransaction:
    """One transaction of a :class:`RecordingStore` (a savepoint when ``parent`` is given)."""

    def __init__(self, store: RecordingStore, parent: RecordingTransaction | None) -> None:
        self._store = store
        self._parent = parent
        self._active = True
        self.pending: list[CapturedEvent] = []

    @property
    def store(self) -> Store:
        return self._store

    @property
    def active(self) -> bool:
        return self._active

    def end(self, *, commit: bool) -> None:
        self._active = False
        if commit:
            (self._parent.pending if self._parent is not None else self._store.outbox).extend(self.pending)
        self.pending = []

    def _check(self) -> None:
        if not self._active:
            raise ContractError("a transaction was used after it ended")

    async def execute(self, sql: str, *args: Any) -> str:
        self._check()
        status: str = self._store.answer("execute", sql, args)
        return status

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        self._check()
        self._store.answer("executemany", sql, [[list(a) for a in args]])

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self._check()
        rows: list[dict[str, Any]] = self._store.answer("fetch", sql, args)
        return [dict(r) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        self._check()
        row: dict[str, Any] | None = self._store.answer("fetchrow", sql, args)
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._check()
        return self._store.answer("fetchval", sql, args)

    async def copy_records(self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]) -> int:
        self._check()
        statement = f"COPY {table} ({', '.join(columns)})"
        count: int = self._store.answer("copy_records", statement, [[list(r) for r in records]])
        return count

    async def enqueue(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> int:
        self._check()
        self.pending.append(CapturedEvent(topic, envelope))
        return len(self.pending)

    async def enqueue_many(self, topic: str, envelopes: Iterable[OnexEnvelopeV1], *, headers: Headers = ()) -> int:
        self._check()
        batch = [CapturedEvent(topic, e) for e in envelopes]
        self.pending.extend(batch)
        return len(batch)

    async def claim_event(self, group: str, event_id: str) -> bool:
        self._check()
        return True


# --- comparing ---------------------------------------------------------------------------------------------------


def project(expected: Any, actual: Any) -> Any:
    """``actual`` cut down to what ``expected`` mentions: mappings to its keys, lists element by element."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: project(v, actual[k]) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list):
        head = [project(e, a) for e, a in zip(expected, actual, strict=False)]
        return head + actual[len(expected) :]
    return actual


def project_sql(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`project`, where an expected ``statement`` matches an actual one that contains it."""
    out = []
    for i, got in enumerate(actual):
        if i >= len(expected):
            out.append(got)
            continue
        want = expected[i]
        cut = project(want, got)
        if "statement" in want and _squash(want["statement"]) in got["statement"]:
            cut["statement"] = want["statement"]
        out.append(cut)
    return out


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


_HOST_EVENTS = ("node-introspection", "node-heartbeat")
#: How long background work begun by a node's start() may take before the case's event is delivered.
START_SETTLE_S = 0.05


async def _deliver(node: Node, store: RecordingStore | None, message: Message) -> None:
    """Deliver ``message`` as the host does: inside a transaction of the node's store when it has one."""
    if store is None:
        await node.receive(message)
        return
    async with store.transaction() as tx:
        await tx.claim_event(node.name, str(message.envelope.event_id))
        await node.receive(message)


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
    if (given.sql or expect.sql is not None) and not uses_database(contract):
        fail("the case names SQL, but the node has no database (no postgres effect or state, no fsm)")
        return result
    bus = CapturingBus()
    fsm_store = TrackingFSMStore()
    calls: list[EffectCall] = []
    store = RecordingStore(given.sql, bus.published) if uses_database(contract) else None
    seed = _seed(contract, case)
    if seed is not None:
        await fsm_store.record(seed)
        fsm_store.last_touched = None
    runtime = NodeRuntime(
        bus=bus,
        env="test",
        instance="onex-test",
        metrics=Metrics(),
        bind_effects=recording_binder(calls, given.returns),
        fsm_store=fsm_store,
        resources={"store": store} if store is not None else {},
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
    started = False
    try:
        before = asyncio.all_tasks()
        await node.start()
        # Work start() left to background tasks (recovering unfinished workflows, say) is part of starting too;
        # tasks still running after a moment are the node's loops (sweeps, flushes) and go on during the case.
        spawned = asyncio.all_tasks() - before
        if spawned:
            await asyncio.wait(spawned, timeout=START_SETTLE_S)
        started = True
        # What the node did while starting (announcing itself, loading what it needs) is not part of the case.
        del bus.published[:], calls[:]
        if store is not None:
            del store.calls[:]
        fsm_store.last_touched = None
        try:
            await _deliver(node, store, message)
        finally:
            await node.stop()
    except Exception as exc:
        error = exc
        if not started:
            fail(f"the node failed to start: {type(exc).__name__}: {exc}")
            return result
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
        if c.envelope.event_type not in _HOST_EVENTS
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
    if expect.sql is not None:
        wanted_sql = [e.model_dump(exclude_none=True) for e in expect.sql]
        got_sql = project_sql(wanted_sql, [c.as_dict() for c in (store.calls if store else [])])
        if got_sql != wanted_sql:
            fail(diff("SQL", wanted_sql, got_sql))
    if expect.state is not None and fsm is not None:
        instance = given.instance if await fsm_store.last(fsm.state_machine_name, given.instance) else None
        if instance is None and fsm_store.last_touched is not None:
            instance = fsm_store.last_touched[1]
        last = await fsm_store.last(fsm.state_machine_name, instance) if instance else None
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
