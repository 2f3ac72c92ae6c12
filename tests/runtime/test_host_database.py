"""The host and its PostgreSQL store: migrations on start, the pool sizes of the settings, the circuit breaker in
/metrics, and the periodic database maintenance (hash_metrics partitions created, never dropped; the event log
retention). On the session's real PostgreSQL, each test on a fresh database; the bus is the in-memory one (Kafka
plays no part here)."""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from framework.adapters.circuit_breaker import CircuitState
from framework.adapters.embedded_kafka import free_loopback_port
from framework.adapters.migrator import discover
from framework.adapters.postgres_store import PostgresStore
from framework.contract.spec import Contract
from framework.contract.validate import load_contract
from framework.errors import CircuitOpenError, RetriablePortError
from framework.runtime.config import Settings
from framework.runtime.host import Host
from tests.adapters.test_migrator import ALTERING, EXPECTED
from tests.adapters.test_postgres_store import hold_connections
from tests.pg import migrated_database, wait_for

#: An EFFECT node whose one effect reads the database: enough for the host to open a store, migrate and verify.
LEDGER = """
contract_version: "1.0"
name: ledger
version: {major: 1, minor: 0, patch: 0}
node_type: EFFECT
effects:
  - name: handler_of
    adapter: postgres
    table: protocol_handlers
    operation: select
    key: [handler_type]
    columns: {handler_type: text, is_active: boolean}
"""


@pytest.fixture
def ledger(tmp_path: Path) -> Contract:
    path = tmp_path / "ledger.yaml"
    path.write_text(textwrap.dedent(LEDGER), encoding="utf-8")
    return load_contract(path)


def settings_for(tmp_path: Path, dsn: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "service_port": 0,
        "data_dir": tmp_path / "data",
        "bus": "memory",
        "postgres_dsn": dsn,
        "db_pool_min": 1,
        "db_pool_max": 4,
        "partition_maintenance_s": 0,
        "event_log_retention_s": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def get_metrics(host: Host) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{host.endpoints.http}/metrics") as response:
        assert response.status == 200
        return await response.text()


def sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, if any) in a rendered /metrics text."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"no sample {name} in:\n{text}"
    return float(match[1])


