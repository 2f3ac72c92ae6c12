"""PostgresStore on real PostgreSQL: pool, errors, the pool warning, reconnection, the circuit breaker (unit tests
with a fake clock, and a server restarted under load), stats and migrate. The port-level behaviour (commit,
rollback, savepoints, claim_event, enqueue) is in tests/conformance/test_store.py.

Each test gets its own database ``test_<uuid>``, migrated with the Migrator and dropped afterwards; the helpers
here are shared with the other store tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from framework.adapters.circuit_breaker import CircuitBreaker, CircuitState
from framework.adapters.embedded_kafka import free_loopback_port
from framework.adapters.embedded_postgres import EmbeddedPostgres
from framework.adapters.migrator import MigrationError
from framework.adapters.postgres_store import PostgresStore, is_connection_failure
from framework.errors import CircuitOpenError, QueryError, RetriablePortError, UsageError
from tests.pg import WAIT_S, migrated_database, open_store, wait_for


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_store(postgres_dsn) as opened:
        yield opened


# --- the circuit breaker, with a clock the test moves -----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_breaker(clock: FakeClock, threshold: int = 3, reset: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(
        "db", failure_threshold=threshold, reset_timeout_s=reset, clock=clock, wall_clock=lambda: 1_700_000_000.0
    )


def state_of(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state  # read through a call: mypy would otherwise keep the state narrowed by an earlier assert


def test_breaker_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(2):
        assert breaker.allow() is False
        breaker.record_failure(ConnectionRefusedError("refused"))
    assert breaker.state is CircuitState.CLOSED
    breaker.allow()
    breaker.record_failure(ConnectionRefusedError("refused"))
    assert state_of(breaker) is CircuitState.OPEN

    clock.now += 1.0
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow()
    message = str(info.value)
    assert "circuit 'db' is open after 3 consecutive connection failures" in message
    assert "ConnectionRefusedError: refused" in message
    # until when: the wall-clock time the reset timeout ends (fake wall clock + 4 s), and the seconds left
    assert "until 2023-11-14T22:13:24.000Z (in 4.00 s)" in message
    assert info.value.retriable and info.value.retry_after_s == pytest.approx(4.0)
    stats = breaker.stats()
    assert stats["state"] == "open" and stats["rejected_total"] == 1 and stats["opened_total"] == 1


def test_breaker_success_resets_the_count_of_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(5):
        breaker.record_failure("boom")
        breaker.record_failure("boom")
        breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.stats()["consecutive_failures"] == 0


def test_breaker_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1)
    breaker.record_failure("down")
    clock.now += 5.0
    assert breaker.allow() is True  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError, match="half-open"):
        breaker.allow()  # a second caller while the probe is in flight
    breaker.record_success()
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow() is False


def test_breaker_a_failed_probe_opens_it_again_for_a_full_reset_timeout() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=2, reset=5.0)
    breaker.record_failure("down")
    breaker.record_failure("down")
    clock.now += 5.0
    assert breaker.allow() is True
    clock.now += 1.0
    breaker.record_failure("still down")
    assert breaker.state is CircuitState.OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpenError, match=r"in 0\.10 s"):
        breaker.allow()
    clock.now += 0.1
    assert breaker.allow() is True
    assert breaker.stats()["opened_total"] == 2


def test_breaker_a_probe_without_verdict_frees_the_slot_and_a_silent_one_is_replaced() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout_s=1.0, probe_timeout_s=10.0, clock=clock)
    breaker.record_failure("down")
    clock.now += 1.0
    assert breaker.allow() is True
    breaker.release_probe()
    assert breaker.allow() is True  # the next caller probes
    with pytest.raises(CircuitOpenError):
        breaker.allow()
    clock.now += 10.0
    assert breaker.allow() is True  # the silent probe is given up on


def test_breaker_stale_failures_while_open_do_not_push_the_probe_back() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1, reset=5.0)
    breaker.record_failure("down")
    clock.now += 4.0
    breaker.record_failure("a call started before the circuit opened")
    clock.now += 1.0
    assert breaker.allow() is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be an integer >= 1, got 0"),
        ({"reset_timeout_s": 0}, "reset_timeout_s must be > 0 seconds, got 0"),
        ({"probe_timeout_s": -1.0}, "probe_timeout_s must be > 0 seconds or None, got -1.0"),
    ],
)
def test_breaker_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        CircuitBreaker("db", **kwargs)


# --- statements, errors ----------------------------------------------------------------------------------------


async def test_fetch_variants_return_plain_values_and_jsonb_round_trips(store: PostgresStore) -> None:
    document = {"nested": {"list": [1, 2.5, "ü", None, True]}, "empty": {}}
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE docs (id int PRIMARY KEY, body jsonb NOT NULL)")
        await tx.execute("INSERT INTO docs VALUES ($1, $2)", 1, document)
        assert await tx.fetch("SELECT id, body FROM docs") == [{"id": 1, "body": document}]
        assert await tx.fetchrow("SELECT body FROM docs WHERE id = $1", 1) == {"body": document}
        assert await tx.fetchrow("SELECT body FROM docs WHERE id = $1", 2) is None
        assert await tx.fetchval("SELECT body -> 'nested' -> 'list' -> 1 FROM docs") == 2.5


async def test_bulk_paths_write_every_row(store: PostgresStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE bulk (id int PRIMARY KEY, note text)")
        await tx.executemany("INSERT INTO bulk VALUES ($1, $2)", [(n, f"many {n}") for n in range(1000)])
        copied = await tx.copy_records("bulk", [(n, f"copy {n}") for n in range(1000, 3000)], ["id", "note"])
    assert copied == 2000
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM bulk") == 3000
        assert await tx.fetchval("SELECT note FROM bulk WHERE id = 2999") == "copy 2999"


async def test_a_refused_statement_is_a_query_error_with_its_sqlstate_and_constraint(store: PostgresStore) -> None:
    event_id = uuid.uuid4()
    insert = "INSERT INTO processed_events (consumer_group, event_id) VALUES ('g', $1)"
    async with store.transaction() as tx:
        await tx.execute(insert, event_id)
    with pytest.raises(QueryError) as info:
        async with store.transaction() as tx:
            await tx.execute(insert, event_id)
    assert info.value.sqlstate == "23505"
    assert info.value.constraint == "processed_events_pkey"
    assert not info.value.retriable
    assert "duplicate key" in str(info.value)
    assert store.stats()["query_errors"] == 1


async def test_a_block_that_swallows_a_failed_statement_is_rolled_back_with_a_query_error(
    store: PostgresStore,
) -> None:
    with pytest.raises(QueryError, match="the statement 'SELECT 1/0' failed inside it"):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO outbox (topic, value) VALUES ('kept?', '\\x00')")
            with contextlib.suppress(QueryError):
                await tx.execute("SELECT 1/0")
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_transaction_cannot_be_used_after_it_ended(store: PostgresStore) -> None:
    async with store.transaction() as tx:
        pass
    with pytest.raises(UsageError, match="the transaction has already ended"):
        await tx.execute("SELECT 1")


async def test_a_stopped_store_refuses_transactions_with_a_usage_error(postgres_dsn: str) -> None:
    async with migrated_database(postgres_dsn) as dsn:
        store = PostgresStore(dsn, min_size=1, max_size=2)
        with pytest.raises(UsageError, match=r"cannot open a transaction: PostgreSQL store .* is new"):
            async with store.transaction():
                pass
        await store.start()
        await store.stop()
        await store.stop()
        with pytest.raises(UsageError, match="is stopped"):
            async with store.transaction():
                pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size": 5, "max_size": 2}, "0 <= min_size <= max_size, got 5..2"),
        ({"acquire_timeout_s": 0}, "acquire_timeout_s must be > 0 seconds"),
        ({"pool_warning_ratio": 1.5}, r"pool_warning_ratio must be in \(0, 1\]"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        PostgresStore("postgresql://u@127.0.0.1:5432/db", **kwargs)


def test_a_dsn_that_is_not_a_postgres_uri_is_refused_without_showing_its_password() -> None:
    with pytest.raises(UsageError) as info:
        PostgresStore("mysql://user:secret@127.0.0.1/db")
    assert "secret" not in str(info.value)


# --- the pool ---------------------------------------------------------------------------------------------------


async def test_the_pool_warns_when_over_90_percent_used_at_most_once_per_interval(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="framework.adapters.postgres_store")
    async with open_store(postgres_dsn, min_size=0, max_size=2, pool_warning_interval_s=3600) as small:
        async with hold_connections(small, 1):
            assert not _pool_warnings(caplog)  # 1 of 2 is 50%
        async with hold_connections(small, 2):
            assert small.stats()["pool"] == {"size": 2, "used": 2, "idle": 0, "free": 0, "min": 0, "max": 2}
        (record,) = _pool_warnings(caplog)
        assert record.levelno == logging.WARNING
        assert record.getMessage() == "postgres pool over 90% used: 2 of 2 connections in use"
        assert record.__dict__["pool_used"] == 2 and record.__dict__["pool_max"] == 2
        # Rate-limited: the same pressure again within the interval logs nothing more.
        async with hold_connections(small, 2):
            pass
        assert len(_pool_warnings(caplog)) == 1
        assert small.stats()["pool_warnings"] == 1


@contextlib.asynccontextmanager
async def hold_connections(store: PostgresStore, count: int) -> AsyncIterator[None]:
    """``count`` transactions held open at once, each in a task of its own (in one task they would nest)."""
    opened = asyncio.Semaphore(0)
    release = asyncio.Event()

    async def hold() -> None:
        async with store.transaction() as tx:
            await tx.execute("SELECT 1")
            opened.release()
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    try:
        for _ in range(count):
            await asyncio.wait_for(opened.acquire(), WAIT_S)
        yield
    finally:
        release.set()
        await asyncio.gather(*tasks)


def _pool_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("postgres pool over")]


async def test_an_exhausted_pool_is_a_retriable_error_naming_the_pool_size(postgres_dsn: str) -> None:
    async with (
        open_store(postgres_dsn, min_size=1, max_size=1, acquire_timeout_s=0.2) as tiny,
        hold_connections(tiny, 1),
    ):
        with pytest.raises(RetriablePortError, match="all 1 are in use; raise max_size"):
            async with tiny.transaction():
                pass
        assert tiny.stats()["acquire_timeouts"] == 1
        assert tiny.breaker.state is CircuitState.CLOSED  # a busy pool is not a dead server


async def test_a_connection_killed_inside_a_transaction_is_retriable_and_the_pool_reconnects(
    store: PostgresStore, postgres_dsn: str
) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE kept (id int)")
    with pytest.raises(RetriablePortError, match="lost the connection"):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO kept VALUES (1)")
            pid = await tx.fetchval("SELECT pg_backend_pid()")
            admin = await asyncpg.connect(store.dsn)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await tx.execute("INSERT INTO kept VALUES (2)")
    # The broken connection was dropped; the next transaction gets a working one.
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM kept") == 0
        assert await tx.fetchval("SELECT pg_backend_pid()") != pid
    stats = store.stats()
    assert stats["connection_failures"] == 1 and stats["circuit"]["state"] == "closed"


async def test_starting_against_a_closed_port_is_a_retriable_error() -> None:
    port = free_loopback_port()
    store = PostgresStore(f"postgresql://u:pw@127.0.0.1:{port}/db", min_size=1, max_size=2, connect_timeout_s=2)
    with pytest.raises(RetriablePortError, match=rf"PostgreSQL at postgresql://u@127.0.0.1:{port}/db is unreachable"):
        await store.start()
    await store.stop()


def test_connection_failures_are_told_apart_from_statement_errors() -> None:
    assert is_connection_failure(ConnectionRefusedError())
    assert is_connection_failure(asyncpg.AdminShutdownError())
    assert is_connection_failure(asyncpg.CannotConnectNowError())
    assert is_connection_failure(asyncpg.ConnectionDoesNotExistError())
    assert is_connection_failure(asyncpg.InterfaceError("cannot perform operation: connection is closed"))
    assert not is_connection_failure(TimeoutError())
    assert not is_connection_failure(asyncpg.UniqueViolationError())
    assert not is_connection_failure(asyncpg.QueryCanceledError())
    assert not is_connection_failure(asyncpg.InterfaceError("another operation is in progress"))


_PREPARED_CLAIMS = """
SELECT name, generic_plans + custom_plans AS executions FROM pg_prepared_statements
WHERE statement LIKE 'INSERT INTO processed_events %'
"""


async def _claim_three_times(store: PostgresStore) -> tuple[set[int], list[dict[str, Any]]]:
    """``claim_event`` in three transactions, then the server's view of the named prepared statements of its SQL on
    the session that ran them (pg_prepared_statements shows the current session's only)."""
    sessions: set[int] = set()
    for _ in range(3):
        async with store.transaction() as tx:
            sessions.add(await tx.fetchval("SELECT pg_backend_pid()"))
            assert await tx.claim_event("prepared", uuid.uuid4())
    async with store.transaction() as tx:
        sessions.add(await tx.fetchval("SELECT pg_backend_pid()"))
        return sessions, await tx.fetch(_PREPARED_CLAIMS)


async def test_statements_are_prepared_once_per_connection_and_reused(postgres_dsn: str) -> None:
    # One connection, so every transaction runs on the same server session.
    async with open_store(postgres_dsn, min_size=1, max_size=1) as one:
        sessions, prepared = await _claim_three_times(one)
    assert len(sessions) == 1
    # asyncpg prepared claim_event's statement once, as a named server-side statement, and executed it three times
    # (the server counts a plan per execution: custom for the first five, then perhaps generic).
    assert len(prepared) == 1, prepared
    assert prepared[0]["name"].startswith("__asyncpg_stmt_") and prepared[0]["executions"] == 3

    # The control: without the statement cache, asyncpg uses unnamed statements, and nothing stays prepared.
    async with open_store(postgres_dsn, min_size=1, max_size=1, statement_cache_size=0) as uncached:
        sessions, prepared = await _claim_three_times(uncached)
    assert len(sessions) == 1 and prepared == []


async def test_migrate_applies_the_shipped_migrations_once(postgres_dsn: str) -> None:
    async with (
        migrated_database(postgres_dsn, migrate=False) as dsn,
        PostgresStore(dsn, min_size=1, max_size=2) as fresh,
    ):
        applied = await fresh.migrate()
        assert [m.label for m in applied][:1] == ["001_metadata_stamps"]
        assert len(applied) >= 12
        assert await fresh.migrate() == []
        async with fresh.transaction() as tx:
            assert await tx.fetchval("SELECT to_regclass('outbox') IS NOT NULL")


# --- partition maintenance and the event log retention -----------------------------------------------------------


def month_start(offset: int) -> datetime:
    """Midnight UTC of the first day of the month ``offset`` months from this one."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_of(month: datetime) -> str:
    return f"hash_metrics_p{month:%Y%m}"


async def relation_exists(store: PostgresStore, relation: str) -> bool:
    async with store.transaction() as tx:
        return bool(await tx.fetchval("SELECT to_regclass($1) IS NOT NULL", relation))


async def count_rows(store: PostgresStore, sql: str, *args: Any) -> int:
    async with store.transaction() as tx:
        return int(await tx.fetchval(sql, *args))


async def test_maintain_partitions_creates_by_default_and_drops_only_with_a_retention(store: PostgresStore) -> None:
    old, older, coming = month_start(-20), month_start(-30), partition_of(month_start(1))
    async with store.transaction() as tx:
        # The partition of a month 20 months ago (the function with as_of then, and the longest retention).
        await tx.fetch("SELECT * FROM onex_maintain_hash_metrics_partitions(0, 1200, $1)", old + timedelta(days=2))
        await tx.execute(f'DROP TABLE "{coming}"')
        # One row in that partition, one of a month without a partition (in the default partition).
        await tx.execute(
            "INSERT INTO hash_metrics (recorded_at, operation, duration_ms) VALUES ($1, 'hash', 1), ($2, 'hash', 1)",
            old + timedelta(days=1),
            older + timedelta(days=1),
        )

    changes = await store.maintain_partitions()
    assert [(c.action, c.partition) for c in changes] == [("created", coming)]
    assert await relation_exists(store, partition_of(old)), "the default maintenance dropped an old partition"
    assert await count_rows(store, "SELECT count(*) FROM hash_metrics") == 2
    assert await store.maintain_partitions() == []

    # With a retention, as `onex db partitions --keep 12` does, both old months go.
    changes = await store.maintain_partitions(keep_months=12)
    assert [(c.action, c.partition) for c in changes] == [
        ("dropped", partition_of(old)),
        ("purged", "hash_metrics_default"),
    ]
    assert not await relation_exists(store, partition_of(old))
    assert await count_rows(store, "SELECT count(*) FROM hash_metrics") == 0


async def test_create_only_maintenance_changes_nothing_rather_than_remove_a_century_old_row(
    store: PostgresStore,
) -> None:
    coming = partition_of(month_start(1))
    async with store.transaction() as tx:
        await tx.execute(f'DROP TABLE "{coming}"')
        await tx.execute(
            "INSERT INTO hash_metrics (recorded_at, operation, duration_ms) "
            "VALUES ('1901-03-01 00:00:00+00', 'hash', 1)"
        )
    with pytest.raises(MigrationError, match=r"would have removed data even keeping 1200 months \(purged "):
        await store.maintain_partitions()
    # Rolled back as a whole: the row is kept, and the partition the same call created is gone again.
    assert await count_rows(store, "SELECT count(*) FROM hash_metrics") == 1
    assert not await relation_exists(store, coming)


async def insert_event_logs(store: PostgresStore, count: int, age: timedelta, topic: str = "test.retention") -> None:
    async with store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO event_logs (event_id, topic, event_type, direction, status, started_at) "
            "VALUES ($1, $2, 'test', 'in', 'handled', now() - $3::interval)",
            [(uuid.uuid4(), topic, age) for _ in range(count)],
        )


async def test_prune_event_logs_deletes_the_older_rows_chunk_by_chunk(store: PostgresStore) -> None:
    await insert_event_logs(store, 25, timedelta(days=8))
    await insert_event_logs(store, 5, timedelta(days=6))
    chunks: list[int] = []
    assert await store.prune_event_logs(timedelta(days=7), chunk_size=10, on_chunk=chunks.append) == 25
    assert chunks == [10, 10, 5]
    assert await count_rows(store, "SELECT count(*) FROM event_logs") == 5
    assert await count_rows(store, "SELECT count(*) FROM event_logs WHERE started_at < now() - interval '7 days'") == 0

    # Nothing left to delete: one empty chunk, not reported.
    assert await store.prune_event_logs(timedelta(days=7), chunk_size=10, on_chunk=chunks.append) == 0
    assert chunks == [10, 10, 5]

    # A backlog that is an exact multiple of the chunk ends with an empty chunk.
    await insert_event_logs(store, 20, timedelta(days=30))
    chunks.clear()
    assert await store.prune_event_logs(timedelta(days=7), chunk_size=10, on_chunk=chunks.append) == 20
    assert chunks == [10, 10]
    assert await count_rows(store, "SELECT count(*) FROM event_logs") == 5


async def test_each_chunk_of_prune_event_logs_commits_by_itself(store: PostgresStore) -> None:
    await insert_event_logs(store, 25, timedelta(days=8))

    def stop(rows: int) -> None:
        raise RuntimeError(f"stopped after a chunk of {rows}")

    with pytest.raises(RuntimeError, match="stopped after a chunk of 10"):
        await store.prune_event_logs(timedelta(days=7), chunk_size=10, on_chunk=stop)
    assert await count_rows(store, "SELECT count(*) FROM event_logs") == 15, "the first chunk was not committed"


async def test_prune_event_logs_refuses_bad_arguments(store: PostgresStore) -> None:
    for older_than in (timedelta(0), timedelta(seconds=-1), 3600):
        with pytest.raises(UsageError, match="older_than must be a positive timedelta"):
            await store.prune_event_logs(older_than)  # type: ignore[arg-type]
    for chunk_size in (0, -5, 2.5, True):
        with pytest.raises(UsageError, match="chunk_size must be an integer >= 1"):
            await store.prune_event_logs(timedelta(days=1), chunk_size=chunk_size)  # type: ignore[arg-type]
    async with store.transaction():
        with pytest.raises(UsageError, match="outside a transaction of this store"):
            await store.prune_event_logs(timedelta(days=1))


# --- PostgreSQL restarted under load ----------------------------------------------------------------------------


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A data dir outside pytest's 0700 temp tree (as root, the server account must traverse its parents)."""
    parent = Path(tempfile.mkdtemp(prefix="onex-test-store-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.postgres
async def test_postgres_restarted_under_load_opens_the_circuit_recovers_and_loses_no_acknowledged_write(
    pg_dir: Path,
) -> None:
    servers = [EmbeddedPostgres(pg_dir)]
    await servers[0].start()
    port, dsn = servers[0].port, servers[0].dsn
    store = PostgresStore(dsn, min_size=2, max_size=8, failure_threshold=3, reset_timeout_s=0.2, connect_timeout_s=2.0)
    acknowledged: list[tuple[int, int]] = []
    refused: list[BaseException] = []
    stop = asyncio.Event()

    async def writer(number: int) -> None:
        sequence = 0
        while not stop.is_set():
            sequence += 1  # a fresh row every time: a retry after an unknown outcome must not collide
            try:
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO load_writes (writer, n) VALUES ($1, $2)", number, sequence)
            except RetriablePortError as exc:
                refused.append(exc)
                await asyncio.sleep(0.02)
            else:
                acknowledged.append((number, sequence))

    writers: list[asyncio.Task[None]] = []
    try:
        await store.start()
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE load_writes (writer int, n int, PRIMARY KEY (writer, n))")
        writers = [asyncio.create_task(writer(n)) for n in range(4)]
        await wait_for(lambda: len(acknowledged) >= 100, "writes before the restart")

        await servers[0].stop()
        await wait_for(lambda: store.breaker.state is CircuitState.OPEN, "the circuit to open")
        before_restart = len(acknowledged)

        servers.append(EmbeddedPostgres(pg_dir, port=port))
        await servers[1].start()
        await wait_for(lambda: len(acknowledged) >= before_restart + 100, "writes after the restart")
        assert store.breaker.state is CircuitState.CLOSED
    finally:
        stop.set()
        await asyncio.gather(*writers, return_exceptions=True)
        await store.stop()
        for server in reversed(servers):
            await server.stop()

    assert refused, "no write failed while the server was down"
    circuit = store.stats()["circuit"]
    assert circuit["opened_total"] >= 1 and circuit["rejected_total"] >= 1
    async with EmbeddedPostgres(pg_dir) as check:
        connection = await asyncpg.connect(check.dsn)
        try:
            stored = {(r["writer"], r["n"]) for r in await connection.fetch("SELECT writer, n FROM load_writes")}
        finally:
            await connection.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes are not in the table, e.g. {sorted(missing)[:5]}"
