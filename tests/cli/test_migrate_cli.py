"""``onex migrate`` and ``onex db partitions`` in-process through ``framework.cli.main.main``, on fresh databases
of the session's PostgreSQL (and once on an embedded server of their own)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from framework.adapters.migrator import MIGRATION_LOCK_KEY
from framework.cli.main import main
from framework.shipped import shipped_dir
from tests.adapters.test_migrator import EXPECTED
from tests.pg import WAIT_S, migrated_database, wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
async def db_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with migrated_database(postgres_dsn, migrate=False) as dsn:
        yield dsn


Onex = Callable[..., Awaitable[Result]]


@pytest.fixture
def onex(capsys: pytest.CaptureFixture[str]) -> Onex:
    """Run ``onex ARGS`` in-process; its own event loop runs in a worker thread, beside the session's."""

    async def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, list(argv))
        except SystemExit as exc:  # argparse rejecting the arguments
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "Traceback" not in captured.out
        return Result(code, captured.out, captured.err)

    return run


async def test_up_status_verify_down(onex: Onex, db_dsn: str) -> None:
    dsn = ("--postgres-dsn", db_dsn)

    up = await onex("migrate", "up", *dsn)
    assert up.code == 0, up.err
    assert [line.removeprefix("applied ") for line in up.out.splitlines()[:13]] == [
        f"{n:03d}_{name}" for n, name in enumerate(EXPECTED, start=1)
    ]
    assert "13 migrations applied; the database is at 013_workflow_leases" in up.out
    assert "partitions: nothing to do" in up.out, "migration 003 already prepared this month and the next three"
    assert "onex migrate up: applying 001_metadata_stamps.sql" in up.err

    status = await onex("migrate", "status", *dsn)
    assert status.code == 0
    lines = status.out.splitlines()
    assert lines[0].split() == ["VERSION", "NAME", "STATE", "APPLIED", "AT", "(UTC)", "MS", "CHECKSUM"]
    assert [line.split()[:3] for line in lines[1:14]] == [
        [f"{n:03d}", name, "applied"] for n, name in enumerate(EXPECTED, start=1)
    ]
    assert lines[-1] == "13 applied, 0 pending"

    verify = await onex("migrate", "verify", *dsn)
    assert (verify.code, verify.out.split(":")[0]) == (0, "ok")

    again = await onex("migrate", "up", *dsn)
    assert again.code == 0 and "nothing to apply; the database is at 013_workflow_leases" in again.out

    down = await onex("migrate", "down", "2", *dsn)
    assert down.code == 0, down.err
    assert down.out.splitlines() == [
        "rolled back 013_workflow_leases",
        "rolled back 012_dead_letters",
        "the database is at 011_processed_events",
    ]
    status = await onex("migrate", "status", *dsn)
    assert status.out.splitlines()[-1] == "11 applied, 2 pending"

    down_all = await onex("migrate", "down", "all", *dsn)
    assert down_all.code == 0 and "the database is at no migration (empty)" in down_all.out
    nothing = await onex("migrate", "down", "all", *dsn)
    assert (nothing.code, nothing.out.strip()) == (0, "nothing to roll back: no migration is applied")
    too_many = await onex("migrate", "down", *dsn)
    assert too_many.code == 2 and "no migration is applied" in too_many.err

    partial = await onex("migrate", "up", "--to", "3", *dsn)
    assert partial.code == 0 and "3 migrations applied; the database is at 003_hash_metrics" in partial.out


