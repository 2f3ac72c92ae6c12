"""Schema migrations: numbered SQL files applied in order, recorded with checksums, one process at a time.

A migrations directory (default: the shipped ``migrations/``) holds pairs ``NNN_name.sql`` and
``NNN_name.rollback.sql``, numbered 001, 002, … without gaps. :class:`Migrator` applies them on one asyncpg
connection:

- a session-level advisory lock (:data:`MIGRATION_LOCK_KEY`) is held for the whole of ``up``/``down``, so a second
  process waits (and says so in a log line), then finds nothing left to do;
- each migration, and each rollback, runs in its own transaction together with its ``schema_migrations`` row, so
  a migration is either applied and recorded or neither;
- ``schema_migrations`` keeps the SHA-256 of each applied forward file; :meth:`Migrator.verify` reports an applied
  migration whose file changed since, and :meth:`Migrator.up` refuses to run while it does.

Line endings are normalised (CRLF → LF) before hashing, so a checkout that converts them does not look edited.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg

from framework.errors import OnexError, UsageError
from framework.shipped import shipped_dir

__all__ = [
    "MIGRATION_LOCK_KEY",
    "PARTITION_FUNCTION",
    "AppliedMigration",
    "Migration",
    "MigrationError",
    "MigrationFailed",
    "MigrationFilesError",
    "MigrationState",
    "MigrationVerifyError",
    "Migrator",
    "PartitionChange",
    "VerifyProblem",
    "discover",
]

logger = logging.getLogger(__name__)

#: Key of the session-level advisory lock held while migrating: the bytes of ``onexmigr`` as a bigint. Advisory
#: locks are per database, so migrating two databases of one server at once is fine.
MIGRATION_LOCK_KEY = int.from_bytes(b"onexmigr", "big")
#: The plpgsql function of migration ``003_hash_metrics`` that creates and drops monthly partitions.
PARTITION_FUNCTION = "onex_maintain_hash_metrics_partitions"
_PARTITION_SIGNATURE = f"{PARTITION_FUNCTION}(integer, integer, timestamp with time zone)"
#: The largest ``keep_months`` the partition function accepts (100 years).
_LONGEST_RETENTION_MONTHS = 1200
TABLE = "schema_migrations"

_FORWARD = re.compile(r"(?P<version>\d{3})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql")
_ROLLBACK = re.compile(r"(?P<version>\d{3})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.rollback\.sql")
# Statements that would end the transaction the migrator wraps around a file, leaving part of it committed (or
# running the rest outside any transaction). SAVEPOINT, RELEASE and ROLLBACK TO stay inside it and are allowed.
_TRANSACTION_CONTROL = re.compile(
    r"(?:BEGIN|START\s+TRANSACTION|COMMIT|END|ABORT|ROLLBACK(?!\s+(?:WORK\s+|TRANSACTION\s+)?TO\b)|"
    r"PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)
# The SQL-standard function body (BEGIN ATOMIC ... END) contains semicolons and ends with an END statement.
_BEGIN_ATOMIC = re.compile(r"\bBEGIN\s+ATOMIC\b", re.IGNORECASE)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")

_CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
    version     integer          PRIMARY KEY CHECK (version >= 1),
    name        text             NOT NULL,
    checksum    text             NOT NULL CHECK (checksum ~ '^[0-9a-f]{{64}}$'),
    applied_at  timestamptz      NOT NULL DEFAULT now(),
    duration_ms double precision NOT NULL CHECK (duration_ms >= 0)
)
"""

State = Literal["applied", "pending", "changed", "missing"]
ProblemKind = Literal["changed", "renamed", "missing", "out_of_order"]


# --- errors ---------------------------------------------------------------------------------------------------------


class MigrationError(OnexError):
    """Migrating failed: the database could not be reached or refused a statement, or the files are unusable."""


class MigrationFilesError(MigrationError):
    """The migrations directory is not a usable sequence: a gap, a duplicate number, a missing rollback, …"""


class MigrationVerifyError(MigrationError):
    """Applied migrations no longer match their files; ``problems`` lists each one."""

    def __init__(self, message: str, problems: list[VerifyProblem]) -> None:
        super().__init__(message)
        self.problems = problems


