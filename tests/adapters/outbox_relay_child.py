"""A child process for tests/adapters/test_outbox_crash.py: an OutboxRelay that publishes its first batch to Kafka,
then, before marking it sent, writes a marker file and hangs, for the parent to SIGKILL it there.

    python -m tests.adapters.outbox_relay_child DSN BOOTSTRAP MARKER BATCH_SIZE

The marker (JSON, written to a temporary name and renamed, so the parent never reads half of it) holds the ids of
the batch, the PostgreSQL backend pid of the batch's transaction (holding the rows' locks, not committed) and that
of the relay's lock connection (holding the leader's advisory lock).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.outbox_relay import OutboxRelay
from framework.adapters.postgres_store import PostgresStore
from framework.ports.store import current_transaction


async def main(dsn: str, bootstrap: str, marker: Path, batch_size: int) -> None:
    async with PostgresStore(dsn, min_size=1, max_size=2) as store, KafkaEventBus(bootstrap) as bus:
        relay = OutboxRelay(store, bus, batch_size=batch_size)

        async def report_and_hang(ids: list[int]) -> None:
            tx = current_transaction(store)
            assert tx is not None, "the hook runs inside the batch's transaction"
            report = {
                "ids": ids,
                "batch_backend_pid": tx.connection.get_server_pid(),  # type: ignore[attr-defined]
                "lock_backend_pid": relay._lock_connection.get_server_pid(),
                "child_pid": os.getpid(),
            }
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(report), encoding="utf-8")
            tmp.replace(marker)
            await asyncio.Event().wait()  # until SIGKILL

        relay._before_commit = report_and_hang
        async with relay:
            await asyncio.Event().wait()


if __name__ == "__main__":
    dsn_arg, bootstrap_arg, marker_arg, batch_arg = sys.argv[1:]
    asyncio.run(main(dsn_arg, bootstrap_arg, Path(marker_arg), int(batch_arg)))
