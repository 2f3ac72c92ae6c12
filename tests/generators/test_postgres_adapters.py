"""The generated postgres adapters on real PostgreSQL (each test on a fresh migrated database): the golden contract's
wrappers for insert, upsert, select by key, update and delete run their generated SQL; the shipped
metadata_stamping wrappers too; the host's start-time check of declared columns against the tables; and the same
wrappers under ``onex test``'s recorder, which sees the calls untyped code makes."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from framework.adapters.postgres_effects import PostgresEffects, PostgresStatement, fixed_statement
from framework.adapters.postgres_store import PostgresStore
from framework.contract.spec import Contract, PostgresEffect
from framework.contract.validate import load_contract
from framework.errors import NodeRuleError, PortError, UsageError
from framework.runtime.testing import EffectCall, RecordedEffect
from generators import node_module
from tests.pg import open_store

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "tests/generators/golden/stamp_ledger/contract.yaml"
INJECTION = "Robert'); DROP TABLE metadata_stamps;--"


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn) as opened:
        yield opened


def _generated(contract_path: Path) -> dict[str, Any]:
    """The generated module of a contract, rendered now and executed (as `onex generate` would write it)."""
    contract = load_contract(contract_path)
    source = contract_path.relative_to(REPO).as_posix()
    text = next(iter(node_module.render(contract, source=source, sha256=hashlib.sha256(b"").hexdigest()).values()))
    namespace: dict[str, Any] = {}
    exec(compile(text, source, "exec"), namespace)
    return namespace


def _bound(contract: Contract, effects: PostgresEffects) -> dict[str, Any]:
    return {e.name: effects.bind(e) for e in contract.effects if isinstance(e, PostgresEffect)}


def _row(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "file_hash": f"{n:064x}",
        "namespace": "ns",
        "file_path": f"/data/{n}.txt",
        "file_size": 100 + n,
        "content_type": None,
        "stamp_data": {"n": n},
        "op_id": uuid.uuid4(),
        **overrides,
    }


async def test_generated_wrappers_insert_upsert_select_update_delete(store: PostgresStore) -> None:
    module = _generated(LEDGER)
    effects = PostgresEffects(store)
    ledger = module["StampLedgerEffects"](_bound(load_contract(LEDGER), effects))

    stored = await ledger.record(_row(1, file_path=INJECTION))
    assert stored == _row(1, file_path=INJECTION, op_id=stored["op_id"])  # RETURNING the declared columns
    two = [_row(2), _row(3)]
    assert await ledger.record_many(two) == two  # in one statement, in order

    found = await ledger.find(namespace="ns", file_hash=f"{1:064x}")
    assert len(found) == 1
    assert list(found[0]) == ["id", "namespace", "file_hash", "file_size", "file_path", "created_at"]
    assert isinstance(found[0]["id"], uuid.UUID) and isinstance(found[0]["created_at"], datetime)
    assert found[0]["file_path"] == INJECTION  # a parameter, stored literally

    op_id = uuid.uuid4()
    saved = await ledger.save(
        {"namespace": "ns", "file_hash": f"{1:064x}", "file_size": 7, "op_id": op_id, "version": 2}
    )
    assert saved == {"namespace": "ns", "file_hash": f"{1:064x}", "file_size": 7, "op_id": op_id, "version": 2}
    assert (await ledger.find(namespace="ns", file_hash=f"{1:064x}"))[0]["id"] == found[0]["id"]  # updated in place
    new = {"namespace": "other", "file_hash": f"{9:064x}", "file_size": 9, "op_id": op_id, "version": 1}
    assert await ledger.save(new) == new  # inserted
    assert await ledger.save_many([{**new, "file_size": 10}, {**new, "file_hash": f"{8:064x}"}]) == [
        {**new, "file_size": 10},
        {**new, "file_hash": f"{8:064x}"},
    ]

    assert await ledger.resize({"file_size": 42, "file_path": None}, namespace="ns", file_hash=f"{2:064x}") == 1
    assert await ledger.resize({"file_size": 1, "file_path": None}, namespace="ns", file_hash="0" * 64) == 0
    (row,) = await ledger.find(namespace="ns", file_hash=f"{2:064x}")
    assert (row["file_size"], row["file_path"]) == (42, None)

    everything = await ledger.find_any(namespace="ns")  # SELECT *: every column of the table
    assert len(everything) == 3 and {"stamp_data", "version", "updated_at"} <= set(everything[0])

    assert await ledger.forget(namespace="ns", file_hash=f"{3:064x}") == 1
    assert await ledger.find(namespace="ns", file_hash=f"{3:064x}") == []
    assert (await ledger.record_untyped(_row(4, file_path=None)))["file_size"] == 104

    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM metadata_stamps") == 5


def _stamp(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "namespace": "ns",
        "file_hash": f"{n:064x}",
        "file_size": n,
        "op_id": uuid.uuid4(),
        "version": 1,
        **overrides,
    }


async def test_upsert_keeps_increments_and_returns_what_the_contract_says(store: PostgresStore) -> None:
    """``stamp`` keeps ``id``, increments ``version`` and returns created_at, which the database fills in."""
    ledger = _generated(LEDGER)["StampLedgerEffects"](_bound(load_contract(LEDGER), PostgresEffects(store)))
    first = _stamp(1)
    stored = await ledger.stamp(first)
    assert list(stored) == ["id", "file_hash", "version", "created_at"]  # returning, in its order
    assert (stored["id"], stored["version"]) == (first["id"], 1)
    assert isinstance(stored["created_at"], datetime)
    for version in (2, 3):  # stored again: another id and version given, the stored id kept, its version bumped
        again = await ledger.stamp(_stamp(1, file_size=10 * version))
        assert again == {**stored, "version": version}
    (row,) = await ledger.find(namespace="ns", file_hash=f"{1:064x}")
    assert (row["id"], row["file_size"], row["created_at"]) == (first["id"], 30, stored["created_at"])


class _Counting:
    """A transaction that writes down the name of every method called on it (then calls it)."""

    def __init__(self, tx: Any, calls: list[str]) -> None:
        self._tx, self._calls = tx, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tx, name)
        if not callable(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return await attr(*args, **kwargs)

        return counted


def _counting(effects: PostgresEffects) -> list[str]:
    """The statements ``effects`` runs from now on (by method name)."""
    calls: list[str] = []
    run = effects.run

    async def counted_run(work: Any) -> Any:
        return await run(lambda tx: work(_Counting(tx, calls)))

    effects.run = counted_run  # type: ignore[method-assign]
    return calls


async def test_many_rows_upsert_in_one_statement_in_input_order(store: PostgresStore) -> None:
    effects = PostgresEffects(store)
    ledger = _generated(LEDGER)["StampLedgerEffects"](_bound(load_contract(LEDGER), effects))
    existing = await ledger.stamp(_stamp(5))
    await effects.verify()
    statements = _counting(effects)
    # Keys out of order, some new and one stored already.
    rows = [_stamp(n) for n in (9, 5, 1, 7, 3)]
    stored = await ledger.stamp_many(rows)
    assert statements == ["fetch"]  # one statement, one round trip, for every row
    assert [r["file_hash"] for r in stored] == [row["file_hash"] for row in rows]
    by_hash = {r["file_hash"]: r for r in stored}
    assert by_hash[f"{5:064x}"]["id"] == existing["id"] and by_hash[f"{5:064x}"]["version"] == 2  # kept, bumped
    assert by_hash[f"{5:064x}"]["created_at"] == existing["created_at"]
    for row in rows:
        if row["file_hash"] != f"{5:064x}":
            assert (by_hash[row["file_hash"]]["id"], by_hash[row["file_hash"]]["version"]) == (row["id"], 1)
    again = await ledger.stamp_many(list(reversed(rows)))
    assert [r["file_hash"] for r in again] == [row["file_hash"] for row in reversed(rows)]
    assert [r["version"] for r in again] == [2, 2, 2, 3, 2]  # hashes 3, 7, 1, 5 (stored twice already), 9
    assert [r["id"] for r in again] == [by_hash[row["file_hash"]]["id"] for row in reversed(rows)]
    statements.clear()
    assert await ledger.stamp_many([]) == []
    assert statements == []  # nothing to write, nothing sent


async def test_many_rows_upsert_refuses_duplicate_keys_before_sending(store: PostgresStore) -> None:
    effects = PostgresEffects(store)
    ledger = _generated(LEDGER)["StampLedgerEffects"](_bound(load_contract(LEDGER), effects))
    await effects.verify()
    statements = _counting(effects)
    twice = [_stamp(1), _stamp(2), _stamp(1, file_size=99)]
    with pytest.raises(NodeRuleError, match=r"effect 'stamp' .*: rows 0 and 2 have the same key .*distinct keys"):
        await ledger.stamp_many(twice)
    with pytest.raises(NodeRuleError, match=r"row 1 has a NULL key"):
        await ledger.stamp_many([_stamp(3), _stamp(4, namespace=None)])
    assert statements == []
    assert await ledger.find(namespace="ns", file_hash=f"{1:064x}") == []
    # An insert has no key to refuse duplicates by (the table's unique key may, as here); rows come back in order.
    record = [_row(3), _row(1), _row(2, file_path=None)]
    assert await ledger.record_many(record) == record


async def test_many_rows_join_the_callers_transaction(store: PostgresStore) -> None:
    ledger = _generated(LEDGER)["StampLedgerEffects"](_bound(load_contract(LEDGER), PostgresEffects(store)))
    with pytest.raises(RuntimeError):
        async with store.transaction():
            assert len(await ledger.stamp_many([_stamp(1), _stamp(2)])) == 2
            raise RuntimeError("the handler failed after the effect")
    assert await ledger.find(namespace="ns", file_hash=f"{1:064x}") == []


async def test_generated_wrappers_join_the_callers_transaction(store: PostgresStore) -> None:
    ledger = _generated(LEDGER)["StampLedgerEffects"](_bound(load_contract(LEDGER), PostgresEffects(store)))
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await ledger.record(_row(1))
            assert len(await ledger.find(namespace="ns", file_hash=f"{1:064x}")) == 1
            raise RuntimeError("the handler failed after the effect")
    assert await ledger.find(namespace="ns", file_hash=f"{1:064x}") == []


async def test_the_generated_sql_is_the_one_the_contract_fixes(store: PostgresStore) -> None:
    module = _generated(LEDGER)
    contract = load_contract(LEDGER)
    for effect in contract.effects:
        if isinstance(effect, PostgresEffect) and effect.name != "record_any":
            assert module[effect.name.upper() + "_SQL"] == fixed_statement(effect)
    assert "RECORD_ANY_SQL" not in module  # insert of every column of the table: built from the table at run time
    bound = _bound(contract, PostgresEffects(store))
    stale = PostgresStatement("find", "select", "metadata_stamps", 'SELECT * FROM "metadata_stamps"', (), ())
    with pytest.raises(UsageError, match=r"effect 'find': the statement given is not the one its contract fixes"):
        await bound["find"].run(stale, {})
    with pytest.raises(NodeRuleError, match=r"needs every column of its statement: missing op_id"):
        await bound["record"].run(module["RECORD_SQL"], {k: v for k, v in _row(1).items() if k != "op_id"})


def _effect(**fields: Any) -> PostgresEffect:
    return PostgresEffect(name="save", adapter="postgres", table="metadata_stamps", **fields)


async def test_verify_names_the_effect_the_table_and_the_missing_columns(store: PostgresStore) -> None:
    effects = PostgresEffects(store)
    effects.bind(_effect(operation="insert", columns={"file_hash": "text", "nope": "text", "nada": "integer?"}))
    with pytest.raises(PortError) as caught:
        await effects.verify()
    message = str(caught.value)
    assert "effect 'save' (insert on table 'metadata_stamps') does not match the database" in message
    assert "no column(s) nope, nada" in message


async def test_verify_checks_declared_types_and_nullability(store: PostgresStore) -> None:
    effects = PostgresEffects(store)
    effects.bind(_effect(operation="upsert", key=["namespace", "file_hash"], columns={"file_hash": "text"}))
    effects.bind(_effect(operation="select", key=["namespace"], columns={"file_size": "text", "file_path": "text"}))
    with pytest.raises(PortError) as caught:
        await effects.verify()
    message = str(caught.value)
    assert "column file_size is int8, the contract declares text" in message
    assert "column file_path is nullable, declare it as 'text?'" in message
    effects = PostgresEffects(store)
    effects.bind(_effect(operation="select", key=["namespace"], columns={"namespace": "text?", "version": "integer"}))
    with pytest.raises(PortError, match=r"column namespace is NOT NULL, declare it as 'text'"):
        await effects.verify()


async def test_the_shipped_contracts_match_the_migrated_database(store: PostgresStore) -> None:
    effects = PostgresEffects(store)
    bound = 0
    for path in sorted((REPO / "contracts").glob("*.yaml")):
        bound += len(_bound(load_contract(path), effects))
    assert bound >= 5
    await effects.verify()  # what the host does at start


async def test_metadata_stamping_generated_wrappers(store: PostgresStore) -> None:
    from nodes.metadata_stamping._generated import (  # noqa: PLC0415
        MetadataStampingEffects,
        RecordHashMetricRow,
        RestampValues,
        SaveStampRow,
    )

    contract = load_contract(REPO / "contracts/metadata_stamping.yaml")
    typed = MetadataStampingEffects(_bound(contract, PostgresEffects(store)))
    now = datetime.now(UTC)
    stamp_id, digest = uuid.uuid4(), "ab" * 32
    row: SaveStampRow = {
        "id": stamp_id,
        "file_hash": digest,
        "namespace": "demo",
        "file_path": None,
        "file_size": 5,
        "content_type": "text/plain",
        "stamp_data": {"kind": "lightweight"},
        "metadata_version": "0.1",
        "op_id": uuid.uuid4(),
        "updated_at": now,
        "version": 1,
    }
    saved = await typed.save_stamp(row)
    assert {k: v for k, v in saved.items() if k != "created_at"} == {
        "id": stamp_id,
        "namespace": "demo",
        "file_hash": digest,
        "version": 1,
    }
    # Stored again, as the node does (a fresh id, version 1): the stored id is kept, the version bumped.
    assert await typed.save_stamp({**row, "id": uuid.uuid4(), "file_size": 6}) == {**saved, "version": 2}
    (found,) = await typed.find_stamp(namespace="demo", file_hash=digest)
    assert (found["id"], found["file_size"], found["version"], found["protocol_version"]) == (stamp_id, 6, 2, "1.0")
    assert found["created_at"] == saved["created_at"]
    other: SaveStampRow = {**row, "id": uuid.uuid4(), "file_hash": "cd" * 32}
    many = await typed.save_stamp_many([other, {**row, "id": uuid.uuid4()}])  # the group commit's statement
    assert [(r["id"], r["file_hash"], r["version"]) for r in many] == [
        (other["id"], "cd" * 32, 1),
        (stamp_id, digest, 3),
    ]
    values: RestampValues = {
        "file_path": "a.txt",
        "file_size": 5,
        "content_type": None,
        "stamp_data": {"uid": str(stamp_id)},
        "metadata_version": "0.1",
        "op_id": uuid.uuid4(),
        "updated_at": now,
    }
    assert await typed.restamp(values, namespace="demo", file_hash=digest) == 1
    (found,) = await typed.find_stamp(namespace="demo", file_hash=digest)
    assert (found["id"], found["file_path"], found["version"]) == (stamp_id, "a.txt", 3)  # id and version stay
    listed = await typed.list_namespace(namespace="demo")
    assert sorted(r["file_hash"] for r in listed) == [digest, "cd" * 32] and listed[0]["namespace"] == "demo"
    metric: RecordHashMetricRow = {
        "recorded_at": now,
        "operation": "hash",
        "duration_ms": 0.5,
        "file_size": 5,
        "namespace": None,
        "thread_count": 1,
        "batch_id": None,
        "success": True,
        "error": None,
    }
    assert (await typed.record_hash_metric(metric))["operation"] == "hash"
    metrics = await typed.record_hash_metric_many([metric, {**metric, "operation": "stamp"}])
    assert [m["operation"] for m in metrics] == ["hash", "stamp"]
    handlers = await typed.load_handlers(is_active=True)
    assert {h["handler_type"] for h in handlers} >= {"image", "document"}
    assert all(isinstance(h["file_extensions"], list) for h in handlers)


async def test_recorded_effects_see_the_calls_untyped_code_makes() -> None:
    """Under `onex test` effects are recorded, not run: the wrappers then make the ordinary call of each operation."""
    contract = load_contract(LEDGER)
    calls: list[EffectCall] = []
    # The node is only for kafka effects (recorded publishes); postgres ones never reach it.
    recorded = {e.name: RecordedEffect(e, None, calls, {}) for e in contract.effects}  # type: ignore[arg-type]
    ledger = _generated(LEDGER)["StampLedgerEffects"](recorded)
    op_id = uuid.uuid4()
    row = {"namespace": "ns", "file_hash": "h", "file_size": 1, "op_id": op_id, "version": 1}
    assert await ledger.save(row) == row
    assert await ledger.save_many([row]) == [row]
    stamp = {"id": op_id, "namespace": "ns", "file_hash": "h", "file_size": 1, "op_id": op_id, "version": 1}
    assert await ledger.stamp(stamp) == stamp
    assert await ledger.stamp_many([stamp]) == [stamp]
    assert await ledger.find(namespace="ns", file_hash="h") == []
    assert await ledger.resize({"file_size": 2, "file_path": None}, namespace="ns", file_hash="h") == 0
    assert await ledger.forget(namespace="ns", file_hash="h") == 0
    plain_row = {**row, "op_id": str(op_id)}
    plain_stamp = {**stamp, "id": str(op_id), "op_id": str(op_id)}
    assert [c.as_dict() for c in calls] == [
        {"effect": "save", "args": [plain_row], "kwargs": {}},
        {"effect": "save", "args": [[plain_row]], "kwargs": {}},
        {"effect": "stamp", "args": [plain_stamp], "kwargs": {"keep": ["id"], "increment": ["version"]}},
        {"effect": "stamp", "args": [[plain_stamp]], "kwargs": {"keep": ["id"], "increment": ["version"]}},
        {"effect": "find", "args": [], "kwargs": {"namespace": "ns", "file_hash": "h"}},
        {
            "effect": "resize",
            "args": [{"file_size": 2, "file_path": None}],
            "kwargs": {"namespace": "ns", "file_hash": "h"},
        },
        {"effect": "forget", "args": [], "kwargs": {"namespace": "ns", "file_hash": "h"}},
    ]
