"""``Batcher``: batching by time and size, keeping and retrying on failure, the bound, the stop's flush."""

from __future__ import annotations

import asyncio
import logging

import pytest

from framework.batcher import Batcher
from framework.errors import UsageError
from tests.pg import wait_for


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


async def test_a_failed_write_keeps_its_items_in_order_and_retries_with_backoff() -> None:
    sink = Sink()
    sink.failing = True
    batcher = Batcher(sink.write, name="t", flush_interval_s=0.01, initial_backoff_s=0.05, max_backoff_s=0.2)
    batcher.start()
    try:
        for n in range(5):
            batcher.add(n)
        await wait_for(lambda: sink.calls >= 3, "a few failed writes")
        batcher.add(5)
        await asyncio.sleep(0.5)
        # Backing off: at 0.05, 0.1, 0.2, 0.2 ... s apart, not every 0.01 s interval.
        assert sink.calls < 12
        assert batcher.pending == 6 and batcher.dropped == 0 and batcher.failures >= 3
        sink.failing = False
        await wait_for(lambda: batcher.pending == 0, "the write after recovery")
    finally:
        await batcher.stop()
    assert sink.written == [0, 1, 2, 3, 4, 5]
    assert batcher.written == 6


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
