"""``PostgresEffects``: the ``postgres`` effects of a contract (table, operation, key, columns), bound to a store.

``effects.bind(spec)`` returns a :class:`PostgresEffectCall`, the function a handler calls:

============  =============================================  ===========================================
operation     call                                           returns
============  =============================================  ===========================================
``insert``    ``await save(row)`` / ``await save.many(rows)``  the stored row (``RETURNING *``) / row count
``upsert``    ``await save(row)`` / ``await save.many(rows)``  the stored row / row count; ``keep=``, ``increment=``
                                                             override the contract's
``select``    ``await find(**key)``                           ``list[dict]``: declared columns and key
``update``    ``await touch(values, **key)``                  number of rows updated
``delete``    ``await drop(**key)``                           number of rows deleted
============  =============================================  ===========================================

Decisions:

- SQL text is built from the spec, never from call data: identifiers are quoted, every value is a parameter. The
  statement is built once per shape and reused (so asyncpg's per-connection prepared-statement cache hits): at bind
  time for the shapes the spec fixes (select, delete, and insert/upsert/update of every declared column); a row
  that writes only some columns (leaving the rest to their database defaults) gets its own statement, built on its
  first use and cached on the bound effect.
- ``bind`` is synchronous (the catalog binds effects while building a node) and the table's columns are read from
  ``information_schema`` lazily, once per table per ``PostgresEffects``, on the first call of any effect on it; the
  host may call :meth:`PostgresEffects.verify` at start to read them, and surface spec/table mismatches, before the
  first event arrives.
- Rows and keys are checked against the allowed columns — the declared ``columns`` (plus the key), or every
  writable column of the table when none are declared — before any SQL runs; an unknown column is refused with a
  :class:`~framework.errors.NodeRuleError` naming the allowed ones. Key-based operations need every key column, so
  an update or delete can never hit the whole table by omission.
- Each call joins the transaction open in the caller's context (a handler's), else runs in a transaction of its own;
  ``many`` is one ``executemany`` (pipelined, one round trip per batch).
- An upsert may name (in its contract, or per call) ``keep`` columns (written when the row is inserted, left as stored
  on a conflict: an id, a creation time) and ``increment`` columns (the row's value when inserted, the stored value + 1
  on a conflict: a version), so that "insert, or update and bump the version" is one statement and one round trip
  instead of a select and an upsert, and stays right when two of them race.
- JSON/JSONB columns take Python values (the store's codecs encode them); a ``str`` is stored as a JSON string.

Statements fixed by the contract (:class:`PostgresStatement`, from :func:`fixed_statement`): where the spec fixes an
effect's shape — select and delete always, insert, upsert and update when it declares ``columns`` — ``onex generate``
writes the statement into the node's generated module, and the typed wrapper there runs it with
:func:`run_statement` (a row, its columns in the statement's parameter order; ``RETURNING`` the declared columns — or
the contract's ``returning`` —, not ``*``, so that the returned row has the type the contract gives it). When every
column written is typed, an insert/upsert statement also has a many-rows form (``many_sql``: ``unnest`` of one array
per column, ONE statement for any number of rows, returned in input order; an upsert's keys must be distinct), which
the typed ``<effect>_many`` runs with :func:`run_statement_rows`. The bound effect accepts only the statement its
own spec fixes, so a generated module older than its contract is refused rather than run. Declared column types
(``columns`` as a mapping) are checked against ``information_schema`` together with the names, when the effect is
prepared: :meth:`PostgresEffects.verify` with no arguments prepares every bound effect, which the host does at start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from framework.errors import NodeRuleError, PortError, UsageError
from framework.ports.store import Store, Transaction, in_transaction, rows_affected

__all__ = [
    "PostgresEffectCall",
    "PostgresEffectSpec",
    "PostgresEffects",
    "PostgresStatement",
    "TableInfo",
    "fixed_statement",
    "quote_ident",
    "run_statement",
    "run_statement_many",
    "run_statement_rows",
]

T = TypeVar("T")

_OPERATIONS = ("insert", "upsert", "select", "update", "delete")
#: Distinct partial-row shapes cached per bound effect; more means rows of arbitrary shapes, not a steady stream.
_MAX_SHAPES = 64

_COLUMNS_SQL = """
SELECT column_name, is_generated, identity_generation, udt_name, is_nullable
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1
ORDER BY ordinal_position
"""
_UNIQUE_KEYS_SQL = """
SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1))
  AND i.indisunique AND i.indpred IS NULL
