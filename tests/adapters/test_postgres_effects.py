"""Postgres effects on real PostgreSQL (the shipped tables, each test on a fresh migrated database): every
operation, bulk variants, joining the caller's transaction, column checks and SQL-injection strings stored
literally in every text field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from framework.adapters.postgres_effects import PostgresEffects, quote_ident
from framework.adapters.postgres_fsm_store import PostgresFSMStore
from framework.adapters.postgres_store import PostgresStore, decode_outbox_headers
from framework.contract.spec import PostgresEffect
from framework.errors import NodeRuleError, PortError, QueryError, UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.fsm_store import TransitionRecord
from tests.pg import open_store

INJECTIONS = [
    "Robert'); DROP TABLE metadata_stamps;--",
    "' OR '1'='1",
    '"; DELETE FROM outbox; --',
    "$$; DROP FUNCTION onex_maintain_hash_metrics_partitions; $$",
    "x'::text); SELECT pg_sleep(10); --",
    "\\'; TRUNCATE schema_migrations; --",
    "ünï\u2028code\ttab\nnewline",
]

STAMP_COLUMNS = ["file_hash", "namespace", "file_path", "file_size", "content_type", "stamp_data", "op_id"]


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def effects(store: PostgresStore) -> PostgresEffects:
    return PostgresEffects(store)


Operation = Literal["insert", "upsert", "select", "update", "delete"]


def spec(operation: Operation, *, table: str = "metadata_stamps", **fields: Any) -> PostgresEffect:
    defaults: dict[str, Any] = {"key": ["namespace", "file_hash"]} if operation != "insert" else {}
    return PostgresEffect(
        name=f"{operation}_stamp", adapter="postgres", table=table, operation=operation, **{**defaults, **fields}
    )


def stamp(n: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "file_hash": f"{n:064x}",
        "namespace": "ns",
        "file_path": f"/data/file-{n}.txt",
        "file_size": 1000 + n,
        "content_type": "text/plain",
        "stamp_data": {"n": n, "tags": ["a", "b"]},
        "op_id": uuid.uuid4(),
        **overrides,
    }


async def test_insert_returns_the_stored_row_with_its_defaults(effects: PostgresEffects) -> None:
    insert = effects.bind(spec("insert", columns=STAMP_COLUMNS))
    row = await insert(stamp(1))
    assert row["file_hash"] == f"{1:064x}" and row["stamp_data"] == {"n": 1, "tags": ["a", "b"]}
    assert isinstance(row["id"], uuid.UUID) and row["version"] == 1 and row["protocol_version"] == "1.0"


async def test_a_row_may_leave_declared_columns_to_their_defaults(effects: PostgresEffects) -> None:
    insert = effects.bind(spec("insert", columns=STAMP_COLUMNS))
    partial = {k: v for k, v in stamp(2).items() if k not in ("stamp_data", "content_type")}
    row = await insert(partial)
    assert row["stamp_data"] == {} and row["content_type"] is None


async def test_select_update_delete_work_by_key_and_report_counts(effects: PostgresEffects) -> None:
    await effects.bind(spec("insert"))(stamp(1))
    await effects.bind(spec("insert"))(stamp(2))
    select = effects.bind(spec("select", columns=["file_path", "file_size"]))
    update = effects.bind(spec("update"))
    delete = effects.bind(spec("delete"))

    key = {"namespace": "ns", "file_hash": f"{1:064x}"}
    assert await select(**key) == [
        {"file_path": "/data/file-1.txt", "file_size": 1001, "namespace": "ns", "file_hash": f"{1:064x}"}
    ]
    assert await update({"file_size": 7, "intelligence_data": {"lang": "en"}}, **key) == 1
    (updated,) = await effects.bind(spec("select"))(**key)
    assert updated["file_size"] == 7 and updated["intelligence_data"] == {"lang": "en"}
    assert await update({"file_size": 8}, namespace="ns", file_hash=f"{9:064x}") == 0
    assert await delete(**key) == 1
    assert await select(**key) == []
    assert len(await effects.bind(spec("select", key=["namespace"]))(namespace="ns")) == 1


async def test_upsert_inserts_then_updates_on_its_key(effects: PostgresEffects) -> None:
    upsert = effects.bind(spec("upsert", columns=["namespace", "file_hash", "file_size", "op_id"]))
    first = await upsert({"namespace": "ns", "file_hash": "a" * 64, "file_size": 1, "op_id": uuid.uuid4()})
    second = await upsert({"namespace": "ns", "file_hash": "a" * 64, "file_size": 2, "op_id": uuid.uuid4()})
    assert second["id"] == first["id"] and second["file_size"] == 2
    rows = await effects.bind(spec("select"))(namespace="ns", file_hash="a" * 64)
    assert len(rows) == 1


async def test_upsert_keeps_and_increments_named_columns_on_conflict(effects: PostgresEffects) -> None:
    columns = ["namespace", "file_hash", "file_size", "op_id", "version"]
    upsert = effects.bind(spec("upsert", columns=columns))
    first_op = uuid.uuid4()
    row = {"namespace": "ns", "file_hash": "b" * 64, "file_size": 1, "op_id": first_op, "version": 1}
    first = await upsert(row, keep=("op_id",), increment=("version",))
    assert (first["op_id"], first["version"], first["file_size"]) == (first_op, 1, 1)
    again = await upsert({**row, "file_size": 9, "op_id": uuid.uuid4()}, keep=("op_id",), increment=("version",))
    assert again["op_id"] == first_op  # kept as stored
    assert again["version"] == 2  # the stored value + 1, whatever the row said
    assert again["file_size"] == 9  # every other column is updated


async def test_keep_and_increment_are_checked(effects: PostgresEffects) -> None:
    row = {"namespace": "ns", "file_hash": "c" * 64, "file_size": 1, "op_id": uuid.uuid4(), "version": 1}
    upsert = effects.bind(spec("upsert", columns=list(row)))
    with pytest.raises(UsageError, match=r"cannot be both kept and incremented"):
        await upsert(row, keep=("version",), increment=("version",))
    with pytest.raises(UsageError, match=r"keep and increment are for upserts"):
        await effects.bind(spec("insert", columns=list(row)))(row, keep=("op_id",))


async def test_bulk_insert_and_upsert_write_every_row(effects: PostgresEffects, store: PostgresStore) -> None:
    insert = effects.bind(spec("insert", columns=STAMP_COLUMNS))
    assert await insert.many([stamp(n) for n in range(500)]) == 500
    upsert = effects.bind(spec("upsert", columns=STAMP_COLUMNS))
    assert await upsert.many([stamp(n, file_size=5) for n in range(250, 750)]) == 500
    assert await insert.many([]) == 0
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM metadata_stamps") == 750
        assert await tx.fetchval("SELECT count(*) FROM metadata_stamps WHERE file_size = 5") == 500


async def test_bulk_rows_must_share_their_columns(effects: PostgresEffects) -> None:
    insert = effects.bind(spec("insert", columns=STAMP_COLUMNS))
    with pytest.raises(UsageError, match=r"every row must have the same columns; row 0 has .* row 1 has"):
        await insert.many([stamp(1), {k: v for k, v in stamp(2).items() if k != "file_path"}])
    with pytest.raises(UsageError, match=r"many\(\) is for insert and upsert effects"):
        await effects.bind(spec("delete")).many([])


async def test_an_effect_joins_the_callers_transaction(effects: PostgresEffects, store: PostgresStore) -> None:
    insert = effects.bind(spec("insert"))
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await insert(stamp(1))
            raise RuntimeError("the handler failed after the effect")
    async with store.transaction():
        await insert(stamp(2))
        assert len(await effects.bind(spec("select", key=["namespace"]))(namespace="ns")) == 1
    rows = await effects.bind(spec("select", key=["namespace"]))(namespace="ns")
    assert [r["file_hash"] for r in rows] == [f"{2:064x}"]


async def test_unknown_columns_are_refused_naming_the_allowed_ones(effects: PostgresEffects) -> None:
    declared = effects.bind(spec("insert", columns=["file_hash", "namespace"]))
    with pytest.raises(NodeRuleError) as info:
        await declared({"file_hash": "a" * 64, "namespace": "ns", "evil; DROP TABLE x": 1, "file_size": 1})
    message = str(info.value)
    assert "unknown column(s) in its row: 'evil; DROP TABLE x', 'file_size'" in message
    assert "allowed (the contract declares): file_hash, namespace" in message

    undeclared = effects.bind(spec("insert"))
    with pytest.raises(NodeRuleError, match=r"allowed \(table metadata_stamps has, writable\): id, file_hash"):
        await undeclared({"nope": 1})
    update = effects.bind(spec("update"))
    with pytest.raises(NodeRuleError, match=r"unknown column.*'namespace'"):
        await update({"namespace": "moved"}, namespace="ns", file_hash="a" * 64)  # a key column is not a value


async def test_key_operations_need_exactly_their_key(effects: PostgresEffects) -> None:
    select = effects.bind(spec("select"))
    with pytest.raises(NodeRuleError, match=r"exactly its key columns as keywords \(namespace, file_hash\): missing"):
        await select(namespace="ns")
    with pytest.raises(NodeRuleError, match="unknown 'file_path'"):
        await effects.bind(spec("delete"))(namespace="ns", file_hash="a" * 64, file_path="/x")
    with pytest.raises(NodeRuleError, match=r"needs the key column.*file_hash"):
        await effects.bind(spec("upsert"))({"namespace": "ns", "file_size": 1})
    with pytest.raises(UsageError, match="takes the key as keywords"):
        await select("ns")


def test_binding_refuses_specs_without_the_key_their_operation_needs() -> None:
    effects = PostgresEffects(PostgresStore("postgresql://u@127.0.0.1:5432/db"))  # binding touches no database
    with pytest.raises(UsageError, match="operation delete needs key columns"):
        effects.bind(spec("delete", key=[]))
    with pytest.raises(UsageError, match="key lists a column twice: namespace, namespace"):
        effects.bind(spec("select", key=["namespace", "namespace"]))


async def test_a_spec_that_does_not_match_the_table_is_reported_on_first_use_or_verify(
    effects: PostgresEffects,
) -> None:
    missing_column = effects.bind(spec("insert", columns=["file_hash", "colour"]))
    with pytest.raises(PortError, match=r"no column\(s\) colour \(it has id, file_hash"):
        await effects.verify(missing_column)
    missing_table = effects.bind(spec("insert", table="stamps_typo"))
    with pytest.raises(PortError, match="table 'stamps_typo' does not exist in schema 'public'"):
        await missing_table({"a": 1})
    no_unique_key = effects.bind(spec("upsert", key=["file_path"]))
    with pytest.raises(PortError, match=r"no unique constraint on exactly \(file_path\)"):
        await no_unique_key({"file_path": "/x"})
    identity = effects.bind(spec("insert", table="event_logs", columns=["id", "event_id"]))
    with pytest.raises(PortError, match=r"column\(s\) id are generated and cannot be written"):
        await effects.verify(identity)


async def test_a_refused_row_is_a_query_error(effects: PostgresEffects) -> None:
    with pytest.raises(QueryError) as info:
        await effects.bind(spec("insert"))(stamp(1, file_hash="NOT-HEX"))
    assert info.value.sqlstate == "23514"  # the check constraint on file_hash


def test_identifiers_are_quoted() -> None:
    assert quote_ident('we"ird') == '"we""ird"'


async def test_sql_injection_strings_are_stored_literally_in_every_text_field(
    effects: PostgresEffects, store: PostgresStore
) -> None:
    insert = effects.bind(spec("insert"))
    rows = [
        stamp(
            n,
            namespace=text,
            file_path=text,
            content_type=text,
            protocol_version=text,
            metadata_version=text,
            stamp_data={text: text, "list": [text]},
            intelligence_data={"summary": text},
        )
        for n, text in enumerate(INJECTIONS)
    ]
    for row in rows:
        await insert(row)
    select = effects.bind(spec("select"))
    for row, text in zip(rows, INJECTIONS, strict=True):
        (stored,) = await select(namespace=text, file_hash=row["file_hash"])
        for column in ("namespace", "file_path", "content_type", "protocol_version", "metadata_version"):
            assert stored[column] == text
        assert stored["stamp_data"] == {text: text, "list": [text]}
        assert stored["intelligence_data"] == {"summary": text}
        assert await effects.bind(spec("update"))({"file_path": text + "!"}, namespace=text, file_hash=row["file_hash"])

    # The same strings through the store's own writers: FSM records, claims, outbox topics' payloads and headers.
    fsm = PostgresFSMStore(store)
    for text in INJECTIONS:
        record = TransitionRecord(text, text, 1, text, text, text, text, datetime.now(UTC), {"why": text})
        await fsm.record(record)
        assert await fsm.last(text, text) == record
        event = OnexEnvelopeV1(
            event_type="injection-test",
            source_node_id=text,
            source_service="tests",
            source_version="1.0.0",
            partition_key=text,
            payload={"text": text},
        )
        async with store.transaction() as tx:
            assert await tx.claim_event(text, str(uuid.uuid4()))
            await tx.enqueue("test.injection", event, headers=((text, text.encode()),))
        async with store.transaction() as tx:
            stored_event = await tx.fetchrow("SELECT key, value, headers FROM outbox ORDER BY id DESC LIMIT 1")
        assert stored_event is not None
        assert stored_event["key"] == text.encode()
        assert OnexEnvelopeV1.from_json(stored_event["value"]) == event
        assert decode_outbox_headers(stored_event["headers"]) == ((text, text.encode()),)

    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM metadata_stamps") == len(INJECTIONS)
        assert await tx.fetchval("SELECT count(*) FROM outbox") == len(INJECTIONS)
        assert await tx.fetchval("SELECT count(*) FROM schema_migrations") >= 12
        assert await tx.fetchval("SELECT count(*) FROM processed_events") == len(INJECTIONS)
        assert await tx.fetchval("SELECT to_regproc('onex_maintain_hash_metrics_partitions') IS NOT NULL")
