"""``onex migrate up | down [N|all] | status | verify``: the schema migrations of ``migrations/``.

The database is ``--postgres-dsn`` / ``POSTGRES_DSN``, else the embedded PostgreSQL under ``--data-dir`` /
``ONEX_DATA_DIR``, started for the duration of the command. Results go to stdout, progress (each file as it runs,
waiting for another migration's lock) to stderr. Exit codes: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import RetriablePortError, UsageError
from framework.runtime.config import Settings

if TYPE_CHECKING:
    from framework.adapters.migrator import MigrationState, Migrator, PartitionChange

#: How long to wait for the server to accept a connection.
CONNECT_TIMEOUT_S = 10.0

Body = Callable[["Migrator"], Awaitable[int]]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="apply, roll back and check database migrations",
        description="Apply, roll back and check the numbered SQL migrations (default: the shipped migrations/) on "
        "PostgreSQL: --postgres-dsn or POSTGRES_DSN, else the embedded server under --data-dir. Exit codes: 0 done, "
        "1 failed or refused, 2 usage. How to write a migration: migrations/README.md.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = connection_flags(migrations_dir=True)
    up = actions.add_parser(
        "up",
        parents=[common],
        help="apply pending migrations, then maintain the hash_metrics partitions",
        description="Apply the pending migrations in order, each in its own transaction, then create the coming "
        "months' hash_metrics partitions (as `onex db partitions` does). Refused while an applied migration's file "
        "has changed (see `onex migrate verify`).",
    )
    up.add_argument("--to", type=int, metavar="N", help="stop after migration number N")
    down = actions.add_parser(
        "down",
        parents=[common],
        help="roll back the last N migrations (default 1)",
        description="Roll back the last N applied migrations (default 1; `all` for every one), newest first, "
        "each with its NNN_name.rollback.sql in its own transaction.",
    )
    down.add_argument("count", nargs="?", default="1", metavar="N|all", help="how many to roll back (default 1)")
    actions.add_parser(
        "status",
        parents=[common],
        help="list applied and pending migrations",
        description="List every migration with its state (applied, pending, changed: applied but edited since, "
        "missing: applied but no longer in the directory), when it was applied and its checksum.",
    )
    actions.add_parser(
        "verify",
        parents=[common],
        help="check that applied migrations match their files",
        description="Compare the checksums of the applied migrations with their files. Exit 1 names each applied "
        "migration that was edited, renamed or removed since, and each one applied out of order.",
    )
    p.set_defaults(run=run)


def connection_flags(*, migrations_dir: bool) -> argparse.ArgumentParser:
    """The flags every database command takes (a parent parser, so they go after the action)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--postgres-dsn", help="external PostgreSQL (POSTGRES_DSN); default: the embedded server")
    common.add_argument("--data-dir", help="where the embedded server keeps its data (ONEX_DATA_DIR, default .onex)")
    if migrations_dir:
        common.add_argument(
            "--migrations-dir", type=Path, metavar="DIR", help="migrations to use (default: the shipped ones)"
        )
    return common


def run(args: argparse.Namespace) -> int:
    body: Body
    if args.action == "up":
        to: int | None = args.to
        if to is not None and to < 1:
            raise UsageError(f"--to {to}: expected a migration number >= 1")
        body = functools.partial(_up, to=to)
    elif args.action == "down":
        count = _count(args.count)
        body = functools.partial(_down, count=count)
    else:
        body = _status if args.action == "status" else _verify
    return run_with_migrator(args, f"migrate {args.action}", body, migrations_dir=args.migrations_dir)


def run_with_migrator(args: argparse.Namespace, command: str, body: Body, *, migrations_dir: Path | None = None) -> int:
    """Resolve the database from the flags, start the embedded server if that is the one, and run ``body``."""
    settings = Settings.load(data_dir=args.data_dir, postgres_dsn=args.postgres_dsn)
    if migrations_dir is not None and not migrations_dir.is_dir():
        raise UsageError(f"--migrations-dir {migrations_dir}: no such directory")
    with _progress_to_stderr(command):
        return asyncio.run(_with_migrator(settings, body, migrations_dir))


async def _with_migrator(settings: Settings, body: Body, migrations_dir: Path | None) -> int:
    # Imported here: asyncpg and the adapters cost ~0.2 s, which `onex validate` should not pay.
    import asyncpg  # noqa: PLC0415

    from framework.adapters.migrator import MigrationError, Migrator  # noqa: PLC0415
    from framework.adapters.services import POSTGRES_ENV, open_services  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        endpoints = await open_services(
            stack,
            data_dir=settings.data_dir,
            env={POSTGRES_ENV: settings.postgres_dsn or ""},
            need_kafka=False,
        )
        connection = await _connect(endpoints.postgres_dsn)
        stack.push_async_callback(_close, connection)
        try:
            return await body(Migrator(connection, migrations_dir))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # The migrator wraps what it expects; anything else still deserves a message rather than a traceback.
            raise MigrationError(f"database error: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover - the exit stack does not swallow exceptions


async def _connect(dsn: str) -> Any:
    import asyncpg  # noqa: PLC0415

    from framework.adapters.services import redact_dsn  # noqa: PLC0415

    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RetriablePortError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {type(exc).__name__}: {exc or 'timed out'}"
        ) from exc