class MigrationFailed(MigrationError):
    """A migration or rollback file failed; its transaction was rolled back, so nothing of that file remains.

    ``line`` and ``column`` locate the error in ``path`` when PostgreSQL reported a position.
    """

    def __init__(self, message: str, *, path: Path, sqlstate: str | None, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.path, self.sqlstate, self.line, self.column = path, sqlstate, line, column


# --- files ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One numbered migration: its forward and rollback SQL as read from disk, and the forward file's checksum."""

    version: int
    name: str
    path: Path
    rollback_path: Path
    checksum: str
    sql: str = field(repr=False)
    rollback_sql: str = field(repr=False)

    @property
    def label(self) -> str:
        """``NNN_name``, how messages and ``onex migrate status`` name it."""
        return f"{self.version:03d}_{self.name}"


def checksum(data: bytes) -> str:
    """SHA-256 (hex) of a migration file, line endings normalised so that a CRLF checkout hashes the same."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations of ``directory`` in order; raises :class:`MigrationFilesError` naming every problem found."""
    directory = Path(directory) if directory is not None else shipped_dir("migrations")
    if not directory.is_dir():
        raise MigrationFilesError(f"migrations directory {directory} does not exist or is not a directory")
    forward: dict[int, list[Path]] = {}
    rollback: dict[int, list[Path]] = {}
    names: dict[Path, str] = {}
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".sql"):
            continue  # README.md and the like
        if match := _ROLLBACK.fullmatch(path.name):
            rollback.setdefault(int(match["version"]), []).append(path)
        elif match := _FORWARD.fullmatch(path.name):
            forward.setdefault(int(match["version"]), []).append(path)
            names[path] = match["name"]
        else:
            problems.append(
                f"{path.name}: not a migration name; expected NNN_name.sql or NNN_name.rollback.sql "
                "(three digits, then lowercase letters, digits and single underscores)"
            )

    for version, paths in sorted(forward.items()):
        if len(paths) > 1:
            problems.append(f"number {version:03d} is used by {len(paths)} migrations: {_names(paths)}")
    for version, paths in sorted(rollback.items()):
        if len(paths) > 1:
            problems.append(f"number {version:03d} has {len(paths)} rollbacks: {_names(paths)}")
    for version, paths in sorted(forward.items()):
        expected = paths[0].name.removesuffix(".sql") + ".rollback.sql"
        if not any(p.name == expected for p in rollback.get(version, [])):
            problems.append(f"{paths[0].name} has no rollback: write {expected} that undoes it exactly")
    for version, paths in sorted(rollback.items()):
        expected = paths[0].name.removesuffix(".rollback.sql") + ".sql"
        if not any(p.name == expected for p in forward.get(version, [])):
            problems.append(f"{paths[0].name} rolls back nothing: there is no {expected}")
    if forward:
        missing = sorted(set(range(1, max(forward) + 1)) - set(forward))
        if missing:
            problems.append(
                f"migration number{'s' if len(missing) > 1 else ''} {', '.join(f'{v:03d}' for v in missing)} "
                f"missing: numbers run 001, 002, … without gaps"
            )

    migrations: list[Migration] = []
    if not problems:
        for version, (path,) in sorted(forward.items()):
            rollback_path = path.with_name(path.name.removesuffix(".sql") + ".rollback.sql")
            try:
                raw = path.read_bytes()
                sql, rollback_sql = raw.decode("utf-8"), rollback_path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"cannot read {path.name} or its rollback as UTF-8: {exc}")
                continue
            for text, file in ((sql, path), (rollback_sql, rollback_path)):
                problems += _transaction_control(text, file)
                if not _mask_non_code(text).strip(" \t\r\n;"):
                    problems.append(f"{file.name} is empty: a migration and its rollback must each do something")
            migrations.append(
                Migration(
                    version=version,
                    name=names[path],
                    path=path,
                    rollback_path=rollback_path,
                    checksum=checksum(raw),
                    sql=sql,
                    rollback_sql=rollback_sql,
                )
            )
    if problems:
        raise MigrationFilesError(
            f"migrations in {directory} cannot be used:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )
    return migrations


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths)


