"""``Batcher``: batching by time and size, idle while empty, keeping and retrying on failure, the bound, the stop's
flush."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from framework import batcher as batcher_module
from framework.backoff import backoff_s
from framework.batcher import Batcher
from framework.errors import UsageError
from tests.pg import wait_for


async def loop_rounds(count: int = 200) -> None:
    """Let the event loop run ``count`` times: a timer due at once (an interval of a nanosecond) fires in each."""
    for _ in range(count):
        await asyncio.sleep(0)


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.failing = False
        self.calls = 0
        self.hang: asyncio.Event | None = None

    async def write(self, batch: list[int]) -> None:
        self.calls += 1
        if self.hang is not None:
            await self.hang.wait()
        if self.failing:
            raise ConnectionError("database away")
        self.batches.append(batch)

    @property
    def written(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


async def test_a_full_batch_is_written_at_once_and_a_partial_one_after_the_interval() -> None:
    sink = Sink()
    batcher = Batcher(sink.write, name="t", flush_interval_s=3600, flush_rows=3)
    batcher.start()
    try:
        for n in range(3):
            batcher.add(n)
        await wait_for(lambda: sink.written == [0, 1, 2], "the full batch")
        batcher.add(3)
        await asyncio.sleep(0.1)
        assert sink.written == [0, 1, 2] and batcher.pending == 1  # waits for the interval (an hour here)
    finally:
        await batcher.stop()
    assert sink.batches == [[0, 1, 2], [3]]  # the stop wrote the rest
    assert (batcher.written, batcher.dropped, batcher.batches) == (4, 0, 2)


async def test_a_failed_write_keeps_its_items_in_order_and_retries_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = Sink()
    sink.failing = True
    batcher = Batcher(sink.write, name="t", flush_interval_s=1e-9, initial_backoff_s=0.05, max_backoff_s=0.2)
    asked: list[dict[str, Any]] = []
    seen: list[tuple[int, int]] = []

    def backoff(attempt: int, **how: Any) -> float:
        # The delays the batcher asks for are recorded, not waited: the test does not depend on the clock.
        asked.append({"attempt": attempt, **how})
        seen.append((sink.calls, batcher.pending))
        if attempt == 2:
            batcher.add(5)
        if attempt == 4:
            sink.failing = False
        return 0.0

    monkeypatch.setattr(batcher_module, "backoff_s", backoff)
    batcher.start()
    try:
        for n in range(5):
            batcher.add(n)
        await wait_for(lambda: batcher.pending == 0, "the write after recovery")
    finally:
        await batcher.stop()
    # One backoff after each failed write (never a retry at the interval), the attempt counting up.
    assert [a["attempt"] for a in asked] == [1, 2, 3, 4]
    assert seen == [(1, 5), (2, 5), (3, 6), (4, 6)]  # the items are kept meanwhile
    # 0.05 s doubling up to 0.2 s (with jitter around that).
    assert [backoff_s(**(a | {"jitter": 0.0})) for a in asked] == [0.05, 0.1, 0.2, 0.2]
    assert {a["jitter"] for a in asked} == {0.1}
    assert sink.calls == 5 and sink.written == [0, 1, 2, 3, 4, 5]
    assert (batcher.written, batcher.dropped, batcher.failures) == (6, 0, 4)


async def test_only_a_stop_ends_a_backoff_not_a_full_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    sink.failing = True
    asked: list[int] = []

    def backoff(attempt: int, **how: Any) -> float:
        asked.append(attempt)
        return 3600.0

    monkeypatch.setattr(batcher_module, "backoff_s", backoff)
    batcher = Batcher(sink.write, name="t", flush_interval_s=1e-9, flush_rows=1)
    batcher.start()
    batcher.add(0)
    await wait_for(lambda: asked == [1], "the first failed write")
    for n in range(1, 4):
        batcher.add(n)  # each one a full batch
    await loop_rounds()
    assert sink.calls == 1 and batcher.wakeups == 1  # still backing off
    sink.failing = False
    await asyncio.wait_for(batcher.stop(), 30)  # does not wait the hour out
    assert sink.written == [0, 1, 2, 3] and asked == [1]


async def test_an_empty_queue_leaves_the_task_idle_without_a_timer() -> None:
    sink = Sink()
    # An interval of a nanosecond: a task that waited by the interval would wake up on every round of the loop.
    batcher = Batcher(sink.write, name="t", flush_interval_s=1e-9)
    batcher.start()
    try:
        await loop_rounds()
        assert (batcher.wakeups, sink.calls) == (0, 0)
        batcher.add(1)
        await wait_for(lambda: sink.written == [1], "the write of the item")
        assert batcher.wakeups == 1
        await loop_rounds()
        assert (batcher.wakeups, sink.calls) == (1, 1)  # empty again: idle again
        batcher.add(2)
        await wait_for(lambda: sink.written == [1, 2], "the write of the second item")
    finally:
        await batcher.stop()
    assert (batcher.wakeups, sink.calls, batcher.written) == (2, 2, 2)


async def test_a_stop_ends_the_idle_wait() -> None:
    sink = Sink()
    batcher = Batcher(sink.write, name="t")
    batcher.start()
    await loop_rounds(5)
    await asyncio.wait_for(batcher.stop(), 30)
    assert (batcher.wakeups, sink.calls) == (0, 0)


async def test_items_a_write_refuses_for_good_are_counted_as_rejected_not_retried() -> None:
    calls: list[list[int]] = []

    async def write(batch: list[int]) -> int | None:
        calls.append(batch)
        return None if 99 not in batch else 0  # a batch holding 99 is refused whole

    batcher = Batcher(write, name="t", max_batch=2)
    for n in (1, 2, 99, 3, 4):
        batcher.add(n)
    await batcher.flush()
    await batcher.flush()
    assert calls == [[1, 2], [99, 3], [4]]
    assert (batcher.written, batcher.rejected, batcher.dropped, batcher.failures, batcher.pending) == (3, 2, 0, 0, 0)


async def test_a_full_queue_drops_counts_and_warns_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    batcher = Batcher(sink.write, name="t", max_queued=3, flush_rows=100, warn_interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="onex.batcher"):
        for n in range(10):
            batcher.add(n)
    assert (batcher.pending, batcher.dropped) == (3, 7)
    assert [r.getMessage() for r in caplog.records] == ["t: dropping items: the queue is full (3 waiting)"]
    assert getattr(caplog.records[0], "dropped_since_last_warning", None) == 1
    await batcher.flush()
    assert sink.written == [0, 1, 2]


async def test_flush_writes_in_batches_of_max_batch() -> None:
    sink = Sink()
    batcher = Batcher(sink.write, name="t", max_batch=4)
    for n in range(10):
        batcher.add(n)
    await batcher.flush()
    assert sink.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_stop_gives_up_at_its_timeout_and_counts_what_it_could_not_write() -> None:
    sink = Sink()
    sink.hang = asyncio.Event()  # the database does not answer
    batcher = Batcher(sink.write, name="t", flush_interval_s=0.01)
    batcher.start()
    for n in range(4):
        batcher.add(n)
    await wait_for(lambda: sink.calls == 1, "the write to start")
    await asyncio.wait_for(batcher.stop(timeout_s=0.2), 5)
    assert sink.written == []
    assert (batcher.pending, batcher.dropped, batcher.written) == (0, 4, 0)


def test_bad_settings_are_refused() -> None:
    async def write(batch: list[int]) -> None:
        pass

    with pytest.raises(UsageError, match="max_queued must be an integer >= 1"):
        Batcher(write, name="t", max_queued=0)
    with pytest.raises(UsageError, match="flush_interval_s must be > 0 seconds"):
        Batcher(write, name="t", flush_interval_s=0)
    with pytest.raises(UsageError, match="max_batch must be an integer >= 1, got 0"):
        Batcher(write, name="t", max_batch=0)
