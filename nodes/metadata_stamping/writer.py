"""Group commit of stamps: concurrent requests share one transaction.

A stamp written on its own costs four round trips to PostgreSQL (BEGIN, the upsert, the outbox row, COMMIT), and on
a small machine each round trip is a wake-up of the server and of this process. Under load most of a request's time
went there. So a stamp that does not join a caller's transaction is handed to :class:`GroupWriter`, which writes
everything waiting in ONE transaction: one statement upserts all the rows, one ``executemany`` writes all their
outbox events, one COMMIT. Each stamp and its event still commit together (the transactional outbox), and a request
is answered only after that commit.

No timer: a batch starts as soon as fewer than ``max_in_flight`` are being written, with whatever is waiting then. A
lone request is written at once (as before); while a batch is in flight, arrivals gather for the next one, so the
batch size follows the load.

Two stamps of the same key (namespace, hash) are never written at the same time, in one batch (one statement may
not upsert a row twice) or in two batches in flight (either might take the row's lock first): the later one waits
until the earlier one's batch is done, so stamps of one key are committed, and their events published, in the order
they arrived. Rows of a batch are written in key order, so two batches in flight lock their rows in the same order
(no deadlock).

When a batch fails, each of its stamps is written again on its own, so one bad stamp fails alone with its own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger("onex.node.metadata_stamping.writer")

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")

MAX_BATCH = 256
MAX_IN_FLIGHT = 2


class GroupWriter(Generic[I, R]):
    """Writes submitted items in batches: ``write_batch(items)`` answers one result per item, in order;
    ``write_one(item)`` is the fallback for the items of a batch that failed. ``key(item)`` says which items may not
    share a batch."""

    def __init__(
        self,
        write_batch: Callable[[list[I]], Awaitable[Sequence[R]]],
        write_one: Callable[[I], Awaitable[R]],
        key: Callable[[I], Hashable],
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._write_batch = write_batch
        self._write_one = write_one
        self._key = key
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._writing: set[Hashable] = set()  # the keys of the batches in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.written = 0
        self.fallbacks = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def submit(self, item: I) -> R:
        """Write ``item`` with whatever else is waiting; return its result once its transaction committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._kick()
        return await future

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _kick(self) -> None:
        while self._queue and len(self._tasks) < self._max_in_flight:
            batch = self._take()
            if not batch:  # everything waiting is behind a key being written; its batch's end kicks again
                return
            task = asyncio.create_task(self._run(batch), name="onex-stamping-group-commit")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._kick()

    def _take(self) -> list[tuple[I, asyncio.Future[R]]]:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        left: list[tuple[I, asyncio.Future[R]]] = []
        keys: set[Hashable] = set(self._writing)
        for entry in self._queue:
            key = self._key(entry[0])
            # A key already in this batch, or waiting behind one left for later, keeps its place in line.
            if len(batch) >= self._max_batch or key in keys:
                left.append(entry)
                keys.add(key)
                continue
            keys.add(key)
            batch.append(entry)
        self._queue = left
        self._writing.update(self._key(item) for item, _ in batch)
        return batch

    async def _run(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            await self._write(batch)
        finally:
            self._writing.difference_update(self._key(item) for item, _ in batch)

    async def _write(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._write_batch(items)
        except asyncio.CancelledError:  # stopping: nobody is left to answer
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # any failure: each item again on its own, so a bad one fails alone
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            self.fallbacks += 1
            log.info("a group commit failed; writing its stamps one by one", extra={"size": len(batch)}, exc_info=exc)
            for item, future in batch:
                try:
                    _settle(future, result=await self._write_one(item))
                except Exception as one_exc:
                    _settle(future, error=one_exc)
            return
        self.batches += 1
        self.written += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (its client went away); the stamp is written all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
