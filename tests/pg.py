"""Helpers for tests on PostgreSQL: a fresh database per test (created through the session server's DSN, whose
role has CREATEDB; migrated unless asked not to; dropped afterwards), a store on one, and bounded waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from framework.adapters.migrator import Migrator
from framework.adapters.postgres_store import PostgresStore

#: Bound for anything a test waits for.
WAIT_S = 30.0


def dsn_for(server_dsn: str, database: str) -> str:
    return urlsplit(server_dsn)._replace(path=f"/{database}").geturl()


@contextlib.asynccontextmanager
async def migrated_database(server_dsn: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new database ``test_<uuid>`` on the server of ``server_dsn`` (migrated unless told not to), dropped after."""
    name = f"test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = dsn_for(server_dsn, name)
    try:
        if migrate:
            connection = await asyncpg.connect(dsn)
            try:
                await Migrator(connection).up()
            finally:
                await connection.close()
        yield dsn
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await _drop(admin, name)
        finally:
            await admin.close()


async def _drop(admin: asyncpg.Connection, name: str, *, attempts: int = 100) -> None:
    """Drop database ``name``. FORCE ends the sessions our role may end; an autovacuum worker (the server's own
    role) in the database for a moment may not be ended by a role that is not a superuser: wait for it to leave."""
    for attempt in range(attempts):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def open_store(server_dsn: str, **settings: Any) -> AsyncIterator[PostgresStore]:
    """A started store on a fresh migrated database; small pool unless ``settings`` say otherwise."""
    settings = {"min_size": 1, "max_size": 10, **settings}
    async with migrated_database(server_dsn) as dsn, PostgresStore(dsn, **settings) as store:
        yield store


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
