"""The migrator and the shipped migrations, on the real PostgreSQL of the session, each test on a fresh database."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from framework.adapters.migrator import (
    MIGRATION_LOCK_KEY,
    MigrationError,
    MigrationFailed,
    MigrationFilesError,
    MigrationVerifyError,
    Migrator,
    discover,
)
from framework.errors import OnexError, UsageError
from framework.shipped import shipped_dir
from tests.pg import migrated_database

SHIPPED = shipped_dir("migrations")
EXPECTED = [
    "metadata_stamps",
    "protocol_handlers",
    "hash_metrics",
    "event_logs",
    "workflow_executions",
    "workflow_steps",
    "fsm_transitions",
    "bridge_states",
    "node_registrations",
    "outbox",
    "processed_events",
    "dead_letters",
    "workflow_leases",
]
#: Migrations that alter a table rather than create one of their name.
ALTERING = {"workflow_leases"}
INJECTIONS = [
    "Robert'); DROP TABLE metadata_stamps;--",
    "' OR '1'='1",
    '"; DELETE FROM outbox; --',
    "$$; DROP FUNCTION onex_maintain_hash_metrics_partitions; $$",
    "x'::text); SELECT pg_sleep(10); --",
    "\\'; TRUNCATE schema_migrations; --",
]


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture
async def db_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with migrated_database(postgres_dsn, migrate=False) as dsn:
        yield dsn


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """The shipped migrations in a directory the test may edit."""
    target = tmp_path / "migrations"
    shutil.copytree(SHIPPED, target)
    return target


def write_pair(directory: Path, label: str, forward: str, rollback: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{label}.sql").write_text(forward)
    (directory / f"{label}.rollback.sql").write_text(rollback)


_CATALOG_QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind::text, coalesce(pg_get_expr(c.relpartbound, c.oid), '')
        FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relname NOT LIKE 'schema_migrations%'
    """,
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname NOT LIKE 'schema_migrations%'
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = current_schema()::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
    """,
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(pg_get_functiondef(p.oid))
        FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
    """,
    "triggers": """
        SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
    """,
    "types": """
        SELECT typname, typtype::text FROM pg_type
        WHERE typnamespace = current_schema()::regnamespace AND typname NOT LIKE '%schema_migrations'
    """,
}


async def catalog(connection: Any) -> dict[str, set[tuple[Any, ...]]]:
    """What a migration can create in the current schema, apart from the migrator's own table."""
    return {kind: {tuple(row) for row in await connection.fetch(query)} for kind, query in _CATALOG_QUERIES.items()}


