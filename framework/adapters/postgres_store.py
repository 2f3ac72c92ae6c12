"""``PostgresStore``: the :class:`~framework.ports.store.Store` port on an asyncpg pool.

Pool: ``min_size`` 10 and ``max_size`` 50 connections by default (a host takes them from ``ONEX_DB_POOL_MIN`` and
``ONEX_DB_POOL_MAX``). Statements are prepared and cached by asyncpg *per connection* (an LRU of
``statement_cache_size`` statements each): the first use of a statement on a connection prepares it (one extra round
trip), later uses on that connection skip parsing and planning. So keep SQL text stable (parameters, never values
formatted in) and expect up to ``max_size`` prepares of each statement. A server-side pooler in transaction mode
(pgbouncer) needs ``statement_cache_size=0``.

JSON and JSONB parameters take Python values and come back decoded (codecs are installed on every connection).

Failures and what callers should do:

- A lost connection, a refused connect, a server shutting down or starting up are *connection-level* failures:
  they raise :class:`~framework.errors.RetriablePortError` and count towards the circuit breaker
  (:mod:`framework.adapters.circuit_breaker`): after ``failure_threshold`` consecutive ones the circuit opens and
  transactions fail fast with :class:`~framework.errors.CircuitOpenError` (also retriable) until
  ``reset_timeout_s`` has passed; then one transaction probes the server, and its success closes the circuit. A
  broken connection is dropped by the pool and replaced by a new one on a later acquire, so the store reconnects by
  itself after a server restart. Callers retry the *whole transaction* later (a message handler simply fails and is
  redelivered); a transaction is never retried here, because only the caller can run its block again.
- A connection lost during ``COMMIT`` leaves the outcome unknown: the error says so. Make such work idempotent
  (``claim_event``, upserts) so that running it again is safe.
- Serialization failures, deadlocks, lock and statement timeouts raise ``RetriablePortError`` (not counted by the
  breaker: the server is fine).
- Anything else the server refuses (constraints, types, SQL) raises :class:`~framework.errors.QueryError` with its
  SQLSTATE. A failed statement aborts the transaction, as in PostgreSQL: a block that catches the error and carries
  on is rolled back at its end with a ``QueryError`` saying so; use a nested ``transaction()`` (a savepoint) around
  statements that may fail.

Round trips: a pooled connection is *not* reset (``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL``, unlocking advisory
locks) when it goes back to the pool, which would cost a round trip per transaction; the store leaves no session
state on them (an open transaction is still rolled back by the driver). Session state (``SET`` without ``LOCAL``,
session advisory locks, ``LISTEN``) belongs on a :meth:`PostgresStore.connect` connection, never on
``tx.connection``.

Outbox notifications: ``enqueue`` does not send ``NOTIFY`` inside the transaction. A NOTIFY makes PostgreSQL take a
database-wide lock at commit, held until the commit is flushed, so notifying transactions commit one at a time (and
each one woke the relay for a transaction of its own). Instead, once a transaction that enqueued has committed, the
store sends one ``NOTIFY`` on a pooled connection outside any transaction, coalescing all such commits of a
``notify_interval_s`` window into one (the first without delay). The relay still wakes after every committed row:
a commit always precedes a notification sent after it; the relay's poll covers a notification that is lost.

The pool logs a warning (at most once per ``pool_warning_interval_s``) when more than ``pool_warning_ratio`` (90%) of
``max_size`` connections are in use: a sign the pool is too small or transactions are held too long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from uuid import UUID

import asyncpg

from framework.adapters.circuit_breaker import CircuitBreaker
from framework.adapters.delivery import check_topic_name
from framework.adapters.migrator import Migration, Migrator, PartitionChange
from framework.adapters.services import redact_dsn
from framework.errors import PortError, QueryError, RetriablePortError, UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.resource import Resource
from framework.ports.store import (
    Headers,
    current_transaction,
    reset_current_transaction,
    rows_affected,
    set_current_transaction,
)

__all__ = [
    "OUTBOX_CHANNEL",
    "PostgresStore",
    "PostgresTransaction",
    "decode_outbox_headers",
    "encode_outbox_headers",
    "is_connection_failure",
]

logger = logging.getLogger(__name__)

#: LISTEN/NOTIFY channel on which ``enqueue`` wakes the outbox relay (sent by the store after the transaction commits).
OUTBOX_CHANNEL: Final = "onex_outbox"

_INSERT_OUTBOX: Final = "INSERT INTO outbox (topic, key, value, headers) VALUES ($1, $2, $3, $4) RETURNING id"
_INSERT_OUTBOX_MANY: Final = "INSERT INTO outbox (topic, key, value, headers) VALUES ($1, $2, $3, $4)"
_NOTIFY_OUTBOX: Final = f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')"
#: One chunk of the event log retention: the oldest ids among the rows started before $1, at most $2 of them.
_PRUNE_EVENT_LOGS: Final = (
    "DELETE FROM event_logs WHERE id IN "
    "(SELECT id FROM event_logs WHERE started_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
_CLAIM_EVENT: Final = (
    "INSERT INTO processed_events (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT (consumer_group, event_id) "
    "DO NOTHING"
)

# SQLSTATEs that mean the connection, not the statement, failed: class 08 (connection exception), the server shutting
# down or starting up (57P01-57P03), and too many connections (53300).
_CONNECTION_STATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})
# The server is fine but this attempt lost a race or waited too long: the same transaction may succeed again.
_RETRIABLE_STATES: Final = frozenset({"40001", "40P01", "55P03", "57014"})
# asyncpg's words for a connection that is gone; a pool proxy we still hold reads "released back to the pool" once
# its connection was lost.
#: What the driver raises (TimeoutError, a statement or connect timeout, is an OSError).
_DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
_CLOSED_MARKERS: Final = (
    "connection is closed",
    "connection was closed",
    "released back to the pool",
    "pool is closed",
    "pool is closing",
)


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or the connection was lost."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state.startswith("08") or state in _CONNECTION_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return any(marker in text for marker in _CLOSED_MARKERS)
    if isinstance(exc, asyncpg.InternalClientError):
        # The protocol state is inconsistent, as when the server's goodbye arrives while the client is idle: the
        # connection cannot be trusted any more, whatever the server's state.
        return True
    # TimeoutError is an OSError, but a statement timeout says nothing about the connection.
    return isinstance(exc, OSError | EOFError) and not isinstance(exc, TimeoutError)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _keep_session(connection: Any) -> None:
    """The pool's reset on release: nothing beyond the driver's own (it rolls back an open transaction); see the
    module doc."""


async def _install_codecs(connection: Any) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=_json_dumps, decoder=json.loads, schema="pg_catalog")


def encode_outbox_headers(headers: Headers) -> list[list[Any]]:
    """Headers as stored in ``outbox.headers``: ``[name, text]`` when the value is UTF-8, else
    ``[name, {"base64": ...}]`` (JSON has no bytes; text keeps the common case readable in psql)."""
    stored: list[list[Any]] = []
    for item in headers:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise UsageError(f"a header must be a (name, value) pair, got {item!r}")
        name, value = item
        if not isinstance(name, str) or not isinstance(value, bytes | bytearray):
            raise UsageError(f"a header must be (str, bytes), got ({type(name).__name__}, {type(value).__name__})")
        try:
            stored.append([name, bytes(value).decode("utf-8")])
        except UnicodeDecodeError:
            stored.append([name, {"base64": base64.b64encode(value).decode("ascii")}])
    return stored


def decode_outbox_headers(stored: Any) -> Headers:
    """The inverse of :func:`encode_outbox_headers`; raises ``ValueError`` on anything else."""
    if not isinstance(stored, list):
        raise ValueError(f"outbox headers must be a JSON list of [name, value] pairs, got {stored!r}")
    headers: list[tuple[str, bytes]] = []
    for item in stored:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"an outbox header must be [name, value], got {item!r}")
        name, value = item
        if isinstance(value, str):
            headers.append((name, value.encode("utf-8")))
        elif isinstance(value, dict) and isinstance(value.get("base64"), str):
            try:
                headers.append((name, base64.b64decode(value["base64"], validate=True)))
            except binascii.Error as exc:
                raise ValueError(f"outbox header {name!r} has bad base64: {exc}") from None
        else:
            raise ValueError(f"outbox header {name!r} has a value that is neither text nor {{'base64': ...}}")
    return tuple(headers)


class PostgresTransaction:
    """A :class:`~framework.ports.store.Transaction` on one pooled connection (or a savepoint on its parent's)."""

    __slots__ = ("_active", "_connection", "_failed", "_lost", "_notified", "_parent", "_store")

    def __init__(self, store: PostgresStore, connection: Any, parent: PostgresTransaction | None = None) -> None:
        self._store = store
        self._connection = connection
        self._parent = parent
        self._active = True
        self._failed: str | None = None  # the statement whose failure aborted the transaction
        self._lost = False  # the connection went away inside the transaction
        self._notified = False

    @property
    def store(self) -> PostgresStore:
        return self._store

    @property
    def active(self) -> bool:
        return self._active

    @property
    def connection(self) -> Any:
        """The asyncpg connection, for what the port does not cover; do not commit, roll back or close it."""
        return self._connection

    async def execute(self, sql: str, *args: Any) -> str:
        result: str = await self._run("execute", sql, lambda: self._connection.execute(sql, *args))
        return result

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._run("executemany", sql, lambda: self._connection.executemany(sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows = await self._run("fetch", sql, lambda: self._connection.fetch(sql, *args))
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._run("fetchrow", sql, lambda: self._connection.fetchrow(sql, *args))
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, lambda: self._connection.fetchval(sql, *args))

    async def copy_records(self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]) -> int:
        if isinstance(columns, str):
            raise UsageError(f"columns must be a sequence of column names, got the string {columns!r}")
        status: str = await self._run(
            "copy_records",
            f"COPY {table} ({', '.join(columns)})",
            lambda: self._connection.copy_records_to_table(table, records=records, columns=list(columns)),
        )
        return rows_affected(status)

    async def enqueue(
        self, topic: str, envelope: OnexEnvelopeV1, *, key: bytes | None = None, headers: Headers = ()
    ) -> int:
        row = _outbox_row(topic, envelope, key, headers)
        outbox_id: int = await self._run(
            "enqueue", _INSERT_OUTBOX, lambda: self._connection.fetchval(_INSERT_OUTBOX, *row)
        )
        await self._notify()
        return outbox_id

    async def enqueue_many(self, topic: str, envelopes: Iterable[OnexEnvelopeV1], *, headers: Headers = ()) -> int:
        check_topic_name(topic)
        stored_headers = encode_outbox_headers(headers)
        rows = [(topic, envelope.kafka_key(), envelope.to_json(), stored_headers) for envelope in envelopes]
        if not rows:
            return 0
        await self._run(
            "enqueue_many", _INSERT_OUTBOX_MANY, lambda: self._connection.executemany(_INSERT_OUTBOX_MANY, rows)
        )
        await self._notify()
        return len(rows)

    async def claim_event(self, group: str, event_id: str | UUID) -> bool:
        if not isinstance(group, str) or not group:
            raise UsageError(f"claim_event: group must be a non-empty string, got {group!r}")
        event_uuid = _as_uuid(event_id, "claim_event")
        status: str = await self._run(
            "claim_event", _CLAIM_EVENT, lambda: self._connection.execute(_CLAIM_EVENT, group, event_uuid)
        )
        return status.endswith(" 1")

    async def _notify(self) -> None:
        # No round trip here: the store notifies the relay once the root transaction commits (coalesced with other
        # commits, see the module doc); a savepoint's rows count for its parent only when the savepoint is kept.
        self._notified = True

    async def _run(self, doing: str, sql: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        if not self._active:
            raise UsageError(f"cannot {doing}: the transaction has already ended; open a new one")
        try:
            return await operation()
        except _DRIVER_ERRORS as exc:
            if is_connection_failure(exc):
                self._lost = True
                if not _is_closed(self._connection):
                    self._connection.terminate()  # so the pool replaces it instead of handing it out again
            elif isinstance(exc, asyncpg.PostgresError | TimeoutError):
                self._failed = self._failed or _short(sql)
            raise self._store._port_error(exc, f"{doing} ({_short(sql)})") from exc


def _outbox_row(
    topic: str, envelope: OnexEnvelopeV1, key: bytes | None, headers: Headers
) -> tuple[str, bytes, bytes, list[list[Any]]]:
    check_topic_name(topic)
    if not isinstance(envelope, OnexEnvelopeV1):
        raise UsageError(f"enqueue takes an OnexEnvelopeV1, got {type(envelope).__name__}")
    if key is not None and not isinstance(key, bytes | bytearray):
        raise UsageError(f"key must be bytes or None, got {type(key).__name__}")
    resolved = envelope.kafka_key() if key is None else bytes(key)
    return topic, resolved, envelope.to_json(), encode_outbox_headers(headers)


def _as_uuid(event_id: object, doing: str) -> UUID:
    if isinstance(event_id, UUID):
        return event_id
    try:
        return UUID(str(event_id))
    except ValueError:
        raise UsageError(f"{doing}: event_id must be a UUID (an envelope's event_id), got {event_id!r}") from None


def _is_closed(connection: Any) -> bool:
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # a pool proxy detaches when its connection is lost
        return True


def _short(sql: str, limit: int = 120) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _TransactionScope:
    """What ``store.transaction()`` returns: opens on enter, commits or rolls back on exit."""

    __slots__ = ("_connection", "_handle", "_isolation", "_readonly", "_root", "_store", "_token", "_tx")

    def __init__(self, store: PostgresStore, isolation: str | None, readonly: bool) -> None:
        self._store = store
        self._isolation = isolation
        self._readonly = readonly
        self._handle: Any = None
        self._connection: Any = None
        self._root = True
        self._tx: PostgresTransaction | None = None
        self._token: Any = None

    async def __aenter__(self) -> PostgresTransaction:
        if self._tx is not None:
            raise UsageError("a transaction() scope cannot be entered twice; call store.transaction() again")
        store = self._store
        outer = current_transaction(store)
        if isinstance(outer, PostgresTransaction):
            self._root = False
            self._connection = outer.connection
            handle = outer.connection.transaction()
            await outer._run("open a savepoint", "SAVEPOINT", handle.start)
            self._handle = handle
            self._tx = PostgresTransaction(store, outer.connection, parent=outer)
        else:
            self._connection, self._handle = await store._begin(self._isolation, self._readonly)
            self._tx = PostgresTransaction(store, self._connection)
        self._token = store._bind(self._tx)
        return self._tx

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx = self._tx
        assert tx is not None
        store = self._store
        store._unbind(self._token)
        tx._active = False
        try:
            if exc_type is None and tx._failed is None and not tx._lost:
                await self._commit(tx)
                return
            await self._rollback()
            if exc_type is None and tx._lost:
                raise RetriablePortError(
                    f"the connection to {store.display_dsn} was lost inside the transaction, so the server rolled it "
                    "back; run it again later"
                )
            if exc_type is None:
                raise QueryError(
                    f"the transaction was rolled back: the statement '{tx._failed}' failed inside it and the block "
                    "carried on (PostgreSQL aborts a transaction at its first error); wrap statements that may fail "
                    "in a nested store.transaction() (a savepoint) to continue after them"
                )
        finally:
            if self._root:
                await store._release(self._connection)

    async def _commit(self, tx: PostgresTransaction) -> None:
        store = self._store
        try:
            await self._handle.commit()
        except _DRIVER_ERRORS as exc:
            if is_connection_failure(exc) or isinstance(exc, TimeoutError):
                if not isinstance(exc, TimeoutError):
                    store._breaker.record_failure(exc)
                    store._counters["connection_failures"] += 1
                raise RetriablePortError(
                    f"COMMIT on {store.display_dsn} did not complete ({type(exc).__name__}: {exc}): the transaction "
                    "may or may not have committed; retry only work that is idempotent (claim_event, upserts)"
                ) from exc
            # The server refused the commit (a deferred constraint, a serialization failure) and ended the
            # transaction itself.
            store._counters["rolled_back"] += 1
            raise store._port_error(exc, "COMMIT") from exc
        if tx._parent is not None:
            tx._parent._notified = tx._parent._notified or tx._notified
        else:
            store._counters["committed"] += 1
            if tx._notified:
                store._wake_relay()

    async def _rollback(self) -> None:
        store = self._store
        if self._root:
            store._counters["rolled_back"] += 1
        if _is_closed(self._connection):
            return  # the server rolled it back when the connection went
        try:
            await self._handle.rollback()
        except _DRIVER_ERRORS as exc:
            # The block's own error is what the caller needs; a failed rollback only means the connection is gone,
            # and the pool drops it on release.
            logger.warning(
                "rollback failed",
                extra={"dsn": store.display_dsn, "error": f"{type(exc).__name__}: {exc}"},
            )


class PostgresStore(Resource):
    """The PostgreSQL :class:`~framework.ports.store.Store`.

    ``dsn`` is a ``postgresql://`` URI. Pool: ``min_size``..``max_size`` connections; ``acquire_timeout_s`` bounds
    the wait for a free one; ``connect_timeout_s`` bounds each new connection; ``command_timeout_s`` each statement
    (``None``: no limit). Circuit breaker: ``failure_threshold`` consecutive connection failures open it for
    ``reset_timeout_s``. ``migrations_dir`` defaults to the shipped migrations.
    """

    resource_name = "PostgreSQL store"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 10,
        max_size: int = 50,
        statement_cache_size: int = 256,
        acquire_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float | None = 60.0,
        close_timeout_s: float = 10.0,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        pool_warning_ratio: float = 0.9,
        pool_warning_interval_s: float = 60.0,
        application_name: str = "onex",
        migrations_dir: Path | None = None,
        notify_interval_s: float = 0.01,
    ) -> None:
        super().__init__()
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise UsageError(f"dsn must be a postgresql:// URI, got {redact_dsn(str(dsn))!r}")
        if type(min_size) is not int or type(max_size) is not int or not 0 <= min_size <= max_size or max_size < 1:
            raise UsageError(f"pool sizes must be integers with 0 <= min_size <= max_size, got {min_size}..{max_size}")
        if type(statement_cache_size) is not int or statement_cache_size < 0:
            raise UsageError(f"statement_cache_size must be an integer >= 0, got {statement_cache_size!r}")
        for name, value in (
            ("acquire_timeout_s", acquire_timeout_s),
            ("connect_timeout_s", connect_timeout_s),
            ("close_timeout_s", close_timeout_s),
            ("pool_warning_interval_s", pool_warning_interval_s),
        ):
            if not value > 0:
                raise UsageError(f"{name} must be > 0 seconds, got {value!r}")
        if not 0 < pool_warning_ratio <= 1:
            raise UsageError(f"pool_warning_ratio must be in (0, 1], got {pool_warning_ratio!r}")
        if not notify_interval_s >= 0:
            raise UsageError(f"notify_interval_s must be >= 0 seconds, got {notify_interval_s!r}")
        self._dsn = dsn
        self.display_dsn = redact_dsn(dsn)
        self.resource_name = f"PostgreSQL store {self.display_dsn}"
        self.min_size = min_size
        self.max_size = max_size
        self._statement_cache_size = statement_cache_size
        self._acquire_timeout_s = acquire_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._close_timeout_s = close_timeout_s
        self._warning_ratio = pool_warning_ratio
        self._warning_interval_s = pool_warning_interval_s
        self._server_settings = {"application_name": application_name}
        self._migrations_dir = migrations_dir
        self._breaker = CircuitBreaker(
            f"postgres {self.display_dsn}", failure_threshold=failure_threshold, reset_timeout_s=reset_timeout_s
        )
        self._pool: Any = None
        self._notify_interval_s = notify_interval_s
        self._notify_pending = False
        self._notify_task: asyncio.Task[None] | None = None
        self._last_notify = float("-inf")
        self._last_warning = float("-inf")
        self._suppressed_warnings = 0
        self._counters = {
            "committed": 0,
            "rolled_back": 0,
            "connection_failures": 0,
            "query_errors": 0,
            "retriable_errors": 0,
            "acquire_timeouts": 0,
            "pool_warnings": 0,
        }

    @property
    def dsn(self) -> str:
        """The DSN, password included: for connecting, never for logs (use ``display_dsn``)."""
        return self._dsn

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    # --- life ---------------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                statement_cache_size=self._statement_cache_size,
                command_timeout=self._command_timeout_s,
                timeout=self._connect_timeout_s,
                server_settings=self._server_settings,
                init=_install_codecs,
                reset=_keep_session,
            )
        except _DRIVER_ERRORS as exc:
            raise self._unreachable(exc, "starting the pool") from exc
        logger.info(
            "postgres store started",
            extra={"dsn": self.display_dsn, "min_size": self.min_size, "max_size": self.max_size},
        )

    async def _stop(self) -> None:
        task, self._notify_task = self._notify_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # Waits for connections in use to come back; a handler that overruns is cut off below.
            await asyncio.wait_for(pool.close(), self._close_timeout_s)
        except TimeoutError:
            logger.warning(
                "postgres pool did not close in time; terminating its connections",
                extra={"dsn": self.display_dsn, "close_timeout_s": self._close_timeout_s},
            )
            pool.terminate()
        except _DRIVER_ERRORS as exc:
            logger.warning("postgres pool did not close cleanly", extra={"dsn": self.display_dsn, "error": repr(exc)})
            pool.terminate()
        logger.info("postgres store stopped", extra={"dsn": self.display_dsn})

    async def migrate(self) -> list[Migration]:
        """Apply the pending migrations (the host calls this on start); return those applied."""
        connection = await self.connect()
        try:
            return await Migrator(connection, self._migrations_dir).up()
        finally:
            await connection.close()

    async def maintain_partitions(self, months_ahead: int = 3, keep_months: int | None = None) -> list[PartitionChange]:
        """The ``hash_metrics`` partition maintenance, on a dedicated connection: create this month's and the next
        ``months_ahead`` months' partitions. With ``keep_months`` None (the default, what a running host does) it
        drops and deletes nothing (:meth:`Migrator.create_partitions`, which explains how); with a number it also
        drops the partitions older than that, as ``onex db partitions --keep N`` does. Raises
        :class:`~framework.adapters.migrator.MigrationError` when the database refuses (or lacks the hash_metrics
        migration), :class:`RetriablePortError` when it cannot be reached."""
        connection = await self.connect()
        try:
            migrator = Migrator(connection, self._migrations_dir)
            if keep_months is None:
                return await migrator.create_partitions(months_ahead)
            return await migrator.ensure_partitions(months_ahead, keep_months)
        finally:
            await connection.close()

    async def prune_event_logs(
        self,
        older_than: timedelta,
        *,
        chunk_size: int = 10_000,
        on_chunk: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the ``event_logs`` rows that started more than ``older_than`` ago (by the database's clock, read
        once at the start); return how many.

        Rows go ``chunk_size`` at a time, oldest ids first, each chunk in a short transaction of its own on a pooled
        connection, yielding to the event loop between chunks, until a chunk deletes fewer than ``chunk_size``: a
        large backlog never holds one long transaction or blocks the loop. ``on_chunk`` is called with the count of
        each committed chunk, so a caller counts what was deleted even when a later chunk fails. Rows another
        pruner is deleting at the same time are skipped (``SKIP LOCKED``). Fails like a transaction
        (``RetriablePortError`` when the server is away); chunks committed before a failure stay deleted. Not inside
        a transaction of this store: each chunk must commit by itself."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise UsageError(f"older_than must be a positive timedelta, got {older_than!r}")
        if type(chunk_size) is not int or chunk_size < 1:
            raise UsageError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if current_transaction(self) is not None:
            raise UsageError("prune_event_logs commits chunk by chunk: call it outside a transaction of this store")
        async with self.transaction() as tx:
            cutoff = await tx.fetchval("SELECT now() - $1::interval", older_than)
        total = 0
        while True:
            async with self.transaction() as tx:
                status = await tx.execute(_PRUNE_EVENT_LOGS, cutoff, chunk_size)
            deleted = rows_affected(status)
            total += deleted
            if on_chunk is not None and deleted:
                on_chunk(deleted)
            if deleted < chunk_size:
                return total
            await asyncio.sleep(0)

    async def connect(self) -> Any:
        """A dedicated asyncpg connection outside the pool (for session state: advisory locks, LISTEN); the caller
        closes it. Not guarded by the circuit breaker, which guards the pool."""
        try:
            connection = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout_s,
                command_timeout=self._command_timeout_s,
                statement_cache_size=self._statement_cache_size,
                server_settings=self._server_settings,
            )
        except _DRIVER_ERRORS as exc:
            raise self._unreachable(exc, "opening a dedicated connection") from exc
        try:
            await _install_codecs(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    # --- waking the outbox relay ------------------------------------------------------------------------------

    def _wake_relay(self) -> None:
        """A transaction that enqueued has committed: make sure a NOTIFY follows (see the module doc)."""
        self._notify_pending = True
        task = self._notify_task
        if task is None or task.done():
            self._notify_task = asyncio.create_task(self._send_notifies(), name="onex-outbox-notify")

    async def _send_notifies(self) -> None:
        while self._notify_pending and self._pool is not None:
            delay = self._last_notify + self._notify_interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pool = self._pool
            if pool is None:
                return
            # Cleared before sending: a commit from now on asks for the next notification.
            self._notify_pending = False
            self._last_notify = time.monotonic()
            try:
                await pool.execute(_NOTIFY_OUTBOX, timeout=self._acquire_timeout_s)
            except (*_DRIVER_ERRORS, RuntimeError) as exc:
                # Only a wake-up is lost: the relay polls.
                logger.debug("outbox notification not sent", extra={"dsn": self.display_dsn, "error": repr(exc)})

    # --- transactions -------------------------------------------------------------------------------------------

    def transaction(self, *, isolation: str | None = None, readonly: bool = False) -> _TransactionScope:
        """``async with store.transaction() as tx``: commit at the end of the block, roll back if it raises.

        Inside an open transaction of this store in the same task, a nested one is a savepoint. ``isolation`` is
        ``read_committed`` (the server's default), ``repeatable_read`` or ``serializable``; it applies to a
        top-level transaction only.
        """
        if isolation not in (None, "read_committed", "repeatable_read", "serializable"):
            raise UsageError(f"isolation must be read_committed, repeatable_read or serializable, got {isolation!r}")
        return _TransactionScope(self, isolation, readonly)

    async def copy_records(self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]) -> int:
        """Bulk-load ``records`` into ``table`` with ONE ``COPY`` on a pooled connection, outside any transaction: the
        statement commits by itself, all rows or none, with no ``BEGIN``/``COMMIT`` round trips. For append-only writes
        that belong to no transaction (the event log); inside a transaction use ``tx.copy_records``. Guarded by the
        circuit breaker and failing like a transaction (``RetriablePortError`` when the server is away). Returns the
        number of rows copied."""
        if isinstance(columns, str):
            raise UsageError(f"columns must be a sequence of column names, got the string {columns!r}")
        self.require_started("copy records")
        probe = self._breaker.allow()
        try:
            connection = await self._acquire()
            try:
                status = await connection.copy_records_to_table(table, records=records, columns=list(columns))
            except _DRIVER_ERRORS as exc:
                if is_connection_failure(exc) and not _is_closed(connection):
                    connection.terminate()  # so the pool replaces it instead of handing it out again
                raise self._port_error(exc, f"COPY {table}") from exc
            finally:
                await self._release(connection)
        except BaseException:
            if probe:
                self._breaker.release_probe()  # a verdict, if there was one, was recorded already
            raise
        self._breaker.record_success()
        return rows_affected(status)

    async def _acquire(self) -> Any:
        """A connection of the pool (the caller releases it); ``RetriablePortError`` if none comes."""
        pool = self._pool
        try:
            connection = await pool.acquire(timeout=self._acquire_timeout_s)
        except TimeoutError as exc:
            if pool.get_size() >= self.max_size and pool.get_idle_size() == 0:
                self._counters["acquire_timeouts"] += 1
                raise RetriablePortError(
                    f"no free connection in the pool of {self.display_dsn} within {self._acquire_timeout_s:g} s: "
                    f"all {self.max_size} are in use; raise max_size or hold transactions for less time"
                ) from exc
            raise self._unreachable(exc, "connecting") from exc
        except _DRIVER_ERRORS as exc:
            raise self._unreachable(exc, "connecting") from exc
        self._check_pool_usage()
        return connection

    async def _begin(self, isolation: str | None, readonly: bool) -> tuple[Any, Any]:
        self.require_started("open a transaction")
        probe = self._breaker.allow()
        try:
            connection = await self._acquire()
            try:
                handle = connection.transaction(isolation=isolation, readonly=readonly)
                await handle.start()
            except BaseException as exc:
                await self._release(connection)
                if isinstance(exc, _DRIVER_ERRORS):
                    raise self._port_error(exc, "BEGIN") from exc
                raise
        except BaseException:
            if probe:
                self._breaker.release_probe()  # a verdict, if there was one, was recorded already
            raise
        self._breaker.record_success()
        return connection, handle

    async def _release(self, connection: Any) -> None:
        pool = self._pool
        if pool is None:  # stopped meanwhile: the pool terminated the connection
            return
        try:
            await pool.release(connection)
        except _DRIVER_ERRORS as exc:
            # Resetting a broken connection fails; the pool has dropped it and will open a new one when needed.
            logger.info("released a broken connection", extra={"dsn": self.display_dsn, "error": repr(exc)})

    def _bind(self, tx: PostgresTransaction) -> Any:
        return set_current_transaction(tx)

    def _unbind(self, token: Any) -> None:
        with contextlib.suppress(ValueError):  # a token from another context: the context dies with its task
            reset_current_transaction(token)

    # --- errors -------------------------------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException, doing: str) -> RetriablePortError:
        self._breaker.record_failure(exc)
        self._counters["connection_failures"] += 1
        return RetriablePortError(
            f"PostgreSQL at {self.display_dsn} is unreachable ({doing}: {type(exc).__name__}: {exc}); retry later"
        )

    def _port_error(self, exc: BaseException, doing: str) -> PortError:
        if is_connection_failure(exc):
            self._breaker.record_failure(exc)
            self._counters["connection_failures"] += 1
            return RetriablePortError(
                f"lost the connection to {self.display_dsn} during {doing}: {type(exc).__name__}: {exc}; the "
                "transaction was rolled back by the server; run it again later"
            )
        if isinstance(exc, TimeoutError):
            self._counters["retriable_errors"] += 1
            return RetriablePortError(
                f"{doing} on {self.display_dsn} exceeded command_timeout_s={self._command_timeout_s}; retry later"
            )
        state = getattr(exc, "sqlstate", None)
        if state in _RETRIABLE_STATES:
            self._counters["retriable_errors"] += 1
            return RetriablePortError(f"{doing} failed and may succeed if retried: {exc} (SQLSTATE {state})")
        self._counters["query_errors"] += 1
        detail = getattr(exc, "detail", None)
        return QueryError(
            f"PostgreSQL refused {doing}: {exc}" + (f" ({detail})" if detail else "") + f" (SQLSTATE {state})",
            sqlstate=state,
            constraint=getattr(exc, "constraint_name", None),
        )

    # --- observability ------------------------------------------------------------------------------------------

    def _check_pool_usage(self) -> None:
        pool = self._pool
        size, idle = pool.get_size(), pool.get_idle_size()
        used = size - idle
        if used <= self._warning_ratio * self.max_size:
            return
        now = time.monotonic()
        if now - self._last_warning < self._warning_interval_s:
            self._suppressed_warnings += 1
            return
        self._last_warning = now
        self._counters["pool_warnings"] += 1
        logger.warning(
            "postgres pool over %d%% used: %d of %d connections in use",
            round(self._warning_ratio * 100),
            used,
            self.max_size,
            extra={
                "dsn": self.display_dsn,
                "pool_used": used,
                "pool_size": size,
                "pool_max": self.max_size,
                "suppressed_since_last": self._suppressed_warnings,
            },
        )
        self._suppressed_warnings = 0

    def stats(self) -> dict[str, Any]:
        """Pool occupancy, circuit state and counters, for the host's /health and /metrics."""
        pool = self._pool
        size = pool.get_size() if pool is not None else 0
        idle = pool.get_idle_size() if pool is not None else 0
        return {
            "pool": {
                "size": size,
                "used": size - idle,
                "idle": idle,
                "free": self.max_size - (size - idle),
                "min": self.min_size,
                "max": self.max_size,
            },
            "circuit": self._breaker.stats(),
            **self._counters,
        }
