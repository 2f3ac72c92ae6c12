"""``onex migrate`` and ``onex db partitions`` in-process through ``framework.cli.main.main``, on fresh databases
of the session's PostgreSQL (and once on an embedded server of their own)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from framework.cli.main import main
from framework.shipped import shipped_dir
from tests.adapters.test_migrator import EXPECTED
from tests.pg import migrated_database


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