def _transaction_control(sql: str, path: Path) -> list[str]:
    masked = _mask_non_code(sql)
    found: list[str] = []
    in_atomic_body = False
    start = 0
    for statement in masked.split(";"):
        begin = start + len(statement) - len(statement.lstrip())
        start += len(statement) + 1
        if in_atomic_body:
            in_atomic_body = not re.match(r"\s*END\b", statement, re.IGNORECASE)
            continue
        if (atomic := _BEGIN_ATOMIC.search(statement)) and not re.match(r"\s*(?:BEGIN|START)\b", statement, re.I):
            # Unless the body is empty (BEGIN ATOMIC END), its statements run up to a statement starting with END.
            in_atomic_body = not re.fullmatch(r"\s*END\s*", statement[atomic.end() :], re.IGNORECASE)
            continue
        if match := _TRANSACTION_CONTROL.match(statement.lstrip()):
            found.append(
                f"{path.name}:{masked.count(chr(10), 0, begin) + 1}: {' '.join(match.group().upper().split())} "
                "would end or split the transaction the migrator runs the file in; remove it (each file already "
                "runs in one transaction of its own)"
            )
    return found


def _mask_non_code(sql: str) -> str:
    """``sql`` with comments, string literals, quoted identifiers and dollar-quoted bodies blanked out (newlines
    kept), so that a search for statements cannot match inside a function body or a string."""
    out = list(sql)
    length = len(sql)

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, length)):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < length:
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = length if end < 0 else end
        elif sql.startswith("/*", i):
            depth, end = 1, i + 2  # PostgreSQL block comments nest
            while end < length and depth:
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif char in "'\"":
            escapes = char == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word(sql[i - 2]))
            end = i + 1
            while end < length:
                if escapes and sql[end] == "\\":
                    end += 2
                elif sql[end] == char:
                    if end + 1 < length and sql[end + 1] == char:
                        end += 2  # a doubled quote stands for itself
                    else:
                        end += 1
                        break
                else:
                    end += 1
        elif char == "$" and (i == 0 or not _is_word(sql[i - 1])) and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(), tag.end())
            end = length if close < 0 else close + len(tag.group())
        else:
            i += 1
            continue
        blank(i, end)
        i = end
    return "".join(out)


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_$"


# --- database state -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: float

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


@dataclass(frozen=True)
class MigrationState:
    """One line of :meth:`Migrator.status`.

    ``state``: ``applied`` (file unchanged), ``pending`` (not applied), ``changed`` (applied, file edited since),
    ``missing`` (applied, no file with its number and name).
    """

    version: int
    name: str
    state: State
    file_checksum: str | None
    applied_checksum: str | None
    applied_at: datetime | None
    duration_ms: float | None

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


@dataclass(frozen=True)
class VerifyProblem:
    """A disagreement between the database and the files, with a message that names it and says how to fix it."""

    version: int
    name: str
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class PartitionChange:
    """One row of what the partition maintenance function did: ``created``, ``dropped`` or ``purged`` (rows of
    the default partition older than the retention)."""

    action: str
    partition: str
    range_start: datetime | None
    range_end: datetime | None
    detail: str | None


# --- the migrator ---------------------------------------------------------------------------------------------------