async def table_exists(connection: Any, name: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def recorded_versions(connection: Any) -> list[int]:
    return [row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")]


# --- files ----------------------------------------------------------------------------------------------------------


def test_shipped_migrations_are_a_complete_sequence() -> None:
    migrations = discover()
    assert [m.name for m in migrations] == EXPECTED
    assert [m.version for m in migrations] == list(range(1, len(EXPECTED) + 1))
    for migration in migrations:
        assert migration.path.parent == SHIPPED
        assert migration.rollback_path.is_file()
        assert migration.checksum == hashlib.sha256(migration.path.read_bytes()).hexdigest()


def test_checksum_ignores_crlf_line_endings(tmp_path: Path) -> None:
    lf, crlf = tmp_path / "lf", tmp_path / "crlf"
    write_pair(lf, "001_a", "CREATE TABLE a (x int);\nCREATE TABLE b (y int);\n", "DROP TABLE b;\nDROP TABLE a;\n")
    write_pair(crlf, "001_a", "CREATE TABLE a (x int);\r\nCREATE TABLE b (y int);\r\n", "DROP TABLE b; DROP TABLE a;")
    assert discover(lf)[0].checksum == discover(crlf)[0].checksum


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "001_a.sql": "SELECT 1;",
                "001_a.rollback.sql": "SELECT 1;",
                "003_c.sql": "SELECT 1;",
                "003_c.rollback.sql": "SELECT 1;",
            },
            "migration number 002 missing",
        ),
        (
            {
                "001_a.sql": "SELECT 1;",
                "001_a.rollback.sql": "SELECT 1;",
                "001_b.sql": "SELECT 1;",
                "001_b.rollback.sql": "SELECT 1;",
            },
            "number 001 is used by 2 migrations: 001_a.sql, 001_b.sql",
        ),
        ({"001_a.sql": "SELECT 1;"}, "001_a.sql has no rollback: write 001_a.rollback.sql"),
        (
            {"001_a.sql": "SELECT 1;", "001_a.rollback.sql": "SELECT 1;", "002_b.rollback.sql": "SELECT 1;"},
            "002_b.rollback.sql rolls back nothing: there is no 002_b.sql",
        ),
        ({"001_a.sql": "SELECT 1;", "001_b.rollback.sql": "SELECT 1;"}, "001_a.sql has no rollback"),
        ({"1_a.sql": "SELECT 1;"}, "1_a.sql: not a migration name"),
        ({"001_Robert'); DROP TABLE x;--.sql": "SELECT 1;"}, "not a migration name"),
        ({"001_a.sql": "-- nothing\n", "001_a.rollback.sql": "SELECT 1;"}, "001_a.sql is empty"),
        (
            {"001_a.sql": "BEGIN;\nCREATE TABLE a (x int);\nCOMMIT;\n", "001_a.rollback.sql": "DROP TABLE a;"},
            "001_a.sql:1: BEGIN would end or split the transaction",
        ),
        (
            {"001_a.sql": "CREATE TABLE a (x int);\nCOMMIT;\n", "001_a.rollback.sql": "DROP TABLE a;"},
            "001_a.sql:2: COMMIT",
        ),
        (
            {"001_a.sql": "CREATE TABLE a (x int);", "001_a.rollback.sql": "DROP TABLE a;\n\n  rollback work;"},
            "001_a.rollback.sql:3: ROLLBACK",
        ),
    ],
)
def test_discover_refuses_unusable_directories(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationFilesError) as caught:
        discover(tmp_path)
    assert expected in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_discover_allows_transaction_words_that_stay_inside_the_transaction(tmp_path: Path) -> None:
    forward = """
        -- COMMIT; in a comment
        /* BEGIN; /* nested */ COMMIT; */
        CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
        BEGIN
            RETURN 1;
        END;
        $body$;
        CREATE FUNCTION g() RETURNS int LANGUAGE sql
        BEGIN ATOMIC
            SELECT 1;
        END;
        CREATE VIEW v AS SELECT CASE WHEN true THEN 'COMMIT;' ELSE E'\\'; ROLLBACK;' END AS c;
        SAVEPOINT before_seed;
        INSERT INTO t VALUES ('BEGIN; COMMIT;');
        ROLLBACK TO SAVEPOINT before_seed;
        RELEASE before_seed;
    """
    write_pair(tmp_path, "001_a", forward, "DROP VIEW v; DROP FUNCTION g(); DROP FUNCTION f();")
    (tmp_path / "README.md").write_text("not a migration")
    assert [m.label for m in discover(tmp_path)] == ["001_a"]


def test_discover_names_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MigrationFilesError, match="does not exist"):
        discover(tmp_path / "nowhere")


# --- up / down ------------------------------------------------------------------------------------------------------


async def test_up_down_and_up_again_on_an_empty_database(conn: Any) -> None:
    empty = await catalog(conn)
    migrator = Migrator(conn)

    applied = await migrator.up()
    assert [m.name for m in applied] == EXPECTED
    assert await recorded_versions(conn) == list(range(1, len(EXPECTED) + 1))
    for table in EXPECTED:
        if table not in ALTERING:
            assert await table_exists(conn, table), table
    migrated = await catalog(conn)

    assert await migrator.up() == []

    rolled_back = await migrator.down(None)
    assert [m.name for m in rolled_back] == EXPECTED[::-1]
    assert await recorded_versions(conn) == []
    assert await catalog(conn) == empty

    assert [m.name for m in await migrator.up()] == EXPECTED
    assert await catalog(conn) == migrated
    assert await migrator.verify() == []


