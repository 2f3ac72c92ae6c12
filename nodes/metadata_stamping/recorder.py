"""Hash metrics and blake3-hash-generated events, written in batches off the request path.

A hash takes microseconds; a database round trip per hash would make ``/hash`` as slow as the database. So each
hash is queued here, and a background task writes what is queued every :data:`FLUSH_INTERVAL_S` (or as soon as
:data:`FLUSH_ROWS` are waiting) in ONE transaction: the ``hash_metrics`` rows with one ``executemany`` and the events
through the outbox. The price: rows and events still queued when the process dies are lost; they are metrics and
announcements, not data (a stamp and its metadata-stamp-created event are written in the request's transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from framework.events.envelope import OnexEnvelopeV1

FLUSH_INTERVAL_S = 0.05
FLUSH_ROWS = 1000
MAX_QUEUED = 100_000

log = logging.getLogger("onex.node.metadata_stamping.recorder")


@dataclass(frozen=True)
class Recorded:
    metric: dict[str, Any]
    event: dict[str, Any] | None
    cause: OnexEnvelopeV1 | None


Flush = Callable[[list[Recorded]], Awaitable[None]]


class HashRecorder:
    """Queue of hash records, flushed by ``flush`` (the node's: it owns the effects and the transaction)."""

    def __init__(self, flush: Flush) -> None:
        self._flush = flush
        self._queue: list[Recorded] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()  # one flush at a time: a caller of flush() waits for the one in progress
        self.dropped = 0
        self.written = 0

    def record(self, metric: dict[str, Any], event: dict[str, Any] | None, cause: OnexEnvelopeV1 | None) -> None:
        if len(self._queue) >= MAX_QUEUED:  # the database is down or slow: keep memory bounded
            self.dropped += 1
            return
        self._queue.append(Recorded(metric, event, cause))
        if len(self._queue) >= FLUSH_ROWS:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="onex-stamping-recorder")

    async def stop(self) -> None:
        """Stop the loop and write what is queued."""
        task, self._task = self._task, None
        if task is not None:
            # Ask the loop to finish rather than cancel it: a cancel in the middle of a flush would lose the batch
            # it had taken off the queue.
            self._stopping = True
            self._wake.set()
            await task
        await self.flush()

    async def flush(self) -> None:
        """Write what is queued now (after any flush in progress)."""
        async with self._lock:
            await self._flush_now()

    async def _flush_now(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            await self._flush(batch)
            self.written += len(batch)
        except Exception:
            # Put them back in front (bounded): the next flush retries them.
            kept = batch[: max(0, MAX_QUEUED - len(self._queue))]
            self._queue[:0] = kept
            self.dropped += len(batch) - len(kept)
            log.warning("hash metrics not written; will retry", exc_info=True, extra={"rows": len(batch)})
            raise

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            with contextlib.suppress(Exception):
                await self.flush()