async def test_edited_migration_is_refused_with_its_name(onex: Onex, db_dsn: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(shipped_dir("migrations"), migrations)
    flags = ("--postgres-dsn", db_dsn, "--migrations-dir", str(migrations))
    assert (await onex("migrate", "up", "--to", "4", *flags)).code == 0
    edited = migrations / "004_event_logs.sql"
    edited.write_text(edited.read_text() + "-- edited\n")

    verify = await onex("migrate", "verify", *flags)
    assert verify.code == 1
    assert verify.out.startswith("CHANGED: migration 004_event_logs.sql (number 004) was edited after it was applied")
    assert "verify failed: 1 problem" in verify.out

    up = await onex("migrate", "up", *flags)
    assert up.code == 1
    assert "onex migrate: migrate up refused" in up.err and "004_event_logs.sql" in up.err and "restore" in up.err
    assert "applied 005" not in up.out

    status = await onex("migrate", "status", *flags)
    assert status.code == 0
    assert "004      event_logs           changed" in status.out
    assert "run `onex migrate verify` for how to fix" in status.out


async def test_migrate_up_maintains_the_partitions_even_with_nothing_to_apply(onex: Onex, db_dsn: str) -> None:
    dsn = ("--postgres-dsn", db_dsn)
    assert (await onex("migrate", "up", *dsn)).code == 0
    now = datetime.now(UTC)
    months = [(now.year + (now.month - 1 + i) // 12, (now.month - 1 + i) % 12 + 1) for i in range(2)]
    this_month, next_month = (f"hash_metrics_p{y:04d}{m:02d}" for y, m in months)
    # Gone since the migration prepared them (as on a database whose months ran out): migrate up brings them back.
    connection = await asyncpg.connect(db_dsn)
    try:
        await connection.execute(f'DROP TABLE "{this_month}", "{next_month}"')
        up = await onex("migrate", "up", *dsn)
        assert up.code == 0, up.err
        assert "nothing to apply; the database is at 013_workflow_leases" in up.out
        created = [line.split()[2] for line in up.out.splitlines() if line.startswith("partitions: created")]
        assert created == [this_month, next_month]
        for name in (this_month, next_month):
            assert await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name), f"{name} missing"
    finally:
        await connection.close()


async def test_partitions_command(onex: Onex, db_dsn: str) -> None:
    dsn = ("--postgres-dsn", db_dsn)
    before = await onex("db", "partitions", *dsn)
    assert before.code == 1 and "run `onex migrate up` first" in before.err

    assert (await onex("migrate", "up", *dsn)).code == 0
    result = await onex("db", "partitions", "--ahead", "5", "--keep", "6", *dsn)
    assert result.code == 0, result.err
    now = datetime.now(UTC)
    months = [(now.year + (now.month - 1 + i) // 12, (now.month - 1 + i) % 12 + 1) for i in range(6)]
    names = [f"hash_metrics_p{y:04d}{m:02d}" for y, m in months]
    created = [line.split()[2] for line in result.out.splitlines() if line.startswith("partitions: created")]
    assert created == names[4:]
    assert result.out.splitlines()[-1] == f"hash_metrics has 7 partitions: {', '.join(names)}, hash_metrics_default"

    bad = await onex("db", "partitions", "--ahead", "-1", *dsn)
    assert bad.code == 2 and "months_ahead must be an integer from 0 to 120" in bad.err
    not_a_number = await onex("db", "partitions", "--keep", "many", *dsn)
    assert not_a_number.code == 2


async def test_usage_and_connection_errors(onex: Onex, db_dsn: str, tmp_path: Path) -> None:
    down_zero = await onex("migrate", "down", "0", "--postgres-dsn", db_dsn)
    assert down_zero.code == 2 and "expected a number of migrations >= 1, or `all`" in down_zero.err

    remote = await onex("migrate", "status", "--postgres-dsn", "postgresql://u:secret@192.0.2.1:5432/db")
    assert remote.code == 2 and "loopback" in remote.err and "secret" not in remote.err

    refused = await onex("migrate", "status", "--postgres-dsn", "postgresql://u:secret@127.0.0.1:1/db")
    assert refused.code == 1 and "cannot connect to PostgreSQL at postgresql://u@127.0.0.1:1/db" in refused.err
    assert "secret" not in refused.err

    no_dir = await onex("migrate", "status", "--postgres-dsn", db_dsn, "--migrations-dir", str(tmp_path / "nope"))
    assert no_dir.code == 2 and "no such directory" in no_dir.err

    (tmp_path / "001_a.sql").write_text("CREATE TABLE a (x int);")
    gap = await onex("migrate", "up", "--postgres-dsn", db_dsn, "--migrations-dir", str(tmp_path))
    assert gap.code == 1 and "001_a.sql has no rollback" in gap.err

    (tmp_path / "001_a.rollback.sql").write_text("DROP TABLE a;")
    (tmp_path / "002_b.sql").write_text("CREATE TABLE b (x int);\nSELECT nope FROM b;\n")
    (tmp_path / "002_b.rollback.sql").write_text("DROP TABLE b;")
    failed = await onex("migrate", "up", "--postgres-dsn", db_dsn, "--migrations-dir", str(tmp_path))
    assert failed.code == 1
    assert f'{tmp_path / "002_b.sql"}:2:8: column "nope" does not exist (SQLSTATE 42703)' in failed.err
    assert "onex migrate up: applied 001_a.sql" in failed.err

    unknown = await onex("migrate", "sideways")
    assert unknown.code == 2


@pytest.fixture
def embedded_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory outside pytest's 0700 tree (as root the server runs as its own account), no external DSN."""
    monkeypatch.delenv("POSTGRES_DSN", raising=False)
    monkeypatch.delenv("ONEX_DATA_DIR", raising=False)
    parent = Path(tempfile.mkdtemp(prefix="onex-test-migrate-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.postgres
async def test_embedded_server_is_started_for_the_command(onex: Onex, embedded_dir: Path) -> None:
    up = await onex("migrate", "up", "--data-dir", str(embedded_dir))
    assert up.code == 0, up.err
    assert "13 migrations applied" in up.out
    # A second command starts the server again on the same data directory and finds the schema there.
    status = await onex("migrate", "status", "--data-dir", str(embedded_dir))
    assert status.code == 0 and status.out.splitlines()[-1] == "13 applied, 0 pending"


# --- two `onex migrate up` processes at once --------------------------------------------------------------------


async def _migrate_up_process(dsn: str, data_dir: Path) -> asyncio.subprocess.Process:
    """``onex migrate up`` as a process of its own, on the database that POSTGRES_DSN names."""
    environ = {**os.environ, "POSTGRES_DSN": dsn, "ONEX_DATA_DIR": str(data_dir)}
    environ.pop("ONEX_DEBUG", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework.cli.main",
        "migrate",
        "up",
        cwd=ROOT,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _advisory_waiters(observer: asyncpg.Connection) -> list[int]:
    """Backends of this database waiting for an advisory lock (the migration lock is the only one taken here)."""
    rows = await observer.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = $1::bigint::oid AND objid = $2::bigint::oid",
        MIGRATION_LOCK_KEY >> 32,
        MIGRATION_LOCK_KEY & 0xFFFFFFFF,
    )
    return sorted(row["pid"] for row in rows)


@pytest.mark.parametrize("lock_held_at_start", [True, False], ids=["both-wait-for-the-lock", "plain-race"])
async def test_two_concurrent_migrate_up_processes_apply_every_migration_once(
    db_dsn: str, tmp_path: Path, lock_held_at_start: bool
) -> None:
    """Two `onex migrate up` processes started together on one empty database. With the lock held by the test
    when they start, both are seen waiting on the server before it is released, so they really overlap; without
    it, they race from the start. Either way: both succeed, each migration is applied once, by one of them."""
    observer = await asyncpg.connect(db_dsn)
    processes: list[asyncio.subprocess.Process] = []
    try:
        if lock_held_at_start:
            await observer.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        processes = [await _migrate_up_process(db_dsn, tmp_path / f"data-{i}") for i in range(2)]
        if lock_held_at_start:

            async def both_waiting() -> bool:
                exited = [p.returncode for p in processes if p.returncode is not None]
                assert not exited, f"a migrate process exited while the lock was held: {exited}"
                return len(await _advisory_waiters(observer)) == 2

            await wait_for(both_waiting, "both `onex migrate up` processes to wait for the migration lock")
            await observer.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        async with asyncio.timeout(4 * WAIT_S):
            outputs = await asyncio.gather(*(p.communicate() for p in processes))
        results = [
            Result(p.returncode if p.returncode is not None else -1, out.decode(), err.decode())
            for p, (out, err) in zip(processes, outputs, strict=True)
        ]

        for result in results:
            assert result.code == 0, result.err
            assert "Traceback" not in result.err
            assert "partitions: nothing to do" in result.out
        applied_all = [r for r in results if "13 migrations applied" in r.out]
        found_nothing = [r for r in results if "nothing to apply" in r.out]
        assert len(applied_all) == 1 and len(found_nothing) == 1, [r.out for r in results]
        applier, idle = applied_all[0], found_nothing[0]
        assert [line.removeprefix("applied ") for line in applier.out.splitlines()[:13]] == [
            f"{n:03d}_{name}" for n, name in enumerate(EXPECTED, start=1)
        ]
        assert "13 migrations applied; the database is at 013_workflow_leases" in applier.out
        assert idle.out.splitlines()[0] == "nothing to apply; the database is at 013_workflow_leases"
        assert "applied 0" not in idle.out and "applying" not in idle.err
        assert (
            "onex migrate up: nothing to migrate: all 13 migrations are applied "
            "(the database is at 013_workflow_leases)" in idle.err
        )
        if lock_held_at_start:
            holder = observer.get_server_pid()
            for result in results:
                assert (
                    "onex migrate up: waiting for the migration lock: another migration is running "
                    f"(PostgreSQL backend pid {holder})" in result.err
                ), result.err
                assert "onex migrate up: got the migration lock after" in result.err

        rows = await observer.fetch("SELECT version, name, count(*) AS n FROM schema_migrations GROUP BY 1, 2")
        assert sorted((r["version"], r["name"], r["n"]) for r in rows) == [
            (n, name, 1) for n, name in enumerate(EXPECTED, start=1)
        ]
        assert await _advisory_waiters(observer) == []
        held = await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert held == 0
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.communicate()
        await observer.close()