async def test_rows_survive_up_after_a_partial_down(conn: Any) -> None:
    migrator = Migrator(conn)
    await migrator.up()
    file_hash = "ab" * 32
    await conn.execute(
        "INSERT INTO metadata_stamps (file_hash, namespace, file_size, op_id) VALUES ($1, 'ns', 10, $2)",
        file_hash,
        uuid.uuid4(),
    )
    await conn.execute(
        "INSERT INTO node_registrations (node_id, node_type, node_version) VALUES ('n1', 'EFFECT', '1.0.0')"
    )
    await conn.execute("INSERT INTO outbox (topic, value) VALUES ('t', '\\x01')")

    rolled_back = await migrator.down(5)
    assert [m.version for m in rolled_back] == [13, 12, 11, 10, 9]
    assert not await table_exists(conn, "outbox")
    assert not await table_exists(conn, "node_registrations")

    assert [m.version for m in await migrator.up()] == [9, 10, 11, 12, 13]
    assert await conn.fetchval("SELECT file_hash FROM metadata_stamps WHERE namespace = 'ns'") == file_hash
    assert await conn.fetchval("SELECT count(*) FROM protocol_handlers") == 5
    # Tables that were rolled back come back empty: a rollback drops its data with its schema.
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    assert await conn.fetchval("SELECT count(*) FROM node_registrations") == 0


async def test_every_rollback_exactly_undoes_its_migration(conn: Any) -> None:
    migrator = Migrator(conn)
    for migration in migrator.migrations():
        before = await catalog(conn)
        assert [m.version for m in await migrator.up(to=migration.version)] == [migration.version]
        after = await catalog(conn)
        assert after != before, f"{migration.label} changed nothing in the catalog"
        assert [m.version for m in await migrator.down(1)] == [migration.version]
        restored = await catalog(conn)
        for kind in before:
            assert restored[kind] == before[kind], f"{migration.rollback_path.name} left {kind} behind or took more"
        await migrator.up(to=migration.version)
    assert await recorded_versions(conn) == list(range(1, len(EXPECTED) + 1))


async def test_up_to_a_number_and_down_beyond_what_is_applied(conn: Any) -> None:
    migrator = Migrator(conn)
    with pytest.raises(UsageError, match="no migration number 099"):
        await migrator.up(to=99)
    assert [m.version for m in await migrator.up(to=2)] == [1, 2]
    with pytest.raises(UsageError, match="only 2 are applied"):
        await migrator.down(3)
    with pytest.raises(UsageError, match="n must be an integer >= 1"):
        await migrator.down(0)
    assert await recorded_versions(conn) == [1, 2]
    await migrator.down(None)
    assert await migrator.down(None) == []
    with pytest.raises(UsageError, match="no migration is applied"):
        await migrator.down(1)


async def test_status_lists_applied_and_pending_without_writing(conn: Any) -> None:
    migrator = Migrator(conn)
    states = await migrator.status()
    assert [(s.version, s.state) for s in states] == [(v, "pending") for v in range(1, len(EXPECTED) + 1)]
    assert not await table_exists(conn, "schema_migrations"), "status must not create the table"

    await migrator.up(to=3)
    states = await migrator.status()
    assert [s.state for s in states] == ["applied"] * 3 + ["pending"] * (len(EXPECTED) - 3)
    files = {m.version: m.checksum for m in migrator.migrations()}
    for state in states:
        assert state.file_checksum == files[state.version]
        if state.state == "applied":
            assert state.applied_checksum == files[state.version]
            assert state.applied_at is not None and state.duration_ms is not None and state.duration_ms >= 0
        else:
            assert state.applied_checksum is None and state.applied_at is None


async def test_migrator_refuses_a_connection_inside_a_transaction(conn: Any) -> None:
    async with conn.transaction():
        with pytest.raises(UsageError, match="inside a transaction"):
            await Migrator(conn).up()


# --- checksums and consistency --------------------------------------------------------------------------------------