def month_start(months_ahead: int) -> datetime:
    """Midnight UTC of the first day of the month ``months_ahead`` months from this one (negative: before it)."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + months_ahead
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def month_partition(months_ahead: int) -> str:
    return f"hash_metrics_p{month_start(months_ahead):%Y%m}"


async def exists(connection: asyncpg.Connection, relation: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", relation))


# --- migrations on start ----------------------------------------------------------------------------------------


async def test_a_host_started_on_an_empty_database_applies_the_shipped_migrations(
    postgres_dsn: str, tmp_path: Path, ledger: Contract
) -> None:
    async with migrated_database(postgres_dsn, migrate=False) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            assert not await exists(connection, "schema_migrations"), "the database starts empty"
            async with Host([ledger], settings_for(tmp_path, dsn)) as host:
                assert host.ready
            rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
                (m.version, m.name, m.checksum) for m in discover()
            ]
            for table in [name for name in EXPECTED if name not in ALTERING]:
                assert await exists(connection, table), f"table {table} was not created"
            columns = await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'workflow_executions'"
            )
            assert {"owner", "lease_expires_at"} <= {c["column_name"] for c in columns}, "013 altered the table"
        finally:
            await connection.close()


# --- the pool -----------------------------------------------------------------------------------------------------


def test_the_pool_defaults_are_10_and_50() -> None:
    settings = Settings.load({})
    assert (settings.db_pool_min, settings.db_pool_max) == (10, 50)
    assert (Settings().db_pool_min, Settings().db_pool_max) == (10, 50)


async def test_a_host_opens_a_pool_of_the_configured_size(postgres_dsn: str, tmp_path: Path, ledger: Contract) -> None:
    async with (
        migrated_database(postgres_dsn) as dsn,
        Host([ledger], settings_for(tmp_path, dsn, db_pool_min=1, db_pool_max=3)) as host,
    ):
        store = host.store
        assert store is not None
        pool = store.stats()["pool"]
        assert (pool["min"], pool["max"]) == (1, 3)
        async with hold_connections(store, 3):
            assert store.stats()["pool"]["size"] == 3
            # A fourth transaction finds no free connection: the pool does not grow past the maximum.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5), store.transaction():
                    pass
            assert store.stats()["pool"]["size"] == 3
            text = await get_metrics(host)
        assert sample(text, "onex_db_pool_connections_max") == 3
        assert sample(text, "onex_db_pool_connections") == 3
        assert sample(text, "onex_db_pool_connections_in_use") >= 3


async def test_a_host_with_the_default_settings_has_a_pool_of_10_to_50(
    postgres_dsn: str, tmp_path: Path, ledger: Contract
) -> None:
    defaults = Settings()
    async with (
        migrated_database(postgres_dsn) as dsn,
        Host(
            [ledger],
            settings_for(tmp_path, dsn, db_pool_min=defaults.db_pool_min, db_pool_max=defaults.db_pool_max),
        ) as host,
    ):
        assert host.store is not None
        pool = host.store.stats()["pool"]
        assert (pool["min"], pool["max"], pool["size"]) == (10, 50, 10)


# --- the circuit breaker in /metrics --------------------------------------------------------------------------


async def test_metrics_show_a_closed_circuit_and_its_counters(
    postgres_dsn: str, tmp_path: Path, ledger: Contract
) -> None:
    async with migrated_database(postgres_dsn) as dsn, Host([ledger], settings_for(tmp_path, dsn)) as host:
        text = await get_metrics(host)
    assert "# TYPE onex_db_circuit_state gauge" in text
    assert sample(text, 'onex_db_circuit_state{state="closed"}') == 1
    assert sample(text, 'onex_db_circuit_state{state="open"}') == 0
    assert sample(text, 'onex_db_circuit_state{state="half_open"}') == 0
    assert sample(text, "onex_db_circuit_open") == 0
    for counter in ("onex_db_circuit_opened_total", "onex_db_circuit_rejected_total", "onex_db_circuit_probes_total"):
        assert f"# TYPE {counter} counter" in text
        assert sample(text, counter) == 0


async def test_metrics_tell_an_open_circuit_from_a_half_open_one(tmp_path: Path, ledger: Contract) -> None:
    # A store on a port nothing listens on: every connect is refused, as when the server is down.
    port = free_loopback_port()
    store = PostgresStore(
        f"postgresql://u:pw@127.0.0.1:{port}/db",
        min_size=0,
        max_size=2,
        failure_threshold=1,
        reset_timeout_s=0.2,
        connect_timeout_s=2.0,
    )
    host = Host([ledger], Settings(service_port=0, data_dir=tmp_path, bus="memory"))
    host.store = store  # the host is not started: its /metrics text is what metrics.render() returns
    async with store:
        with pytest.raises(RetriablePortError, match="unreachable"):
            async with store.transaction():
                pass
        with pytest.raises(CircuitOpenError):
            async with store.transaction():
                pass
        assert store.breaker.state is CircuitState.OPEN
        text = host.metrics.render()
        assert sample(text, 'onex_db_circuit_state{state="open"}') == 1
        assert sample(text, 'onex_db_circuit_state{state="closed"}') == 0
        assert sample(text, 'onex_db_circuit_state{state="half_open"}') == 0
        assert sample(text, "onex_db_circuit_open") == 1
        assert sample(text, "onex_db_circuit_opened_total") == 1
        assert sample(text, "onex_db_circuit_rejected_total") == 1
        assert sample(text, "onex_db_circuit_probes_total") == 0

        # After the reset timeout the next call is the probe; it fails too, and the circuit opens again.
        await asyncio.sleep(0.25)
        with pytest.raises(RetriablePortError, match="unreachable"):
            async with store.transaction():
                pass
        text = host.metrics.render()
        assert sample(text, 'onex_db_circuit_state{state="open"}') == 1
        assert sample(text, "onex_db_circuit_opened_total") == 2
        assert sample(text, "onex_db_circuit_probes_total") == 1

        # While a probe is in flight the circuit is half-open: still "not closed", and now told apart.
        await asyncio.sleep(0.25)
        assert store.breaker.allow() is True  # the probe's turn, taken as a transaction would take it
        text = host.metrics.render()
        assert sample(text, 'onex_db_circuit_state{state="half_open"}') == 1
        assert sample(text, 'onex_db_circuit_state{state="open"}') == 0
        assert sample(text, 'onex_db_circuit_state{state="closed"}') == 0
        assert sample(text, "onex_db_circuit_open") == 1
        assert sample(text, "onex_db_circuit_probes_total") == 2
        with pytest.raises(CircuitOpenError, match="half-open"):
            async with store.transaction():
                pass
        assert sample(host.metrics.render(), "onex_db_circuit_rejected_total") == 2
        store.breaker.release_probe()


# --- partition maintenance ------------------------------------------------------------------------------------


async def test_the_host_maintains_partitions_periodically_and_survives_failures(
    postgres_dsn: str, tmp_path: Path, ledger: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onex.host")
    next_month = month_partition(1)
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            async with Host([ledger], settings_for(tmp_path, dsn, partition_maintenance_s=0.2)) as host:
                runs = host._partition_runs
                await wait_for(lambda: runs.value(result="ok") >= 1, "the maintenance run on start")

                # A partition that goes missing is back within a period.
                await connection.execute(f'DROP TABLE "{next_month}"')
                assert not await exists(connection, next_month)
                await wait_for(lambda: exists(connection, next_month), f"{next_month} to be created again")

                def created() -> list[logging.LogRecord]:
                    prefix = "hash_metrics partitions maintained"
                    return [r for r in caplog.records if r.getMessage().startswith(prefix)]

                # The run logs once its transaction has committed (and its connection closed): a moment later.
                await wait_for(
                    lambda: any(f"created {next_month}" in r.getMessage() for r in created()), "the creation's log line"
                )
                assert any(
                    {"action": "created", "partition": next_month, "detail": None} in getattr(r, "changes", [])
                    for r in created()
                )

                # The database refuses the maintenance: logged, counted, and the host carries on.
                await connection.execute(
                    "ALTER FUNCTION onex_maintain_hash_metrics_partitions(integer, integer, timestamptz) "
                    "RENAME TO onex_maintain_hash_metrics_partitions_away"
                )
                await wait_for(lambda: runs.value(result="failed") >= 2, "two failed maintenance runs")
                failures = [
                    r for r in caplog.records if r.getMessage().startswith("hash_metrics partition maintenance")
                ]
                assert failures and failures[-1].levelno == logging.WARNING
                assert "onex_maintain_hash_metrics_partitions does not exist" in getattr(failures[-1], "error", "")
                assert host.ready
                async with aiohttp.ClientSession() as session, session.get(f"{host.endpoints.http}/health") as resp:
                    assert resp.status == 200

                # Once the database accepts it again, the next period does the work.
                await connection.execute(
                    "ALTER FUNCTION onex_maintain_hash_metrics_partitions_away(integer, integer, timestamptz) "
                    "RENAME TO onex_maintain_hash_metrics_partitions"
                )
                await connection.execute(f'DROP TABLE "{next_month}"')
                await wait_for(lambda: exists(connection, next_month), f"{next_month} after the failures")
                await wait_for(lambda: runs.value(result="ok") >= 3, "the run after the failures to be counted")
                text = await get_metrics(host)
                assert sample(text, 'onex_db_partition_maintenance_total{result="failed"}') >= 2
                assert sample(text, 'onex_db_partition_maintenance_total{result="ok"}') >= 3
        finally:
            await connection.close()


async def test_partition_maintenance_set_to_0_never_runs(postgres_dsn: str, tmp_path: Path, ledger: Contract) -> None:
    next_month = month_partition(1)
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP TABLE "{next_month}"')
            async with Host([ledger], settings_for(tmp_path, dsn, partition_maintenance_s=0)) as host:
                await asyncio.sleep(0.3)
                assert host._partition_runs.value(result="ok") == 0
                assert not await exists(connection, next_month)
        finally:
            await connection.close()


async def test_the_host_creates_missing_partitions_but_never_drops_old_ones(
    postgres_dsn: str, tmp_path: Path, ledger: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onex.host")
    next_month, old = month_partition(1), month_partition(-20)
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            # A partition of 20 months ago, as an operator keeping 36 months (`onex db partitions --keep 36`) has,
            # with a row in it, and a row of 30 months ago in the default partition.
            await connection.fetch(
                "SELECT * FROM onex_maintain_hash_metrics_partitions(0, 36, $1)", month_start(-20) + timedelta(days=3)
            )
            await connection.execute(
                "INSERT INTO hash_metrics (recorded_at, operation, duration_ms) "
                "VALUES ($1, 'hash', 1), ($2, 'hash', 1)",
                month_start(-20) + timedelta(days=1),
                month_start(-30) + timedelta(days=1),
            )
            await connection.execute(f'DROP TABLE "{next_month}"')
            assert await exists(connection, old)

            async with Host([ledger], settings_for(tmp_path, dsn, partition_maintenance_s=0.2)) as host:
                runs = host._partition_runs
                await wait_for(lambda: exists(connection, next_month), f"{next_month} to be created")
                await wait_for(lambda: runs.value(result="ok") >= 3, "three maintenance runs")
                assert await exists(connection, old), "the host dropped a partition"
                assert await connection.fetchval("SELECT count(*) FROM hash_metrics") == 2
                assert runs.value(result="failed") == 0
            changes = [
                change["action"]
                for r in caplog.records
                if r.getMessage().startswith("hash_metrics partitions maintained")
                for change in getattr(r, "changes", [])
            ]
            assert changes == ["created"]
        finally:
            await connection.close()


# --- event log retention --------------------------------------------------------------------------------------


async def insert_event_logs(connection: asyncpg.Connection, count: int, age: timedelta) -> None:
    await connection.executemany(
        "INSERT INTO event_logs (event_id, topic, event_type, direction, status, started_at) "
        "VALUES ($1, 'test.retention', 'test', 'in', 'handled', now() - $2::interval)",
        [(uuid.uuid4(), age) for _ in range(count)],
    )


async def count_event_logs(connection: asyncpg.Connection, older_than: timedelta | None = None) -> int:
    if older_than is None:
        return int(await connection.fetchval("SELECT count(*) FROM event_logs WHERE topic = 'test.retention'"))
    return int(
        await connection.fetchval(
            "SELECT count(*) FROM event_logs WHERE topic = 'test.retention' AND started_at < now() - $1::interval",
            older_than,
        )
    )


async def test_the_host_deletes_event_log_rows_older_than_the_retention(
    postgres_dsn: str, tmp_path: Path, ledger: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onex.host")
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await insert_event_logs(connection, 30, timedelta(hours=3))
            await insert_event_logs(connection, 4, timedelta(minutes=10))
            settings = settings_for(tmp_path, dsn, partition_maintenance_s=0.2, event_log_retention_s=3600)
            async with Host([ledger], settings) as host:
                await wait_for(lambda: host._event_log_pruned.value() >= 30, "the old rows to be deleted")
                await wait_for(lambda: host._retention_runs.value(result="ok") >= 2, "a second retention run")
                assert await count_event_logs(connection) == 4
                text = await get_metrics(host)
            assert sample(text, "onex_db_event_logs_pruned_total") == 30
            assert sample(text, 'onex_db_event_log_retention_total{result="ok"}') >= 2
            assert 'onex_db_event_log_retention_total{result="failed"}' not in text
            pruned = [r for r in caplog.records if r.getMessage().startswith("event log retention: deleted")]
            assert pruned[0].getMessage() == (
                "event log retention: deleted 30 event_logs rows started more than 3600 s ago"
            )
            assert getattr(pruned[0], "deleted", None) == 30 and getattr(pruned[0], "retention_s", None) == 3600
            assert all(getattr(r, "deleted", None) == 0 for r in pruned[1:])
        finally:
            await connection.close()


async def test_event_log_retention_0_keeps_every_row(postgres_dsn: str, tmp_path: Path, ledger: Contract) -> None:
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await insert_event_logs(connection, 5, timedelta(days=400))
            settings = settings_for(tmp_path, dsn, partition_maintenance_s=0.2, event_log_retention_s=0)
            async with Host([ledger], settings) as host:
                await wait_for(lambda: host._partition_runs.value(result="ok") >= 3, "three maintenance runs")
                assert await count_event_logs(connection) == 5
                assert host._retention_runs.value(result="ok") == host._retention_runs.value(result="failed") == 0
                text = await get_metrics(host)
            assert not re.search(r"^onex_db_event_logs_pruned_total ", text, re.MULTILINE), "the retention is off"
        finally:
            await connection.close()


async def test_with_partition_maintenance_0_the_retention_still_runs_and_creates_no_partition(
    postgres_dsn: str, tmp_path: Path, ledger: Contract
) -> None:
    next_month = month_partition(1)
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP TABLE "{next_month}"')
            await insert_event_logs(connection, 3, timedelta(days=8))
            settings = settings_for(tmp_path, dsn, partition_maintenance_s=0, event_log_retention_s=604800)
            async with Host([ledger], settings) as host:
                await wait_for(lambda: host._retention_runs.value(result="ok") >= 1, "the retention run on start")
                assert host._event_log_pruned.value() == 3
                assert await count_event_logs(connection) == 0
                assert host._partition_runs.value(result="ok") == host._partition_runs.value(result="failed") == 0
                assert not await exists(connection, next_month)
        finally:
            await connection.close()


async def test_a_failed_retention_is_logged_counted_and_retried_without_stopping_the_partitions(
    postgres_dsn: str, tmp_path: Path, ledger: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onex.host")
    async with migrated_database(postgres_dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("ALTER TABLE event_logs RENAME TO event_logs_away")
            settings = settings_for(
                tmp_path, dsn, partition_maintenance_s=0.2, event_log_retention_s=3600, event_log=False
            )
            async with Host([ledger], settings) as host:
                retention, partitions = host._retention_runs, host._partition_runs
                await wait_for(lambda: retention.value(result="failed") >= 2, "two failed retention runs")
                assert partitions.value(result="ok") >= 2 and partitions.value(result="failed") == 0
                failures = [r for r in caplog.records if r.getMessage().startswith("event log retention failed")]
                assert failures[-1].levelno == logging.WARNING
                assert 'relation "event_logs" does not exist' in getattr(failures[-1], "error", "")
                assert host.ready

                await connection.execute("ALTER TABLE event_logs_away RENAME TO event_logs")
                await insert_event_logs(connection, 2, timedelta(hours=2))
                await wait_for(lambda: host._event_log_pruned.value() >= 2, "the retention after the failures")
                assert retention.value(result="ok") >= 1
                assert await count_event_logs(connection) == 0
        finally:
            await connection.close()
