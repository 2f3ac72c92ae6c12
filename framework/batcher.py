"""``Batcher``: items queued in memory by a hot path, written in batches by a background task.

What is recorded often but need not be written at once (hash metrics, the event log) must not cost the path that
records it a database round trip. :meth:`Batcher.add` is a list append; a background task writes what is queued
``flush_interval_s`` after the first item arrived, or as soon as ``flush_rows`` are waiting, with one call of ``write``
per batch of at most ``max_batch`` items (all that is queued by default). The rules:

- **Idle when empty.** While nothing is queued the task waits, with no timer, for an item (or a stop): an idle host
  does not wake it up every interval.
- **Bounded.** At most ``max_queued`` items wait. When the queue is full (the database is down or slow) ``add`` drops
  the item, counts it in ``dropped`` and logs a warning at most once per ``warn_interval_s``: the producer is never
  blocked and never fails.
- **Kept on failure.** A batch whose write raised goes back to the front of the queue (as much of it as fits), and
  the task retries with exponential backoff (:func:`framework.backoff.backoff_s`, ``initial_backoff_s`` doubling up
  to ``max_backoff_s``) instead of every interval; only a stop cuts a backoff short.
- **Refused for good.** ``write`` returns ``None`` when it wrote its whole batch. A write that refuses items for good
  (bad values a retry cannot fix) returns how many it did write instead: the rest are counted in ``rejected`` and not
  retried.
- **Flushed on stop.** :meth:`Batcher.stop` lets a write in flight finish, then writes what is queued, all within
  ``timeout_s``; whatever could not be written then is counted as dropped and logged.

Items still queued when the process dies are lost: use it for what may be lost (metrics, traces), never for data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from framework.backoff import backoff_s
from framework.errors import UsageError

__all__ = ["Batcher"]

T = TypeVar("T")

_log = logging.getLogger("onex.batcher")


class Batcher(Generic[T]):
    """Queue of items written in batches by ``write``, which raises when a batch was not written (it is kept and
    retried) and returns ``None`` when all of it was, or the number of its items it wrote when it refused the others
    for good."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[int | None]],
        *,
        name: str,
        flush_interval_s: float = 0.1,
        flush_rows: int = 1000,
        max_queued: int = 100_000,
        max_batch: int | None = None,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        warn_interval_s: float = 60.0,
        logger: logging.Logger | None = None,
    ) -> None:
        counts = [("flush_rows", flush_rows), ("max_queued", max_queued)]
        if max_batch is not None:
            counts.append(("max_batch", max_batch))
        for what, count in counts:
            if type(count) is not int or count < 1:
                raise UsageError(f"{name}: {what} must be an integer >= 1, got {count!r}")
        for what, seconds in (
            ("flush_interval_s", flush_interval_s),
            ("initial_backoff_s", initial_backoff_s),
            ("max_backoff_s", max_backoff_s),
            ("warn_interval_s", warn_interval_s),
        ):
            if not seconds > 0:
                raise UsageError(f"{name}: {what} must be > 0 seconds, got {seconds!r}")
        self.name = name
        self._write = write
        self._interval_s = flush_interval_s
        self._flush_rows = flush_rows
        self._max_queued = max_queued
        self._max_batch = max_queued if max_batch is None else max_batch
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max(max_backoff_s, initial_backoff_s)
        self._warn_interval_s = warn_interval_s
        self._log = logger or _log
        self._queue: list[T] = []
        self._wake = asyncio.Event()  # flush_rows are queued (or a stop): write now
        self._arrived = asyncio.Event()  # the queue is no longer empty (or a stop): start the interval
        self._stopped = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time: a caller of flush() waits for the one in progress
        self._task: asyncio.Task[None] | None = None
        self._last_warning = float("-inf")
        self._dropped_unreported = 0
        #: Items written, dropped (queue full, or still queued when a stop gave up), and refused for good by
        #: ``write`` (see the class docstring), since creation.
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        #: Writes that returned, and writes that raised.
        self.batches = 0
        self.failures = 0
        #: Times the background task woke up to write (or to retry after a backoff); it does not while the queue is
        #: empty.
        self.wakeups = 0

    # --- the hot path -------------------------------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Queue ``item`` (an append); drop it when ``max_queued`` are waiting already. Never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self._max_queued:
            self._drop(1, "the queue is full")
            return
        queue.append(item)
        waiting = len(queue)
        if waiting == 1:
            self._arrived.set()
        if waiting >= self._flush_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Items queued, not yet written."""
        return len(self._queue)

    # --- life ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self._run(), name=f"onex-batcher-{self.name}")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop the task and write what is queued, within ``timeout_s`` (``None``: no limit). Never raises for a
        failed write: what is left unwritten is counted as dropped and logged."""
        task, self._task = self._task, None
        self._stopped.set()
        self._wake.set()
        self._arrived.set()
        try:
            async with asyncio.timeout(timeout_s):
                if task is not None:
                    # Let the loop finish rather than cancel it: a write in flight completes (or fails and requeues).
                    await asyncio.gather(task, return_exceptions=True)
                await self.flush()
        except TimeoutError:
            self._log.warning(
                f"{self.name}: not all written within the stop timeout",
                extra={"batcher": self.name, "timeout_s": timeout_s, "pending": len(self._queue)},
            )
        except Exception:
            self._log.warning(f"{self.name}: final write failed", exc_info=True, extra={"batcher": self.name})
        finally:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._queue:
            lost, self._queue = len(self._queue), []
            self.dropped += lost
            self._log.warning(
                f"{self.name}: {lost} items not written on stop, dropped", extra={"batcher": self.name, "lost": lost}
            )

    async def flush(self) -> None:
        """Write what is queued now (after any flush in progress), in batches of at most ``max_batch``; raise if a
        write fails (its batch and the rest stay queued)."""
        async with self._lock:
            remaining = len(self._queue)
            while remaining > 0 and self._queue:
                count = min(remaining, self._max_batch, len(self._queue))
                batch = self._queue[:count]
                del self._queue[:count]
                remaining -= count
                try:
                    result = await self._write(batch)
                except BaseException:  # a cancelled write too: its batch stays for the next one (or is counted)
                    self.failures += 1
                    self._requeue(batch)
                    raise
                done = count if result is None else max(0, min(count, result))
                self.written += done
                self.rejected += count - done
                self.batches += 1

    # --- internals ----------------------------------------------------------------------------------------------

    def _requeue(self, batch: list[T]) -> None:
        room = max(0, self._max_queued - len(self._queue))
        self._queue[:0] = batch[:room]
        if self._queue:
            self._arrived.set()  # for a flush() of another caller: the task may be waiting for items
        if len(batch) > room:
            self._drop(len(batch) - room, "the queue is full while writes fail")

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self._dropped_unreported += count
        now = time.monotonic()
        if now - self._last_warning >= self._warn_interval_s:
            self._last_warning = now
            self._log.warning(
                f"{self.name}: dropping items: {reason} ({self._max_queued} waiting)",
                extra={
                    "batcher": self.name,
                    "dropped_since_last_warning": self._dropped_unreported,
                    "dropped_total": self.dropped,
                },
            )
            self._dropped_unreported = 0

    async def _sleep(self, seconds: float, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    async def _until_queued(self) -> None:
        """Wait, with no timer, until something is queued or a stop was asked for."""
        while not self._queue and not self._stopped.is_set():
            self._arrived.clear()
            await self._arrived.wait()

    async def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            if failures:
                # Backing off: only a stop ends the wait early (a full queue must not turn it into a busy loop).
                delay = backoff_s(
                    failures, initial_s=self._initial_backoff_s, multiplier=2.0, max_s=self._max_backoff_s, jitter=0.1
                )
                await self._sleep(delay, self._stopped)
            else:
                await self._until_queued()
                if not self._stopped.is_set():
                    await self._sleep(self._interval_s, self._wake)
            self._wake.clear()
            if self._stopped.is_set():
                return  # stop() writes what is left
            self.wakeups += 1
            try:
                await self.flush()
            except Exception as exc:
                failures += 1
                self._log.warning(
                    f"{self.name}: write failed; kept, will retry",
                    extra={
                        "batcher": self.name,
                        "error": f"{type(exc).__name__}: {exc}",
                        "pending": len(self._queue),
                        "consecutive_failures": failures,
                    },
                )
            else:
                failures = 0