async def _close(connection: Any) -> None:
    import asyncpg  # noqa: PLC0415

    try:
        await asyncio.wait_for(connection.close(), timeout=5.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        connection.terminate()


@contextlib.contextmanager
def _progress_to_stderr(command: str) -> Iterator[None]:
    """The framework's INFO logs as plain lines on stderr for this command, taken off again afterwards (the CLI
    also runs in-process, from tests and ``python -m``)."""
    framework_logger = logging.getLogger("framework")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"onex {command}: %(message)s"))
    previous_level = framework_logger.level
    framework_logger.addHandler(handler)
    framework_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        framework_logger.removeHandler(handler)
        framework_logger.setLevel(previous_level)


def _count(text: str) -> int | None:
    """``N`` as an int, ``all`` as None."""
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"down {text!r}: expected a number of migrations >= 1, or `all`")
    return int(text)


# --- actions --------------------------------------------------------------------------------------------------------


async def _up(migrator: Migrator, to: int | None) -> int:
    applied = await migrator.up(to=to)
    for migration in applied:
        print(f"applied {migration.label}")
    at = await _position(migrator)
    if applied:
        print(f"{len(applied)} migration{'s' if len(applied) != 1 else ''} applied; the database is at {at}")
    else:
        print(f"nothing to apply; the database is at {at}")
    if await migrator.partition_function_exists():
        print_partition_changes(await migrator.ensure_partitions())
    return 0


async def _down(migrator: Migrator, count: int | None) -> int:
    rolled_back = await migrator.down(count)
    if not rolled_back:
        print("nothing to roll back: no migration is applied")
        return 0
    for migration in rolled_back:
        print(f"rolled back {migration.label}")
    print(f"the database is at {await _position(migrator)}")
    return 0


async def _status(migrator: Migrator) -> int:
    states = await migrator.status()
    print(format_status(states))
    return 0


async def _verify(migrator: Migrator) -> int:
    problems = await migrator.verify()
    if problems:
        for problem in problems:
            print(f"{problem.kind.upper().replace('_', ' ')}: {problem.message}")
        print(f"verify failed: {len(problems)} problem{'s' if len(problems) != 1 else ''} in {migrator.directory}")
        return 1
    applied = await migrator.applied()
    pending = len(migrator.migrations()) - len(applied)
    print(
        f"ok: the {len(applied)} applied migration{'s' if len(applied) != 1 else ''} match their files in "
        f"{migrator.directory} ({pending} pending)"
    )
    return 0


async def _position(migrator: Migrator) -> str:
    applied = await migrator.applied()
    return applied[-1].label if applied else "no migration (empty)"


def format_status(states: list[MigrationState]) -> str:
    """A table of :meth:`Migrator.status`, with a summary line."""
    header = ("VERSION", "NAME", "STATE", "APPLIED AT (UTC)", "MS", "CHECKSUM")
    rows = [header]
    for s in states:
        shown = s.applied_checksum if s.applied_checksum is not None else s.file_checksum
        rows.append(
            (
                f"{s.version:03d}",
                s.name,
                s.state,
                s.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if s.applied_at else "-",
                f"{s.duration_ms:.0f}" if s.duration_ms is not None else "-",
                (shown[:16] if shown else "-")
                + (f" (file {s.file_checksum[:16]})" if s.state == "changed" and s.file_checksum else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    counts = {
        state: sum(1 for s in states if s.state == state) for state in ("applied", "pending", "changed", "missing")
    }
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state in ("applied", "pending"))
    if counts["changed"] or counts["missing"]:
        summary += " — run `onex migrate verify` for how to fix"
    return "\n".join([*lines, summary])


def print_partition_changes(changes: list[PartitionChange]) -> None:
    if not changes:
        print("partitions: nothing to do")
    for change in changes:
        span = ""
        if change.range_start is not None and change.range_end is not None:
            span = f" [{change.range_start.astimezone(UTC):%Y-%m-%d}, {change.range_end.astimezone(UTC):%Y-%m-%d})"
        detail = f": {change.detail}" if change.detail else ""
        print(f"partitions: {change.action} {change.partition}{span}{detail}")