GROUP BY i.indexrelid
"""


class PostgresEffectSpec(Protocol):
    """What a postgres effect declares (``framework.contract.spec.PostgresEffect`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def key(self) -> Sequence[str]: ...
    @property
    def columns(self) -> Sequence[str] | Mapping[str, str]: ...
    @property
    def keep(self) -> Sequence[str]: ...
    @property
    def increment(self) -> Sequence[str]: ...
    @property
    def returning(self) -> Sequence[str] | Mapping[str, str]: ...


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


#: A contract's column type → PostgreSQL's name of it (``information_schema.columns.udt_name``).
_UDT_NAMES = {
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
}


def udt_name(column_type: str) -> str:
    """The ``udt_name`` of a declared column type (``bigint?`` → ``int8``, ``text[]`` → ``_text``)."""
    base = column_type.removesuffix("?")
    array = base.endswith("[]")
    base = base.removesuffix("[]")
    return ("_" if array else "") + _UDT_NAMES.get(base, base)


@dataclass(frozen=True)
class TableInfo:
    """A table's columns in order, those that may be written, and its unique keys (as column sets); the type
    (``udt_name``) of each column and those that may be NULL."""

    table: str
    columns: tuple[str, ...]
    writable: tuple[str, ...]
    unique_keys: tuple[frozenset[str], ...]
    types: Mapping[str, str] = field(default_factory=dict)
    nullable: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PostgresStatement:
    """An effect's SQL as its contract fixes it: ``params`` names the column behind each ``$n``, in order.

    For an insert or upsert: ``returning`` names the columns of the row it returns when the contract declares
    them (else it returns ``params``, the columns it writes); ``keep`` and ``increment`` are
    the upsert's conflict rules (see :func:`fixed_statement`); ``many_sql``, when every column it writes has a
    declared type (and none is an array), writes many rows in one statement — ``$n`` is then an array of the
    column's values, one per row — and returns them in the order given; else ``batch_sql`` is the insert/upsert
    without ``RETURNING``, run once per row in one ``executemany``."""

    effect: str
    operation: str
    table: str
    sql: str
    params: tuple[str, ...]
    key: tuple[str, ...] = ()
    batch_sql: str = ""
    keep: tuple[str, ...] = ()
    increment: tuple[str, ...] = ()
    returning: tuple[str, ...] = ()
    many_sql: str = ""


def _write_order(spec: PostgresEffectSpec) -> tuple[str, ...]:
    """Declared columns, then key columns not among them: the order of every statement's column list."""
    columns = tuple(spec.columns)
    return (*columns, *(k for k in spec.key if k not in columns)) if columns else ()


def fixed_statement(spec: PostgresEffectSpec) -> PostgresStatement | None:
    """The statement ``spec`` fixes, or None when it depends on the table (insert, upsert or update without
    declared columns). Pure: ``onex generate`` calls it, and so does binding, to accept only this statement."""
    key = tuple(spec.key)
    order = _write_order(spec)
    table = quote_ident(spec.table)
    op = spec.operation
    if op in ("select", "delete"):
        if not key:
            return None
        shown = ", ".join(quote_ident(c) for c in order) if order else "*"
        head = f"SELECT {shown} FROM" if op == "select" else "DELETE FROM"
        return PostgresStatement(spec.name, op, spec.table, f"{head} {table} WHERE {_where(key, 1)}", key, key)
    if not order:
        return None
    if op == "update":
        values = tuple(c for c in order if c not in key)
        if not key or not values:
            return None
        sql = _update_sql(table, values, key)
        return PostgresStatement(spec.name, op, spec.table, sql, (*values, *key), key)
    if op not in ("insert", "upsert") or (op == "upsert" and not key):
        return None
    conflict_key = key if op == "upsert" else ()
    keep, increment = tuple(spec.keep), tuple(spec.increment)
    declared = tuple(spec.returning)
    returning = declared or order
    single = _insert_sql(table, order, conflict_key, keep=keep, increment=increment)
    types = dict(spec.columns) if isinstance(spec.columns, Mapping) else {}
    many = _insert_many_sql(table, order, types, conflict_key, keep=keep, increment=increment, returning=returning)
    return PostgresStatement(
        spec.name,
        op,
        spec.table,
        single + " RETURNING " + ", ".join(quote_ident(c) for c in returning),
        order,
        key,
        "" if many else single,
        keep,
        increment,
        declared,
        many,
    )


#: Names the many-rows statement gives its rows, the rows written and their position (ordinality) in the input.
_ROWS, _WRITTEN, _ORDINALITY = "onex_rows", "onex_written", "onex_ordinality"


def _insert_many_sql(
    qtable: str,
    shape: Sequence[str],
    types: Mapping[str, str],
    conflict_key: Sequence[str],
    *,
    keep: Sequence[str],
    increment: Sequence[str],
    returning: Sequence[str],
) -> str:
    """The insert/upsert of ``shape`` for many rows in one statement, or "" when a column has no declared type or
    is an array (``unnest`` flattens arrays of arrays): each ``$n`` is an array of one column's values, cast to its
    declared type, and ``unnest(...) WITH ORDINALITY`` turns them back into rows, numbered in the order given.

    The rows are inserted in that order (so two batches given in one key order lock their rows in that order), and
    returned in it: an upsert's rows are matched back to their input by key (the rows of one statement must have
    distinct keys, which the caller checks: PostgreSQL cannot update a row twice in one statement) and ordered by
    their number. An insert has no key to match by: its rows come back in the order PostgreSQL inserted them, which
    is the input order (the SELECT is ordered by it)."""
    bases = [types.get(c, "").removesuffix("?") for c in shape]
    if not all(bases) or any(b.endswith("[]") for b in bases):
        return ""
    names = ", ".join(quote_ident(c) for c in shape)
    arrays = ", ".join(f"${i}::{b}[]" for i, b in enumerate(bases, 1))
    rows, written, ordinality = quote_ident(_ROWS), quote_ident(_WRITTEN), quote_ident(_ORDINALITY)
    source = f"unnest({arrays}) WITH ORDINALITY AS {rows}({names}, {ordinality})"
    head = f"INSERT INTO {qtable} ({names}) SELECT {names} FROM "
    if not conflict_key:
        return f"{head}{source} ORDER BY {ordinality} RETURNING " + ", ".join(quote_ident(c) for c in returning)
    insert = _insert_sql(qtable, shape, conflict_key, keep=keep, increment=increment)
    conflict = insert[insert.index(" ON CONFLICT ") :]
    carried = [*conflict_key, *(c for c in returning if c not in conflict_key)]
    on = " AND ".join(f"{written}.{quote_ident(k)} = {rows}.{quote_ident(k)}" for k in conflict_key)
    return (
        f"WITH {rows} AS (SELECT * FROM {source}), "
        f"{written} AS ({head}{rows} ORDER BY {ordinality}{conflict} RETURNING "
        + ", ".join(quote_ident(c) for c in carried)
        + ") SELECT "
        + ", ".join(f"{written}.{quote_ident(c)}" for c in returning)
        + f" FROM {written} JOIN {rows} ON {on} ORDER BY {rows}.{ordinality}"
    )


def _where(key: Sequence[str], first: int) -> str:
    return " AND ".join(f"{quote_ident(k)} = ${i}" for i, k in enumerate(key, first))


def _update_sql(qtable: str, shape: Sequence[str], key: Sequence[str]) -> str:
    sets = ", ".join(f"{quote_ident(c)} = ${i}" for i, c in enumerate(shape, 1))
    return f"UPDATE {qtable} SET {sets} WHERE {_where(key, len(shape) + 1)}"


def _insert_sql(
    qtable: str,
    shape: Sequence[str],
    conflict_key: Sequence[str],
    *,
    keep: Sequence[str] = (),
    increment: Sequence[str] = (),
) -> str:
    """INSERT of ``shape``; an upsert on ``conflict_key`` when one is given."""
    names = ", ".join(quote_ident(c) for c in shape)
    params = ", ".join(f"${i}" for i in range(1, len(shape) + 1))
    sql = f"INSERT INTO {qtable} ({names}) VALUES ({params})"
    if conflict_key:
        target = ", ".join(quote_ident(k) for k in conflict_key)
        updates = [c for c in shape if c not in conflict_key and c not in keep]
        # A row of key columns only still "updates" (to itself), so RETURNING yields the stored row either way.
        sets = ", ".join(
            f"{quote_ident(c)} = {qtable}.{quote_ident(c)} + 1"
            if c in increment
            else f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}"
            for c in updates or conflict_key[:1]
        )
        sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
    return sql


class PostgresEffects:
    """Binds postgres effect specs to ``store``; caches table information per table name."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tables: dict[str, TableInfo] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._bound: list[PostgresEffectCall] = []

    @property
    def store(self) -> Store:
        return self._store

    def bind(self, spec: PostgresEffectSpec) -> PostgresEffectCall:
        """The callable for ``spec``; its SQL is built now where the spec fixes it (see the module doc)."""
        call = PostgresEffectCall(self, spec)
        self._bound.append(call)
        return call

    __call__ = bind

    async def verify(self, *effects: PostgresEffectCall) -> None:
        """Read the tables of ``effects`` (default: every effect bound so far) now and check each spec against its
        table: columns, declared types and nullability, the upsert's unique key (raises :class:`PortError`)."""
        for effect in effects or tuple(self._bound):
            await effect.prepare()

    async def table_info(self, table: str) -> TableInfo:
        """The columns of ``table`` in the current schema, read once and cached."""
        info = self._tables.get(table)
        if info is not None:
            return info
        lock = self._locks.setdefault(table, asyncio.Lock())
        async with lock:
            info = self._tables.get(table)
            if info is None:
                info = await self.run(lambda tx: _read_table(tx, table))
                self._tables[table] = info
        return info

    async def run(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run ``work`` in the caller's transaction, or in a new one."""
        return await in_transaction(self._store, work)


async def _read_table(tx: Transaction, table: str) -> TableInfo:
    rows = await tx.fetch(_COLUMNS_SQL, table)
    if not rows:
        schema = await tx.fetchval("SELECT current_schema()")
        raise PortError(
            f"table {table!r} does not exist in schema {schema!r} (or this role may not see its columns); "
            "run `onex migrate up`, or fix the table named in the contract"
        )
    columns = tuple(row["column_name"] for row in rows)
    writable = tuple(
        row["column_name"] for row in rows if row["is_generated"] != "ALWAYS" and row["identity_generation"] != "ALWAYS"
    )
    keys = tuple(frozenset(row["columns"]) for row in await tx.fetch(_UNIQUE_KEYS_SQL, table))
    types = {row["column_name"]: row["udt_name"] for row in rows}
    nullable = frozenset(row["column_name"] for row in rows if row["is_nullable"] == "YES")
    return TableInfo(table, columns, writable, keys, types, nullable)


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "(none)"


class PostgresEffectCall:
    """One bound postgres effect; call it (see the module doc for each operation's arguments)."""

    def __init__(self, effects: PostgresEffects, spec: PostgresEffectSpec) -> None:
        operation = spec.operation
        if operation not in _OPERATIONS:
            raise UsageError(
                f"effect '{spec.name}': operation must be one of {', '.join(_OPERATIONS)}, got {operation!r}"
            )
        key, columns = tuple(spec.key), tuple(spec.columns)
        if operation != "insert" and not key:
            raise UsageError(
                f"effect '{spec.name}': operation {operation} needs key columns (which rows it works on); the "
                "contract declares none"
            )
        for label, names in (("key", key), ("columns", columns)):
            if len(set(names)) != len(names):
                raise UsageError(f"effect '{spec.name}': {label} lists a column twice: {_names(names)}")
        self._effects = effects
        self.name = spec.name
        self.table = spec.table
        self.operation = operation
        self.key = key
        self.columns = columns
        self.column_types: dict[str, str] = dict(spec.columns) if isinstance(spec.columns, Mapping) else {}
        #: The contract's conflict rules (upsert), applied to every call that does not give its own.
        self.keep = tuple(getattr(spec, "keep", ()))
        self.increment = tuple(getattr(spec, "increment", ()))
        returning = getattr(spec, "returning", ())
        self.returning = tuple(returning)
        self.returning_types: dict[str, str] = dict(returning) if isinstance(returning, Mapping) else {}
        if (self.keep or self.increment) and operation != "upsert":
            raise UsageError(f"effect '{spec.name}' is an {operation}; keep and increment are for upserts")
        self._qtable = quote_ident(spec.table)
        self._info: TableInfo | None = None
        self._write_order = _write_order(spec)
        self._shapes: dict[tuple[str, ...], str] = {}
        #: The statement the contract fixes (the one its generated module carries), if it fixes one.
        self.statement = fixed_statement(spec)
        self._fixed_sql = ""
        if operation in ("select", "delete"):
            assert self.statement is not None
            self._fixed_sql = self.statement.sql
        elif columns:
            if operation == "update":
                values = tuple(c for c in self._write_order if c not in key)
                if values:
                    self._shapes[values] = self._build(values)
            else:
                self._statement(self._write_order, keep=self.keep, increment=self.increment)

    def __repr__(self) -> str:
        return f"<postgres effect {self.name!r}: {self.operation} {self.table}>"

    async def prepare(self) -> TableInfo:
        """Read the table (once) and check the spec against it; called by the first use."""
        if self._info is not None:
            return self._info
        info = await self._effects.table_info(self.table)
        problems: list[str] = []
        missing = [c for c in (*self.key, *self.columns, *self.returning) if c not in info.columns]
        if missing:
            problems.append(f"no column(s) {_names(dict.fromkeys(missing))} (it has {_names(info.columns)})")
        if self.operation in ("insert", "upsert", "update"):
            generated = [c for c in self.columns if c in info.columns and c not in info.writable]
            if generated:
                problems.append(f"column(s) {_names(generated)} are generated and cannot be written")
        problems.extend(self._type_problems(info))
        if self.operation == "upsert" and frozenset(self.key) not in info.unique_keys:
            problems.append(
                f"no unique constraint on exactly ({_names(self.key)}), which ON CONFLICT needs; unique keys: "
                + _names("(" + _names(sorted(k)) + ")" for k in info.unique_keys)
            )
        if problems:
            raise PortError(
                f"effect '{self.name}' ({self.operation} on table {self.table!r}) does not match the database: "
                + "; ".join(problems)
                + ". Migrate the database or fix the contract."
            )
        self._info = info
        return info

    def _type_problems(self, info: TableInfo) -> list[str]:
        problems: list[str] = []
        for column, declared in {**self.returning_types, **self.column_types}.items():
            actual = info.types.get(column)
            if actual is None:
                continue  # a missing column is reported as such
            if udt_name(declared) != actual:
                problems.append(f"column {column} is {actual}, the contract declares {declared}")
            elif declared.endswith("?") != (column in info.nullable):
                problems.append(
                    f"column {column} is nullable, declare it as '{declared}?'"
                    if column in info.nullable
                    else f"column {column} is NOT NULL, declare it as '{declared.removesuffix('?')}'"
                )
        return problems

    async def run(self, statement: PostgresStatement, values: Mapping[str, Any]) -> Any:
        """Run ``statement`` (the one the contract fixes: the generated module's) with ``values``, one per
        parameter: insert/upsert → the stored row (its declared columns), select → the rows, update/delete → how
        many rows. Joins the caller's transaction, else runs in one of its own."""
        params = self._params(statement, values)
        await self.prepare()
        sql = statement.sql
        if self.operation in ("insert", "upsert"):
            row = await self._effects.run(lambda tx: tx.fetchrow(sql, *params))
            return None if row is None else dict(row)
        if self.operation == "select":
            return [dict(r) for r in await self._effects.run(lambda tx: tx.fetch(sql, *params))]
        return rows_affected(await self._effects.run(lambda tx: tx.execute(sql, *params)))

    async def run_many(self, statement: PostgresStatement, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run an insert/upsert ``statement`` for every row of ``rows`` in one ``executemany`` (in one statement
        when it has a ``many_sql``: :meth:`run_rows`); return how many."""
        if statement.many_sql:
            return len(await self.run_rows(statement, rows))
        if self.operation not in ("insert", "upsert"):
            raise UsageError(f"effect '{self.name}' is a {self.operation}; batches are for insert and upsert effects")
        batch = [self._params(statement, row) for row in rows]
        await self.prepare()
        if batch:
            sql = statement.batch_sql
            await self._effects.run(lambda tx: tx.executemany(sql, batch))
        return len(batch)

    async def run_rows(self, statement: PostgresStatement, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Insert or upsert ``rows`` with ``statement``'s ``many_sql``: ONE statement and round trip, whatever their
        number; return the stored rows (the ``returning`` columns), in the order of ``rows``. The rows of an upsert
        must have distinct, non-NULL keys (PostgreSQL cannot update a row twice in one statement, and a NULL key
        never conflicts): a duplicate is refused before anything is sent. Joins the caller's transaction, else runs
        in one of its own."""
        self._check_statement(statement)
        if not statement.many_sql:
            raise UsageError(
                f"effect '{self.name}': its statement has no many-rows form (every column it writes needs a declared "
                "type, and none may be an array); use run_many"
            )
        batch = [self._params(statement, row) for row in rows]
        if self.operation == "upsert":
            self._refuse_duplicate_keys(statement, batch)
        await self.prepare()
        if not batch:
            return []
        sql = statement.many_sql
        arrays = [list(column) for column in zip(*batch, strict=True)]
        fetched = await self._effects.run(lambda tx: tx.fetch(sql, *arrays))
        if len(fetched) != len(batch):
            raise PortError(
                f"effect '{self.name}' ({self.operation} on {self.table}): {len(batch)} rows were written but "
                f"{len(fetched)} came back; a trigger may have skipped or re-keyed some"
            )
        return [dict(r) for r in fetched]

    def _refuse_duplicate_keys(self, statement: PostgresStatement, batch: Sequence[tuple[Any, ...]]) -> None:
        positions = [statement.params.index(k) for k in statement.key]
        first: dict[tuple[Any, ...], int] = {}
        for index, values in enumerate(batch):
            key = tuple(values[p] for p in positions)
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(statement.key, key, strict=True))
            if any(v is None for v in key):
                raise NodeRuleError(
                    f"effect '{self.name}' (upsert into {self.table}): row {index} has a NULL key ({shown}); "
                    "an upsert of many rows needs every key column"
                )
            if key in first:
                raise NodeRuleError(
                    f"effect '{self.name}' (upsert into {self.table}): rows {first[key]} and {index} have the same "
                    f"key ({shown}); the rows of one upsert statement must have distinct keys (PostgreSQL cannot "
                    "update a row twice in one statement): write them in separate statements"
                )
            first[key] = index

    def _check_statement(self, statement: PostgresStatement) -> None:
        if statement != self.statement:
            raise UsageError(
                f"effect '{self.name}': the statement given is not the one its contract fixes"
                + ("" if self.statement else " (it fixes none: declare its columns)")
                + "; the generated module is stale: run `onex generate`"
            )

    def _params(self, statement: PostgresStatement, values: Mapping[str, Any]) -> tuple[Any, ...]:
        self._check_statement(statement)
        try:
            return tuple(values[c] for c in statement.params)
        except KeyError:
            missing = [c for c in statement.params if c not in values]
            raise NodeRuleError(
                f"effect '{self.name}' ({self.operation} on {self.table}) needs every column of its statement: "
                f"missing {_names(missing)}"
            ) from None

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        info = await self.prepare()
        if self.operation in ("insert", "upsert"):
            rules = self._conflict_rules(kwargs)
            if len(args) != 1 or kwargs:
                raise UsageError(f"effect '{self.name}' ({self.operation}) takes one row (a dict): {self.name}(row)")
            shape, values = self._row(info, args[0])
            keep, increment = self._conflict_columns(shape, *rules)
            sql = self._statement(shape, keep=keep, increment=increment)
            return await self._effects.run(lambda tx: tx.fetchrow(sql, *values))
        if self.operation == "update":
            if len(args) != 1:
                raise UsageError(
                    f"effect '{self.name}' (update) takes the new values and the key: {self.name}(values, "
                    + ", ".join(f"{k}=..." for k in self.key)
                    + ")"
                )
            shape, values = self._update_values(info, args[0])
            key_values = self._key(kwargs)
            sql = self._statement(shape)
            status = await self._effects.run(lambda tx: tx.execute(sql, *values, *key_values))
            return rows_affected(status)
        if args:
            raise UsageError(
                f"effect '{self.name}' ({self.operation}) takes the key as keywords: {self.name}("
                + ", ".join(f"{k}=..." for k in self.key)
                + ")"
            )
        key_values = self._key(kwargs)
        sql = self._fixed_sql
        if self.operation == "select":
            return await self._effects.run(lambda tx: tx.fetch(sql, *key_values))
        return rows_affected(await self._effects.run(lambda tx: tx.execute(sql, *key_values)))

    async def many(self, rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> int:
        """Insert or upsert ``rows`` (all with the same columns) in one ``executemany``; return how many. ``keep``
        and ``increment`` as for one row."""
        if self.operation not in ("insert", "upsert"):
            raise UsageError(f"effect '{self.name}' is a {self.operation}; many() is for insert and upsert effects")
        rules = self._conflict_rules(kwargs)
        if kwargs:
            raise UsageError(f"effect '{self.name}'.many() takes rows, and keep and increment: got {_names(kwargs)}")
        info = await self.prepare()
        batch: list[tuple[Any, ...]] = []
        shape: tuple[str, ...] | None = None
        for index, row in enumerate(rows):
            row_shape, values = self._row(info, row)
            if shape is None:
                shape = row_shape
            elif row_shape != shape:
                raise UsageError(
                    f"effect '{self.name}'.many(): every row must have the same columns; row 0 has "
                    f"{_names(shape)}, row {index} has {_names(row_shape)}"
                )
            batch.append(values)
        if shape is None:
            return 0
        keep, increment = self._conflict_columns(shape, *rules)
        sql = self._statement(shape, returning=False, keep=keep, increment=increment)
        await self._effects.run(lambda tx: tx.executemany(sql, batch))
        return len(batch)

    # --- checking calls -----------------------------------------------------------------------------------------

    def _allowed_writes(self, info: TableInfo) -> tuple[str, ...]:
        return self._write_order if self.columns else info.writable

    def _row(self, info: TableInfo, row: object) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        if not isinstance(row, Mapping):
            raise UsageError(f"effect '{self.name}' ({self.operation}) takes a row as a dict, got {type(row).__name__}")
        allowed = self._allowed_writes(info)
        self._refuse_unknown(row, allowed, "row")
        if not row:
            raise UsageError(f"effect '{self.name}' ({self.operation}) got an empty row; allowed: {_names(allowed)}")
        if self.operation == "upsert":
            missing = [k for k in self.key if k not in row]
            if missing:
                raise NodeRuleError(
                    f"effect '{self.name}' (upsert into {self.table}) needs the key column(s) {_names(missing)} in "
                    f"every row (the conflict target is {_names(self.key)})"
                )
        shape = tuple(c for c in allowed if c in row)
        return shape, tuple(row[c] for c in shape)

    def _update_values(self, info: TableInfo, values: object) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        if not isinstance(values, Mapping):
            raise UsageError(
                f"effect '{self.name}' (update) takes the new values as a dict, got {type(values).__name__}"
            )
        allowed = tuple(c for c in self._allowed_writes(info) if c not in self.key)
        self._refuse_unknown(values, allowed, "update values")
        if not values:
            raise UsageError(f"effect '{self.name}' (update) got no values to set; allowed: {_names(allowed)}")
        shape = tuple(c for c in allowed if c in values)
        return shape, tuple(values[c] for c in shape)

    def _refuse_unknown(self, given: Mapping[Any, Any], allowed: Sequence[str], what: str) -> None:
        unknown = [c for c in given if c not in allowed]
        if unknown:
            source = "the contract declares" if self.columns else f"table {self.table} has, writable"
            raise NodeRuleError(
                f"effect '{self.name}' ({self.operation} on {self.table}) got unknown column(s) in its {what}: "
                f"{_names(repr(c) for c in unknown)}; allowed ({source}): {_names(allowed)}"
            )

    def _key(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        unknown = [k for k in given if k not in self.key]
        missing = [k for k in self.key if k not in given]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing {_names(missing)}")
            if unknown:
                parts.append(f"unknown {_names(repr(k) for k in unknown)}")
            raise NodeRuleError(
                f"effect '{self.name}' ({self.operation} on {self.table}) takes exactly its key columns as keywords "
                f"({_names(self.key)}): {'; '.join(parts)}"
            )
        return tuple(given[k] for k in self.key)

    def _conflict_rules(self, kwargs: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """Pop ``keep`` and ``increment`` from a call's keywords: those given, else the contract's (and whether
        they are the contract's)."""
        if "keep" not in kwargs and "increment" not in kwargs:
            return self.keep, self.increment, True
        return tuple(kwargs.pop("keep", ())), tuple(kwargs.pop("increment", ())), False

    def _conflict_columns(
        self, shape: tuple[str, ...], keep: tuple[str, ...], increment: tuple[str, ...], declared: bool
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The keep and increment columns of a row of ``shape``: given ones are checked; the contract's apply to the
        columns the row has (a row that leaves one out leaves it to its default on insert, and as stored)."""
        if declared:
            return tuple(c for c in keep if c in shape), tuple(c for c in increment if c in shape)
        if keep or increment:
            self._check_conflict_columns(shape, keep, increment)
        return keep, increment

    def _check_conflict_columns(
        self, shape: tuple[str, ...], keep: tuple[str, ...], increment: tuple[str, ...]
    ) -> None:
        if self.operation != "upsert":
            raise UsageError(f"effect '{self.name}' is an {self.operation}; keep and increment are for upserts")
        for label, names in (("keep", keep), ("increment", increment)):
            wrong = [c for c in names if not isinstance(c, str) or c not in shape or c in self.key]
            if wrong:
                raise UsageError(
                    f"effect '{self.name}': {label} must name non-key columns of the row: {_names(map(repr, wrong))}"
                )
        if set(keep) & set(increment):
            raise UsageError(f"effect '{self.name}': a column cannot be both kept and incremented")

    # --- building SQL -------------------------------------------------------------------------------------------

    def _statement(
        self,
        shape: tuple[str, ...],
        *,
        returning: bool = True,
        keep: tuple[str, ...] = (),
        increment: tuple[str, ...] = (),
    ) -> str:
        cache_key = shape if returning else (*shape, "\x00many")
        if keep or increment:
            cache_key = (*cache_key, "\x00keep", *keep, "\x00increment", *increment)
        sql = self._shapes.get(cache_key)
        if sql is None:
            sql = self._build(shape, returning=returning, keep=keep, increment=increment)
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes[cache_key] = sql
        return sql

    def _build(
        self,
        shape: tuple[str, ...],
        *,
        returning: bool = True,
        keep: tuple[str, ...] = (),
        increment: tuple[str, ...] = (),
    ) -> str:
        if self.operation == "update":
            return _update_sql(self._qtable, shape, self.key)
        conflict_key = self.key if self.operation == "upsert" else ()
        sql = _insert_sql(self._qtable, shape, conflict_key, keep=keep, increment=increment)
        return sql + (" RETURNING *" if returning else "")


def _conflict_kwargs(statement: PostgresStatement) -> dict[str, Any]:
    if not statement.keep and not statement.increment:
        return {}
    return {"keep": list(statement.keep), "increment": list(statement.increment)}


async def run_statement(call: Any, statement: PostgresStatement, values: Mapping[str, Any]) -> Any:
    """What a generated typed wrapper calls: ``statement`` on the effect bound as ``call``. An effect bound some
    other way (``onex test`` records effects instead of running them) gets the ordinary call of its operation
    instead — a row (with the upsert's ``keep`` and ``increment``, when it has them), the new values and the key, or
    the key — so that it sees the same call as untyped code makes."""
    if isinstance(call, PostgresEffectCall):
        return await call.run(statement, values)
    op, key = statement.operation, statement.key
    if op in ("insert", "upsert"):
        return await call(dict(values), **_conflict_kwargs(statement))
    keys = {k: values[k] for k in key}
    if op == "update":
        return await call({c: v for c, v in values.items() if c not in key}, **keys)
    return await call(**keys)


async def run_statement_many(call: Any, statement: PostgresStatement, rows: Iterable[Mapping[str, Any]]) -> int:
    """The batch form of :func:`run_statement`, for insert and upsert statements: how many rows were written."""
    if isinstance(call, PostgresEffectCall):
        return await call.run_many(statement, rows)
    count: int = await call.many(rows, **_conflict_kwargs(statement))
    return count


async def run_statement_rows(call: Any, statement: PostgresStatement, rows: Iterable[Mapping[str, Any]]) -> Any:
    """What a generated typed ``<effect>_many`` calls: ``statement``'s many-rows form on the effect bound as
    ``call`` (:meth:`PostgresEffectCall.run_rows`), the stored rows in the order given. An effect bound some other
    way gets ``call.many(rows, keep=..., increment=...)`` and, from ``returning=True``, a row for each row."""
    if isinstance(call, PostgresEffectCall):
        return await call.run_rows(statement, rows)
    return await call.many(rows, returning=True, **_conflict_kwargs(statement))
