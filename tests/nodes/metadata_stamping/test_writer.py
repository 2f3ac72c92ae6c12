"""The stamp writer's group commit, on its own: batches follow the load, and one key is never written twice at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nodes.metadata_stamping.writer import GroupWriter


class Recorder:
    """A write_batch that records each batch and holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.release: list[asyncio.Event] = []
        self.started = asyncio.Event()

    async def write_batch(self, items: list[tuple[str, int]]) -> list[int]:
        self.batches.append(items)
        gate = asyncio.Event()
        self.release.append(gate)
        self.started.set()
        await gate.wait()
        return [n for _, n in items]

    async def write_one(self, item: tuple[str, int]) -> int:
        return item[1]


async def until(check: Callable[[], bool]) -> None:
    """Let the writer's tasks run until ``check`` holds (all in this loop: nothing to wait on but their turns)."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_a_key_being_written_waits_for_its_batch_and_others_go_ahead() -> None:
    recorder = Recorder()
    writer: GroupWriter[tuple[str, int], int] = GroupWriter(
        recorder.write_batch, recorder.write_one, key=lambda item: item[0], max_in_flight=2
    )
    first = asyncio.create_task(writer.submit(("k1", 1)))
    await until(lambda: len(recorder.batches) == 1)
    again = asyncio.create_task(writer.submit(("k1", 2)))
    other = asyncio.create_task(writer.submit(("k2", 3)))
    await until(lambda: len(recorder.batches) == 2)
    # The second batch could start (one slot was free) but leaves k1 behind: batch 1 is writing it.
    assert recorder.batches == [[("k1", 1)], [("k2", 3)]]
    assert writer.pending == 1
    recorder.release[1].set()
    assert await other == 3
    assert len(recorder.batches) == 2 and not again.done()  # still behind batch 1
    recorder.release[0].set()
    assert await first == 1
    await until(lambda: len(recorder.batches) == 3)
    assert recorder.batches[2] == [("k1", 2)]
    recorder.release[2].set()
    assert await again == 2
    await writer.drain()
    assert (writer.batches, writer.written, writer.pending) == (3, 3, 0)


async def test_arrivals_while_a_batch_is_written_share_the_next_one() -> None:
    recorder = Recorder()
    writer: GroupWriter[tuple[str, int], int] = GroupWriter(
        recorder.write_batch, recorder.write_one, key=lambda item: item[0], max_in_flight=1
    )
    first = asyncio.create_task(writer.submit(("a", 0)))
    await until(lambda: len(recorder.batches) == 1)
    rest = [asyncio.create_task(writer.submit((f"k{n}", n))) for n in range(1, 6)]
    await until(lambda: writer.pending == 5)
    recorder.release[0].set()
    await until(lambda: len(recorder.batches) == 2)
    assert recorder.batches[1] == [(f"k{n}", n) for n in range(1, 6)]
    recorder.release[1].set()
    assert [await first, *[await r for r in rest]] == [0, 1, 2, 3, 4, 5]