async def test_edited_applied_migration_is_refused_by_name(conn: Any, migrations_copy: Path) -> None:
    migrator = Migrator(conn, migrations_copy)
    await migrator.up(to=3)
    edited = migrations_copy / "002_protocol_handlers.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking comment\n")

    problems = await migrator.verify()
    assert [(p.version, p.kind) for p in problems] == [(2, "changed")]
    assert "002_protocol_handlers.sql" in problems[0].message
    assert "restore" in problems[0].message and "new migration" in problems[0].message

    with pytest.raises(MigrationVerifyError) as caught:
        await migrator.up()
    message = str(caught.value)
    assert "002_protocol_handlers.sql" in message and "number 002" in message
    assert "restore" in message
    assert await recorded_versions(conn) == [1, 2, 3], "up must not apply anything while verify fails"
    assert [s.state for s in await migrator.status()][:3] == ["applied", "changed", "applied"]

    shutil.copy(SHIPPED / "002_protocol_handlers.sql", edited)
    assert await migrator.verify() == []
    assert [m.version for m in await migrator.up()] == list(range(4, len(EXPECTED) + 1))


async def test_down_warns_when_the_migration_changed_since_applied(
    conn: Any, migrations_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrator = Migrator(conn, migrations_copy)
    await migrator.up(to=2)
    edited = migrations_copy / "002_protocol_handlers.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with caplog.at_level(logging.WARNING, logger="framework.adapters.migrator"):
        assert [m.version for m in await migrator.down(1)] == [2]
    assert any("002_protocol_handlers.sql changed after it was applied" in r.getMessage() for r in caplog.records)


async def test_missing_renamed_and_out_of_order_migrations(conn: Any, tmp_path: Path) -> None:
    full = tmp_path / "full"
    for n, table in enumerate(["a", "b", "c"], start=1):
        write_pair(full, f"00{n}_{table}", f"CREATE TABLE {table} (x int);", f"DROP TABLE {table};")
    await Migrator(conn, full).up()

    shorter = tmp_path / "shorter"
    shutil.copytree(full, shorter)
    for name in ("003_c.sql", "003_c.rollback.sql"):
        (shorter / name).unlink()
    (shorter / "002_b.sql").rename(shorter / "002_bee.sql")
    (shorter / "002_b.rollback.sql").rename(shorter / "002_bee.rollback.sql")
    migrator = Migrator(conn, shorter)
    problems = await migrator.verify()
    assert [(p.version, p.kind) for p in problems] == [(2, "renamed"), (3, "missing")]
    assert "002_bee.sql" in problems[0].message and "003_c" in problems[1].message
    states = [(s.version, s.name, s.state) for s in await migrator.status()]
    assert states == [(1, "a", "applied"), (2, "b", "missing"), (2, "bee", "pending"), (3, "c", "missing")]
    with pytest.raises(MigrationFilesError, match=r"cannot roll back 003_c: no rollback file"):
        await migrator.down(1)
    with pytest.raises(MigrationVerifyError):
        await migrator.up()

    # A migration merged from another branch under a number below the newest applied one.
    await conn.execute("DELETE FROM schema_migrations WHERE version = 2; DROP TABLE b;")
    problems = await Migrator(conn, full).verify()
    assert [(p.version, p.kind) for p in problems] == [(2, "out_of_order")]
    assert "renumber it after 003" in problems[0].message
    with pytest.raises(MigrationVerifyError, match=r"002_b\.sql is not applied but a later one"):
        await Migrator(conn, full).up()


# --- failures -------------------------------------------------------------------------------------------------------


async def test_a_failing_migration_leaves_nothing_and_names_file_and_position(conn: Any, tmp_path: Path) -> None:
    write_pair(tmp_path, "001_a", "CREATE TABLE a (x int);", "DROP TABLE a;")
    write_pair(
        tmp_path,
        "002_b",
        "CREATE TABLE b (x int);\nINSERT INTO b VALUES (1);\nCREATE TABLEE c (y int);\n",
        "DROP TABLE b;",
    )
    migrator = Migrator(conn, tmp_path)
    with pytest.raises(MigrationFailed) as caught:
        await migrator.up()
    error = caught.value
    assert isinstance(error, OnexError)
    assert (error.line, error.column, error.sqlstate) == (3, 8, "42601")
    message = str(error)
    assert f"{tmp_path / '002_b.sql'}:3:8: syntax error" in message
    assert "CREATE TABLEE c (y int);" in message and "was not applied" in message
    assert await recorded_versions(conn) == [1]
    assert await table_exists(conn, "a")
    assert not await table_exists(conn, "b"), "the statements before the error must be rolled back with it"


async def test_a_failing_rollback_keeps_the_migration_applied(conn: Any, tmp_path: Path) -> None:
    write_pair(tmp_path, "001_a", "CREATE TABLE a (x int);", "DROP TABLE a;\nDROP TABLE not_there;")
    migrator = Migrator(conn, tmp_path)
    await migrator.up()
    with pytest.raises(MigrationFailed, match=r'001_a.rollback.sql: table "not_there" does not exist') as caught:
        await migrator.down(1)
    assert "the migration stays applied" in str(caught.value)
    assert await recorded_versions(conn) == [1]
    assert await table_exists(conn, "a")


async def test_a_plpgsql_error_reports_the_query_inside_the_function(conn: Any, tmp_path: Path) -> None:
    write_pair(
        tmp_path,
        "001_a",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT x FROM nowhere); END $$;\n"
        "SELECT f();",
        "DROP FUNCTION f();",
    )
    with pytest.raises(MigrationFailed) as caught:
        await Migrator(conn, tmp_path).up()
    message = str(caught.value)
    assert 'relation "nowhere" does not exist' in message
    assert "internal query: (SELECT x FROM nowhere)" in message and "PL/pgSQL function f()" in message