class Migrator:
    """Applies, rolls back and checks the migrations of ``directory`` on one asyncpg ``connection``.

    The connection stays the caller's (it is not closed here) and must not be inside a transaction: each file gets
    a transaction of its own. Files are read again by every call, so an edit between calls is seen.
    ``lock_timeout_s`` bounds the wait for another process's migration; ``None`` waits for ever.
    """

    def __init__(self, connection: Any, directory: Path | None = None, *, lock_timeout_s: float | None = 600.0) -> None:
        if lock_timeout_s is not None and lock_timeout_s <= 0:
            raise UsageError(f"lock_timeout_s must be a positive number of seconds or None, got {lock_timeout_s!r}")
        self._connection = connection
        self._directory = Path(directory) if directory is not None else shipped_dir("migrations")
        self._lock_timeout_s = lock_timeout_s

    @property
    def directory(self) -> Path:
        return self._directory

    def migrations(self) -> list[Migration]:
        return discover(self._directory)

    # --- up / down ----------------------------------------------------------------------------------------------

    async def up(self, *, to: int | None = None) -> list[Migration]:
        """Apply the pending migrations in order (up to and including number ``to``); return those applied.

        Refuses (:class:`MigrationVerifyError`) while an applied migration's file differs from what was applied.
        """
        migrations = self.migrations()
        if to is not None and not any(m.version == to for m in migrations):
            last = f"the last is {migrations[-1].label}" if migrations else "there are none"
            raise UsageError(f"no migration number {to:03d} in {self._directory}; {last}")
        async with self._locked():
            with _database_errors("reading schema_migrations"):
                applied = await self._applied()
            problems = _problems(migrations, applied)
            if problems:
                raise MigrationVerifyError(_refusal("migrate up", problems), problems)
            pending = [m for m in migrations if m.version not in applied and (to is None or m.version <= to)]
            if not pending:
                at = max(applied.values(), key=lambda a: a.version).label if applied else "no migration"
                logger.info(
                    "nothing to migrate: all %d migrations%s are applied (the database is at %s)",
                    len(applied),
                    "" if to is None else f" up to {to:03d}",
                    at,
                    extra={"directory": str(self._directory), "applied": len(applied)},
                )
                return []
            for migration in pending:
                await self._run_file(migration, forward=True)
            return pending

    async def down(self, n: int | None = 1) -> list[Migration]:
        """Roll back the last ``n`` applied migrations (every one when ``n`` is None), newest first; return them in
        the order rolled back. Asking for more than are applied is a usage error: rolling back drops data.

        Runs the rollback files as they are now: when a migration's file changed since it was applied, its
        rollback may no longer match the database, so a warning is logged before it runs.
        """
        if n is not None and (type(n) is not int or n < 1):
            raise UsageError(f"down(n): n must be an integer >= 1 or None (all), got {n!r}")
        migrations = {m.version: m for m in self.migrations()}
        async with self._locked():
            with _database_errors("reading schema_migrations"):
                applied = await self._applied()
            if n is None:
                n = len(applied)
                if not applied:
                    logger.info("nothing to roll back: no migration is applied")
                    return []
            if n > len(applied):
                raise UsageError(
                    f"cannot roll back {n} migration{'s' if n != 1 else ''}: "
                    + (
                        f"only {len(applied)} {'is' if len(applied) == 1 else 'are'} applied (down {len(applied)} "
                        "rolls them all back)"
                        if applied
                        else "no migration is applied"
                    )
                )
            targets = sorted(applied.values(), key=lambda a: a.version, reverse=True)[:n]
            without_file = [a for a in targets if a.version not in migrations or migrations[a.version].name != a.name]
            if without_file:
                raise MigrationFilesError(
                    "cannot roll back "
                    + ", ".join(a.label for a in without_file)
                    + f": no rollback file for {'it' if len(without_file) == 1 else 'them'} in {self._directory} "
                    "(the database was migrated with other migration files; roll back with those)"
                )
            done: list[Migration] = []
            for record in targets:
                migration = migrations[record.version]
                if migration.checksum != record.checksum:
                    logger.warning(
                        "%s changed after it was applied; rolling it back with the current %s, which may not "
                        "match what was applied",
                        migration.path.name,
                        migration.rollback_path.name,
                        extra={"migration": migration.label},
                    )
                await self._run_file(migration, forward=False)
                done.append(migration)
            return done

    async def _run_file(self, migration: Migration, *, forward: bool) -> None:
        path = migration.path if forward else migration.rollback_path
        sql = migration.sql if forward else migration.rollback_sql
        logger.info("%s %s", "applying" if forward else "rolling back", path.name, extra={"migration": migration.label})
        began = time.perf_counter()
        try:
            async with self._connection.transaction():
                await self._connection.execute(sql)
                duration_ms = (time.perf_counter() - began) * 1000
                if forward:
                    await self._connection.execute(
                        f"INSERT INTO {TABLE} (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                        duration_ms,
                    )
                else:
                    await self._connection.execute(f"DELETE FROM {TABLE} WHERE version = $1", migration.version)
        except asyncpg.PostgresError as exc:
            raise _failure(migration, path, sql, exc, forward=forward) from exc
        except (OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise MigrationError(
                f"lost the connection to PostgreSQL while {'applying' if forward else 'rolling back'} {path}: "
                f"{type(exc).__name__}: {exc}; the server rolls back an unfinished transaction, so run "
                "`onex migrate status` to see where the database stands, then run the command again"
            ) from exc
        logger.info(
            "%s %s in %.0f ms",
            "applied" if forward else "rolled back",
            path.name,
            duration_ms,
            extra={"migration": migration.label, "duration_ms": round(duration_ms, 3)},
        )

    # --- status / verify ----------------------------------------------------------------------------------------

    async def status(self) -> list[MigrationState]:
        """Every migration, applied or pending, and every applied one whose file is gone, by number."""
        migrations = {m.version: m for m in self.migrations()}
        with _database_errors("reading schema_migrations"):
            applied = await self._applied()
        states: list[MigrationState] = []
        for version in sorted(migrations.keys() | applied.keys()):
            file, record = migrations.get(version), applied.get(version)
            if record is None:
                assert file is not None
                states.append(MigrationState(version, file.name, "pending", file.checksum, None, None, None))
                continue
            state: State = "applied"
            if file is None or file.name != record.name:
                state = "missing"
            elif file.checksum != record.checksum:
                state = "changed"
            states.append(
                MigrationState(
                    version=version,
                    name=record.name,
                    state=state,
                    file_checksum=file.checksum if file is not None and state != "missing" else None,
                    applied_checksum=record.checksum,
                    applied_at=record.applied_at,
                    duration_ms=record.duration_ms,
                )
            )
            if state == "missing" and file is not None:
                # The file now under that number is another migration, and that one is not applied.
                states.append(MigrationState(version, file.name, "pending", file.checksum, None, None, None))
        return states

    async def verify(self) -> list[VerifyProblem]:
        """What disagrees between the applied migrations and the files; empty when they agree."""
        migrations = self.migrations()
        with _database_errors("reading schema_migrations"):
            applied = await self._applied()
        return _problems(migrations, applied)

    async def applied(self) -> list[AppliedMigration]:
        """The rows of ``schema_migrations`` by number (none when the table does not exist yet)."""
        with _database_errors("reading schema_migrations"):
            return sorted((await self._applied()).values(), key=lambda a: a.version)

    async def _applied(self) -> dict[int, AppliedMigration]:
        exists = await self._connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
        if not exists:
            return {}
        rows = await self._connection.fetch(
            f"SELECT version, name, checksum, applied_at, duration_ms FROM {TABLE} ORDER BY version"
        )
        return {row["version"]: AppliedMigration(**dict(row)) for row in rows}

    # --- partitions ---------------------------------------------------------------------------------------------

    async def partition_function_exists(self) -> bool:
        with _database_errors(f"looking for {PARTITION_FUNCTION}"):
            return bool(await self._connection.fetchval("SELECT to_regprocedure($1) IS NOT NULL", _PARTITION_SIGNATURE))

    async def ensure_partitions(
        self, months_ahead: int = 3, keep_months: int = 12, *, as_of: datetime | None = None
    ) -> list[PartitionChange]:
        """Create the monthly ``hash_metrics`` partitions of this month (of ``as_of``, UTC) and the next
        ``months_ahead`` months; drop those that ended ``keep_months`` months before this month began."""
        _check_partition_arguments(months_ahead, keep_months, as_of)
        await self._require_partition_function()
        with _database_errors(f"running {PARTITION_FUNCTION}"):
            changes = await self._run_partition_function(months_ahead, keep_months, as_of)
        _log_partition_changes(changes)
        return changes

    async def create_partitions(self, months_ahead: int = 3, *, as_of: datetime | None = None) -> list[PartitionChange]:
        """Create the monthly ``hash_metrics`` partitions of this month (of ``as_of``, UTC) and the next
        ``months_ahead`` months, and drop or delete nothing: the partition maintenance without its retention.

        The function of migration 003 always applies a retention as well (``keep_months`` from 1 to 1200), and an
        applied migration cannot change. So this calls it with the longest retention, 1200 months, with which it
        could only drop partitions (and delete default-partition rows) of months that ended 100 years or more before
        this month began. Even those are kept: the call runs in a transaction that is rolled back, creations
        included, when the function reports anything but ``created``, and a :class:`MigrationError` says so. The
        changes returned are therefore all ``created``."""
        _check_partition_arguments(months_ahead, _LONGEST_RETENTION_MONTHS, as_of)
        await self._require_partition_function()
        with _database_errors(f"running {PARTITION_FUNCTION}"):
            async with self._connection.transaction():
                changes = await self._run_partition_function(months_ahead, _LONGEST_RETENTION_MONTHS, as_of)
                removals = [change for change in changes if change.action != "created"]
                if removals:
                    # Raised inside the block, so the transaction rolls back everything the function did.
                    raise MigrationError(
                        f"{PARTITION_FUNCTION} would have removed data even keeping {_LONGEST_RETENTION_MONTHS} "
                        f"months ({', '.join(f'{c.action} {c.partition}' for c in removals)}), so nothing was "
                        "changed: hash_metrics holds rows more than 100 years old; remove them with "
                        "`onex db partitions --keep N` if that is intended"
                    )
        _log_partition_changes(changes)
        return changes

    async def _require_partition_function(self) -> None:
        if not await self.partition_function_exists():
            raise MigrationError(
                f"function {PARTITION_FUNCTION} does not exist in this database: the hash_metrics migration is not "
                "applied; run `onex migrate up` first"
            )

    async def _run_partition_function(
        self, months_ahead: int, keep_months: int, as_of: datetime | None
    ) -> list[PartitionChange]:
        if as_of is None:
            rows = await self._connection.fetch(
                f"SELECT * FROM {PARTITION_FUNCTION}($1, $2)", months_ahead, keep_months
            )
        else:
            rows = await self._connection.fetch(
                f"SELECT * FROM {PARTITION_FUNCTION}($1, $2, $3)", months_ahead, keep_months, as_of
            )
        return [
            PartitionChange(row["action"], row["partition_name"], row["range_start"], row["range_end"], row["detail"])
            for row in rows
        ]

    async def partitions(self) -> list[tuple[str, str]]:
        """``(name, bound)`` of every partition of ``hash_metrics``, the default one last."""
        with _database_errors("listing the partitions of hash_metrics"):
            rows = await self._connection.fetch(
                """
                SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = to_regclass('hash_metrics')
                ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname
                """
            )
        return [(row["relname"], row["bound"]) for row in rows]

    # --- the lock -----------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self._connection.is_in_transaction():
            raise UsageError(
                "the migrator's connection is inside a transaction; give it a connection of its own, each migration "
                "runs in a transaction of its own"
            )
        with _database_errors("taking the migration lock"):
            await self._acquire_lock()
        try:
            with _database_errors(f"creating {TABLE}"):
                # Checked first rather than IF NOT EXISTS, which sends a notice on every run; the lock makes it safe.
                if not await self._connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE):
                    await self._connection.execute(_CREATE_TABLE)
            yield
        finally:
            if not self._connection.is_closed():
                # An unlock failure is harmless (the lock goes with the session) and must not hide the real error.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await self._connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

    async def _acquire_lock(self) -> None:
        if await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
            return
        holder = await self._connection.fetchval(
            """
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database
                                                                    WHERE datname = current_database())
              AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1
            LIMIT 1
            """,
            MIGRATION_LOCK_KEY >> 32,
            MIGRATION_LOCK_KEY & 0xFFFFFFFF,
        )
        logger.info(
            "waiting for the migration lock: another migration is running (PostgreSQL backend pid %s)",
            holder if holder is not None else "unknown",
            extra={"lock_key": MIGRATION_LOCK_KEY, "holder_pid": holder},
        )
        began = time.perf_counter()
        previous = await self._connection.fetchval("SELECT current_setting('lock_timeout')")
        timeout_ms = 0 if self._lock_timeout_s is None else max(1, round(self._lock_timeout_s * 1000))
        await self._connection.execute("SELECT set_config('lock_timeout', $1, false)", f"{timeout_ms}ms")
        try:
            await self._connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        except asyncpg.LockNotAvailableError:
            raise MigrationError(
                f"another migration (PostgreSQL backend pid {holder}) held the migration lock for more than "
                f"{self._lock_timeout_s:g} s; wait for it to finish, or find it with "
                f"SELECT * FROM pg_stat_activity WHERE pid = {holder}"
            ) from None
        finally:
            # After a cancelled wait the connection may be unusable; the original error matters more.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._connection.execute("SELECT set_config('lock_timeout', $1, false)", previous)
        logger.info(
            "got the migration lock after %.1f s",
            time.perf_counter() - began,
            extra={"lock_key": MIGRATION_LOCK_KEY},
        )


