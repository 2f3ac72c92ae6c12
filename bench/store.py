"""Stamps persisted per second through PostgresStore with the transactional outbox, against raw asyncpg.

Both paths write the same metadata_stamps-shaped rows (64-hex hash, a path, ~0.5 KB of stamp_data and ~0.3 KB of
intelligence_data JSON) in transactions of ``--batch`` rows with ``executemany``:

- store:  ``store.transaction()`` → ``executemany`` of the rows + ``enqueue_many`` of one envelope per row (a
          metadata-stamp-created event), i.e. twice the rows written, plus building and serialising the envelopes;
- raw:    one asyncpg connection, ``transaction()`` → ``executemany`` of the rows alone (JSON serialised by hand).

Rounds alternate between the paths so that neither always runs on a warmer server; the best round of each is
reported with the ratio store/raw. Runs against the embedded PostgreSQL (a throwaway data dir) unless POSTGRES_DSN
is set; either way in a scratch database that is dropped at the end. Nothing here is asserted by the tests.

    .venv/bin/python -m bench.store [--rows 20000] [--batch 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from framework.adapters.embedded_postgres import EmbeddedPostgres
from framework.adapters.migrator import Migrator
from framework.adapters.postgres_store import PostgresStore
from framework.adapters.services import POSTGRES_ENV, check_postgres_dsn
from framework.events.envelope import OnexEnvelopeV1

COLUMNS = (
    "file_hash",
    "namespace",
    "file_path",
    "file_size",
    "content_type",
    "stamp_data",
    "intelligence_data",
    "op_id",
)
INSERT = f"INSERT INTO metadata_stamps ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${i}' for i in range(1, 9))})"
TOPIC = "dev.omninode_bridge.onex.evt.metadata-stamp-created.v1"


def make_rows(count: int, namespace: str) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        file_hash = uuid.uuid4().hex + uuid.uuid4().hex
        rows.append(
            {
                "file_hash": file_hash,
                "namespace": namespace,
                "file_path": f"/srv/projects/omninode/data/batch-{n // 1000:04d}/document-{n:08d}.md",
                "file_size": 1024 + n % 65536,
                "content_type": "text/markdown",
                "stamp_data": {
                    "hash_algorithm": "blake3",
                    "stamp": f"<!-- ONEX:stamp hash={file_hash} ns={namespace} v=1 -->",
                    "stamped_at": "2025-01-02T03:04:05.678901Z",
                    "stamper": {"node": "metadata_stamping", "version": "1.0.0", "instance": "bench-1"},
                    "tags": ["docs", "markdown", "generated", "bench"],
                    "lines": 120 + n % 400,
                    "execution_time_ms": 0.42,
                    "notes": "x" * 180,
                },
                "intelligence_data": {
                    "language": "en",
                    "topics": ["architecture", "events", "persistence"],
                    "summary": "A benchmark document describing nothing in particular. " * 3,
                },
                "op_id": uuid.uuid4(),
            }
        )
    return rows


def event_for(row: dict[str, Any]) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="metadata-stamp-created",
        source_node_id="metadata_stamping",
        source_service="omninode_bridge",
        source_version="1.0.0",
        partition_key=row["file_hash"],
        payload={
            "file_hash": row["file_hash"],
            "namespace": row["namespace"],
            "file_path": row["file_path"],
            "file_size": row["file_size"],
            "op_id": str(row["op_id"]),
        },
    )


async def through_store(store: PostgresStore, rows: list[dict[str, Any]], batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        async with store.transaction() as tx:
            await tx.executemany(INSERT, [tuple(row[c] for c in COLUMNS) for row in chunk])
            await tx.enqueue_many(TOPIC, [event_for(row) for row in chunk])
    return time.perf_counter() - began


async def raw_asyncpg(connection: Any, rows: list[dict[str, Any]], batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        records = [
            (
                row["file_hash"],
                row["namespace"],
                row["file_path"],
                row["file_size"],
                row["content_type"],
                json.dumps(row["stamp_data"]),
                json.dumps(row["intelligence_data"]),
                row["op_id"],
            )
            for row in chunk
        ]
        async with connection.transaction():
            await connection.executemany(INSERT, records)
    return time.perf_counter() - began


@contextlib.asynccontextmanager
async def server_dsn() -> AsyncIterator[str]:
    external = os.environ.get(POSTGRES_ENV, "").strip()
    if external:
        check_postgres_dsn(external)
        yield external
        return
    parent = Path(tempfile.mkdtemp(prefix="onex-bench-store-"))
    try:
        async with EmbeddedPostgres(parent / "data") as server:
            yield server.dsn
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    scratch = urlsplit(dsn)._replace(path=f"/{name}").geturl()
    try:
        connection = await asyncpg.connect(scratch)
        try:
            await Migrator(connection).up()
        finally:
            await connection.close()
        yield scratch
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per round and path")
    parser.add_argument("--batch", type=int, default=100, help="rows per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    async with server_dsn() as dsn, scratch_database(dsn) as scratch:
        connection = await asyncpg.connect(scratch)
        try:
            async with PostgresStore(scratch, min_size=2, max_size=10) as store:
                # Warm both paths (connections, prepared statements) before measuring.
                await through_store(store, make_rows(500, "warm-store"), args.batch)
                await raw_asyncpg(connection, make_rows(500, "warm-raw"), args.batch)
                store_times: list[float] = []
                raw_times: list[float] = []
                for round_number in range(args.rounds):
                    store_rows = make_rows(args.rows, f"store-{round_number}")
                    raw_rows = make_rows(args.rows, f"raw-{round_number}")
                    if round_number % 2 == 0:
                        store_times.append(await through_store(store, store_rows, args.batch))
                        raw_times.append(await raw_asyncpg(connection, raw_rows, args.batch))
                    else:
                        raw_times.append(await raw_asyncpg(connection, raw_rows, args.batch))
                        store_times.append(await through_store(store, store_rows, args.batch))
                async with store.transaction() as tx:
                    outbox_rows = await tx.fetchval("SELECT count(*) FROM outbox")
        finally:
            await connection.close()

    store_rate = args.rows / min(store_times)
    raw_rate = args.rows / min(raw_times)
    print(f"rows per round: {args.rows}, rows per transaction: {args.batch}, rounds: {args.rounds}")
    print(f"store + outbox : {store_rate:10,.0f} stamps/s  (each with its outbox event; {outbox_rows:,} events)")
    print(f"raw executemany: {raw_rate:10,.0f} stamps/s  (rows only)")
    print(f"ratio store/raw: {store_rate / raw_rate:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())