# --- concurrency ----------------------------------------------------------------------------------------------------


async def _waiting_for_lock(observer: Any) -> int:
    return int(
        await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )


async def test_two_concurrent_ups_apply_each_migration_once(db_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    holder, first, second = [await asyncpg.connect(db_dsn) for _ in range(3)]
    try:
        # Holding the lock first makes both runs meet it, whichever the scheduler starts first.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        with caplog.at_level(logging.INFO, logger="framework.adapters.migrator"):
            runs = asyncio.gather(Migrator(first).up(), Migrator(second).up())
            for _ in range(200):
                if await _waiting_for_lock(holder) == 2:
                    break
                await asyncio.sleep(0.025)
            assert await _waiting_for_lock(holder) == 2, "both migrators should be waiting for the lock"
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            results = await runs
        assert sorted(len(r) for r in results) == [0, len(EXPECTED)]
        rows = await holder.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
        assert sorted((r["version"], r["n"]) for r in rows) == [(v, 1) for v in range(1, len(EXPECTED) + 1)]
        messages = [r.getMessage() for r in caplog.records]
        assert sum("waiting for the migration lock" in m for m in messages) == 2
        assert (
            sum(m.startswith(f"nothing to migrate: all {len(EXPECTED)} migrations are applied") for m in messages) == 1
        )
        held = await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert held == 0, "the lock must be released after up()"
    finally:
        for connection in (holder, first, second):
            await connection.close()


async def test_unguarded_concurrent_ups_apply_each_migration_once(db_dsn: str) -> None:
    first, second = await asyncpg.connect(db_dsn), await asyncpg.connect(db_dsn)
    try:
        results = await asyncio.gather(Migrator(first).up(), Migrator(second).up())
        assert sorted(len(r) for r in results) == [0, len(EXPECTED)]
        assert await recorded_versions(first) == list(range(1, len(EXPECTED) + 1))
    finally:
        await first.close()
        await second.close()


async def test_waiting_for_the_lock_times_out_with_the_holder_named(db_dsn: str) -> None:
    holder, waiter = await asyncpg.connect(db_dsn), await asyncpg.connect(db_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        await waiter.execute("SET lock_timeout = '42s'")
        holder_pid = holder.get_server_pid()
        with pytest.raises(MigrationError, match=rf"pid {holder_pid}\) held the migration lock for more than 0.2 s"):
            await Migrator(waiter, lock_timeout_s=0.2).up()
        assert await waiter.fetchval("SHOW lock_timeout") == "42s", "the caller's lock_timeout must be restored"
        assert not await table_exists(waiter, "schema_migrations")
    finally:
        await holder.close()
        await waiter.close()


# --- partitions -----------------------------------------------------------------------------------------------------


async def _partition_of(connection: Any, recorded_at: datetime) -> str:
    return str(
        await connection.fetchval(
            "SELECT tableoid::regclass::text FROM hash_metrics WHERE recorded_at = $1", recorded_at
        )
    )


async def _insert_metric(connection: Any, recorded_at: datetime, operation: str = "hash") -> None:
    await connection.execute(
        "INSERT INTO hash_metrics (recorded_at, operation, duration_ms) VALUES ($1, $2, 1.5)", recorded_at, operation
    )


async def test_partitions_are_created_ahead_and_old_ones_dropped(conn: Any) -> None:
    migrator = Migrator(conn)
    await migrator.up()
    now = datetime.now(UTC)
    months = [(now.year + (now.month - 1 + i) // 12, (now.month - 1 + i) % 12 + 1) for i in range(4)]
    current = [f"hash_metrics_p{y:04d}{m:02d}" for y, m in months]
    names = [name for name, _ in await migrator.partitions()]
    assert names == [*current, "hash_metrics_default"], "migration 003 prepares this month and the next three"

    created = await migrator.ensure_partitions(2, 3, as_of=datetime(2020, 1, 15, tzinfo=UTC))
    assert [(c.action, c.partition) for c in created] == [
        ("created", "hash_metrics_p202001"),
        ("created", "hash_metrics_p202002"),
        ("created", "hash_metrics_p202003"),
    ]
    assert created[0].range_start == datetime(2020, 1, 1, tzinfo=UTC)
    assert created[0].range_end == datetime(2020, 2, 1, tzinfo=UTC)

    old = datetime(2020, 1, 20, 12, tzinfo=UTC)
    older = datetime(2019, 6, 1, tzinfo=UTC)
    future = datetime(2099, 12, 31, tzinfo=UTC)
    for at in (old, older, future, now):
        await _insert_metric(conn, at)
    assert await _partition_of(conn, old) == "hash_metrics_p202001"
    assert await _partition_of(conn, older) == "hash_metrics_default"
    assert await _partition_of(conn, future) == "hash_metrics_default"
    assert await _partition_of(conn, now) == current[0]

    changes = await migrator.ensure_partitions(3, 12)
    assert [(c.action, c.partition) for c in changes] == [
        ("dropped", "hash_metrics_p202001"),
        ("dropped", "hash_metrics_p202002"),
        ("dropped", "hash_metrics_p202003"),
        ("purged", "hash_metrics_default"),
    ]
    assert changes[-1].detail is not None and changes[-1].detail.startswith("deleted 1 rows recorded before")
    assert not await table_exists(conn, "hash_metrics_p202001")
    remaining = {row["recorded_at"] for row in await conn.fetch("SELECT recorded_at FROM hash_metrics")}
    assert remaining == {future, now}
    assert await migrator.ensure_partitions(3, 12) == []


async def test_a_new_partition_takes_its_rows_from_the_default_partition(conn: Any) -> None:
    migrator = Migrator(conn)
    await migrator.up()
    early = datetime(2031, 5, 2, 3, 4, 5, tzinfo=UTC)
    await _insert_metric(conn, early, "early")
    assert await _partition_of(conn, early) == "hash_metrics_default"

    changes = await migrator.ensure_partitions(0, 1200, as_of=datetime(2031, 5, 20, tzinfo=UTC))
    assert [(c.action, c.partition, c.detail) for c in changes] == [
        ("created", "hash_metrics_p203105", "moved 1 rows from hash_metrics_default")
    ]
    assert await _partition_of(conn, early) == "hash_metrics_p203105"
    # The attached partition has the table's indexes and checks, so it behaves like one created directly.
    indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'hash_metrics_p203105'")
    assert indexes == 3
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO hash_metrics (recorded_at, operation, duration_ms) VALUES ('2031-05-03', 'x', -1)"
        )


async def test_partition_bounds_do_not_depend_on_session_settings(conn: Any) -> None:
    migrator = Migrator(conn)
    await migrator.up()
    await conn.execute("SET TimeZone = 'America/New_York'; SET DateStyle = 'SQL, DMY'")
    # 22:00 in New York on 30 April is already May in UTC.
    changes = await migrator.ensure_partitions(0, 1200, as_of=datetime.fromisoformat("2032-04-30T22:00:00-05:00"))
    assert [c.partition for c in changes] == ["hash_metrics_p203205"]
    assert changes[0].range_start == datetime(2032, 5, 1, tzinfo=UTC)
    # And the drop path reads bounds written in these settings back correctly.
    dropped = await migrator.ensure_partitions(0, 1, as_of=datetime(2032, 7, 1, tzinfo=UTC))
    assert ("dropped", "hash_metrics_p203205") in [(c.action, c.partition) for c in dropped]


async def test_partition_maintenance_rejects_bad_arguments(conn: Any) -> None:
    migrator = Migrator(conn)
    with pytest.raises(MigrationError, match="run `onex migrate up` first"):
        await migrator.ensure_partitions()
    await migrator.up(to=3)
    with pytest.raises(UsageError, match="months_ahead must be an integer from 0 to 120, got -1"):
        await migrator.ensure_partitions(-1)
    with pytest.raises(UsageError, match="keep_months"):
        await migrator.ensure_partitions(3, 0)
    with pytest.raises(UsageError, match="timezone-aware"):
        await migrator.ensure_partitions(as_of=datetime(2030, 1, 1))  # naive on purpose
    with pytest.raises(asyncpg.InvalidParameterValueError, match="keep_months must be between 1 and 1200, got 0"):
        await conn.fetch("SELECT * FROM onex_maintain_hash_metrics_partitions(3, 0)")


# --- data -----------------------------------------------------------------------------------------------------------


async def test_protocol_handlers_are_seeded_with_the_file_families(conn: Any) -> None:
    await Migrator(conn).up(to=2)
    rows = await conn.fetch("SELECT handler_type, file_extensions FROM protocol_handlers ORDER BY handler_type")
    assert {r["handler_type"]: r["file_extensions"] for r in rows} == {
        "archive": ["zip", "tar", "gz", "rar", "7z"],
        "audio": ["mp3", "wav", "flac", "aac", "ogg"],
        "document": ["pdf", "doc", "docx", "txt", "md"],
        "image": ["jpg", "jpeg", "png", "gif", "bmp", "webp"],
        "video": ["mp4", "avi", "mkv", "mov", "webm"],
    }
    assert await conn.fetchval("SELECT handler_type FROM protocol_handlers WHERE file_extensions @> ARRAY['mkv']") == (
        "video"
    )


async def test_stamp_constraints(conn: Any) -> None:
    await Migrator(conn).up(to=1)
    insert = "INSERT INTO metadata_stamps (file_hash, namespace, file_size, op_id) VALUES ($1, $2, $3, $4)"
    await conn.execute(insert, "0" * 64, "ns", 0, uuid.uuid4())
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, "0" * 64, "ns", 1, uuid.uuid4())
    await conn.execute(insert, "0" * 64, "other", 1, uuid.uuid4())
    for bad_hash, size in (("0" * 63, 1), ("A" * 64, 1), ("0" * 64 + "'--", 1), ("1" * 64, -1)):
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, bad_hash, "ns2", size, uuid.uuid4())


async def test_injection_looking_strings_are_stored_literally(conn: Any) -> None:
    await Migrator(conn).up()
    inserts = {
        "metadata_stamps": (
            "INSERT INTO metadata_stamps (file_hash, namespace, file_path, file_size, content_type, protocol_version, "
            "op_id, metadata_version, stamp_data) "
            "VALUES ($7, $1, $2, 1, $3, $4, $8, $5, jsonb_build_object('k', $6::text)) "
            "RETURNING namespace, file_path, content_type, protocol_version, metadata_version, stamp_data->>'k'",
            6,
        ),
        "protocol_handlers": (
            "INSERT INTO protocol_handlers (handler_type, file_extensions) VALUES ($1, ARRAY[$2::text]) "
            "RETURNING handler_type, file_extensions[1]",
            2,
        ),
        "hash_metrics": (
            "INSERT INTO hash_metrics (operation, namespace, error, duration_ms) VALUES ($1, $2, $3, 0) "
            "RETURNING operation, namespace, error",
            3,
        ),
        "event_logs": (
            "INSERT INTO event_logs (event_id, topic, event_type, direction, status, error) "
            "VALUES (gen_random_uuid(), $1, $2, 'in', $3, $4) RETURNING topic, event_type, status, error",
            4,
        ),
        "workflow_executions": (
            "INSERT INTO workflow_executions (workflow_id, workflow_name, state, error) "
            "VALUES (gen_random_uuid(), $1, $2, $3) RETURNING workflow_name, state, error",
            3,
        ),
        "fsm_transitions": (
            "INSERT INTO fsm_transitions (machine, instance_id, sequence, transition, trigger, from_state, to_state) "
            "VALUES ($1, $2, 1, $3, $4, $5, $6) RETURNING machine, instance_id, transition, trigger, from_state, "
            "to_state",
            6,
        ),
        "bridge_states": (
            "INSERT INTO bridge_states (namespace, aggregation_type, group_key) VALUES ($1, $2, $3) "
            "RETURNING namespace, aggregation_type, group_key",
            3,
        ),
        "node_registrations": (
            "INSERT INTO node_registrations (node_id, node_type, node_version, contract_hash) "
            "VALUES ($1, 'EFFECT', $2, $3) RETURNING node_id, node_version, contract_hash",
            3,
        ),
        "outbox": (
            "INSERT INTO outbox (topic, value, last_error) VALUES ($1, convert_to($2, 'UTF8'), $3) "
            "RETURNING topic, convert_from(value, 'UTF8'), last_error",
            3,
        ),
        "processed_events": (
            "INSERT INTO processed_events (consumer_group, event_id) VALUES ($1, gen_random_uuid()) "
            "RETURNING consumer_group",
            1,
        ),
        "dead_letters": (
            "INSERT INTO dead_letters (topic, original_topic, value, error, attempts, consumer_group) "
            "VALUES ($1, $2, convert_to($3, 'UTF8'), $4, 3, $5) "
            "RETURNING topic, original_topic, convert_from(value, 'UTF8'), error, consumer_group",
            5,
        ),
    }
    tables_before = await catalog(conn)
    for n, text in enumerate(INJECTIONS):
        for table, (sql, fields) in inserts.items():
            values = [f"{text}#{table}#{i}" for i in range(fields)]
            extra: list[Any] = [f"{n:064x}", uuid.uuid4()] if table == "metadata_stamps" else []
            row = await conn.fetchrow(sql, *values, *extra)
            assert list(row) == values, table
    workflow_id = await conn.fetchval("SELECT workflow_id FROM workflow_executions LIMIT 1")
    step = await conn.fetchval(
        "INSERT INTO workflow_steps (workflow_id, step, error) VALUES ($1, $2, $2) RETURNING step",
        workflow_id,
        INJECTIONS[0],
    )
    assert step == INJECTIONS[0]
    for table in inserts:
        expected = len(INJECTIONS) + (5 if table == "protocol_handlers" else 0)
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == expected, table
    assert await catalog(conn) == tables_before, "no string may have changed the schema"
    assert await recorded_versions(conn) == list(range(1, len(EXPECTED) + 1))


async def test_sql_in_a_migration_file_is_run_as_written(conn: Any, tmp_path: Path) -> None:
    literal = "Robert'); DROP TABLE notes; --"
    quoted = literal.replace("'", "''")
    write_pair(
        tmp_path,
        "001_notes",
        f"CREATE TABLE notes (body text);\nINSERT INTO notes VALUES ('{quoted}');\n",
        "DROP TABLE notes;",
    )
    await Migrator(conn, tmp_path).up()
    assert await conn.fetchval("SELECT body FROM notes") == literal
    assert await conn.fetchval("SELECT name FROM schema_migrations") == "notes"