# --- helpers --------------------------------------------------------------------------------------------------------


def _problems(migrations: list[Migration], applied: dict[int, AppliedMigration]) -> list[VerifyProblem]:
    by_version = {m.version: m for m in migrations}
    problems: list[VerifyProblem] = []
    for version, record in sorted(applied.items()):
        file = by_version.get(version)
        if file is None:
            problems.append(
                VerifyProblem(
                    version,
                    record.name,
                    "missing",
                    f"migration {record.label} is applied but there is no {record.label}.sql in "
                    f"{migrations[0].path.parent if migrations else 'the migrations directory'}: the database was "
                    "migrated with newer migrations than these; use those files (or a newer onex)",
                )
            )
        elif file.name != record.name:
            problems.append(
                VerifyProblem(
                    version,
                    record.name,
                    "renamed",
                    f"migration {version:03d} was applied as {record.label} but the file numbered {version:03d} "
                    f"is now {file.path.name}: applied migrations keep their number and name; restore "
                    f"{record.label}.sql and give the new one the next free number",
                )
            )
        elif file.checksum != record.checksum:
            problems.append(
                VerifyProblem(
                    version,
                    record.name,
                    "changed",
                    f"migration {file.path.name} (number {version:03d}) was edited after it was applied "
                    f"(applied checksum {record.checksum[:12]}…, file now {file.checksum[:12]}…): applied "
                    f"migrations must not change; restore {file.path} (e.g. `git checkout -- {file.path.name}` in "
                    "its directory) and put the change in a new migration, or, on a development database, roll it "
                    "back with the original file first (`onex migrate down`) and apply the edited one again",
                )
            )
    if applied:
        newest = max(applied)
        for migration in migrations:
            if migration.version < newest and migration.version not in applied:
                problems.append(
                    VerifyProblem(
                        migration.version,
                        migration.name,
                        "out_of_order",
                        f"migration {migration.path.name} is not applied but a later one "
                        f"({applied[newest].label}) is: it was probably added on another branch; renumber it after "
                        f"{newest:03d} (and its rollback) so that it applies after the ones already applied",
                    )
                )
    return problems


