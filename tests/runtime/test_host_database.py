"""The host and its PostgreSQL store: migrations on start, the pool sizes of the settings, the circuit breaker in
/metrics, and the periodic hash_metrics partition maintenance. On the session's real PostgreSQL, each test on a
fresh database; the bus is the in-memory one (Kafka plays no part here)."""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
from datetime import UTC, datetime
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


def month_partition(months_ahead: int) -> str:
    now = datetime.now(UTC)
    index = now.month - 1 + months_ahead
    return f"hash_metrics_p{now.year + index // 12:04d}{index % 12 + 1:02d}"


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
                created = [r for r in caplog.records if r.getMessage().startswith("hash_metrics partitions maintained")]
                assert any(f"created {next_month}" in r.getMessage() for r in created)
                assert any(
                    {"action": "created", "partition": next_month, "detail": None} in getattr(r, "changes", [])
                    for r in created
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
