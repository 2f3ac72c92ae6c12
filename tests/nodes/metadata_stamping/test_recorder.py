"""``HashRecorder``: a backlog (after an outage) is written in transactions of at most ``FLUSH_ROWS`` records."""

from __future__ import annotations

import pytest

from nodes.metadata_stamping.recorder import FLUSH_ROWS, HashRecorder, Recorded


class Writes:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.failing = False

    async def write(self, batch: list[Recorded]) -> None:
        if self.failing:
            raise ConnectionError("database away")
        self.sizes.append(len(batch))


async def test_a_backlog_is_written_in_batches_of_at_most_flush_rows() -> None:
    writes = Writes()
    recorder = HashRecorder(writes.write)
    total = 2 * FLUSH_ROWS + 17
    writes.failing = True
    for n in range(total):
        recorder.record({"n": n}, None, None)
    with pytest.raises(ConnectionError):
        await recorder.flush()
    assert recorder.pending == total and writes.sizes == []  # kept while the database is away
    writes.failing = False
    await recorder.flush()
    assert writes.sizes == [FLUSH_ROWS, FLUSH_ROWS, 17]
    assert (recorder.pending, recorder.written, recorder.dropped) == (0, total, 0)