def _refusal(command: str, problems: list[VerifyProblem]) -> str:
    return f"{command} refused: the database does not match the migration files:\n" + "\n".join(
        f"  - {problem.message}" for problem in problems
    )


def _failure(
    migration: Migration, path: Path, sql: str, exc: asyncpg.PostgresError, *, forward: bool
) -> MigrationFailed:
    line = column = None
    position = getattr(exc, "position", None)
    if position is not None and str(position).isdigit():
        # PostgreSQL counts characters from 1 in the string it was sent, which is the file's text.
        offset = min(int(position) - 1, len(sql))
        line = sql.count("\n", 0, offset) + 1
        column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    where = f":{line}:{column}" if line is not None else ""
    lines = [f"{path}{where}: {exc} (SQLSTATE {exc.sqlstate})"]
    if line is not None and column is not None:
        text = sql.splitlines()[line - 1] if line <= len(sql.splitlines()) else ""
        lines += [f"  {line:>5} | {text}", f"  {'':>5} | {' ' * (column - 1)}^"]
    for label in ("detail", "hint", "internal_query", "context"):
        value = getattr(exc, label, None)
        if value:
            lines.append(f"  {label.replace('_', ' ')}: {value}")
    if forward:
        lines.append(
            f"migration {migration.label} was not applied (its transaction was rolled back); the migrations before it "
            "stay applied. Fix the file and run `onex migrate up` again."
        )
    else:
        lines.append(
            f"rollback of {migration.label} failed and was undone; the migration stays applied. Fix "
            f"{migration.rollback_path.name} and run `onex migrate down` again."
        )
    return MigrationFailed("\n".join(lines), path=path, sqlstate=exc.sqlstate, line=line, column=column)


def _check_partition_arguments(months_ahead: int, keep_months: int, as_of: datetime | None) -> None:
    for label, value, low, high in (
        ("months_ahead", months_ahead, 0, 120),
        ("keep_months", keep_months, 1, _LONGEST_RETENTION_MONTHS),
    ):
        if type(value) is not int or not low <= value <= high:
            raise UsageError(f"{label} must be an integer from {low} to {high}, got {value!r}")
    if as_of is not None and as_of.tzinfo is None:
        raise UsageError(f"as_of must be timezone-aware (e.g. datetime.now(UTC)), got {as_of!r}")


def _log_partition_changes(changes: list[PartitionChange]) -> None:
    for change in changes:
        logger.info(
            "%s partition %s%s",
            change.action,
            change.partition,
            f" ({change.detail})" if change.detail else "",
            extra={"action": change.action, "partition": change.partition},
        )


@contextlib.contextmanager
def _database_errors(doing: str) -> Iterator[None]:
    """Turn driver errors into a :class:`MigrationError` saying what was being done."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"PostgreSQL refused {doing}: {exc} (SQLSTATE {exc.sqlstate})") from exc
    except (TimeoutError, OSError, asyncpg.InterfaceError) as exc:
        raise MigrationError(f"lost the connection to PostgreSQL while {doing}: {type(exc).__name__}: {exc}") from exc
