"""``_Turns``, the Kafka bus's FIFO lock around handing records to the producer: order of the calls, and no turn
lost or held by a cancelled publisher. (The bus's ordering itself is in the conformance suite.)"""

from __future__ import annotations

import asyncio

import pytest

from framework.adapters.kafka_bus import _Turns


async def take(turns: _Turns, name: str, order: list[str], hold: asyncio.Event | None = None) -> None:
    if not turns.take():
        await turns.wait()
    try:
        order.append(name)
        if hold is not None:
            await hold.wait()
    finally:
        turns.release()


async def test_turns_go_in_the_order_asked_and_a_free_one_is_taken_at_once() -> None:
    turns, order, hold = _Turns(), list[str](), asyncio.Event()
    first = asyncio.create_task(take(turns, "first", order, hold))
    await asyncio.sleep(0)
    assert order == ["first"]  # a free turn: no waiting
    others = [asyncio.create_task(take(turns, f"w{i}", order)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == ["first"]
    assert not turns.take()  # taken, and others wait: a newcomer does not jump the line
    hold.set()
    await asyncio.gather(first, *others)
    assert order == ["first", "w0", "w1", "w2", "w3", "w4"]
    assert turns.take()  # free again
    turns.release()


async def test_a_waiter_cancelled_in_line_leaves_it() -> None:
    turns, order, hold = _Turns(), list[str](), asyncio.Event()
    holder = asyncio.create_task(take(turns, "holder", order, hold))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(take(turns, "cancelled", order))
    after = asyncio.create_task(take(turns, "after", order))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    hold.set()
    await asyncio.gather(holder, after)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert order == ["holder", "after"]
    assert turns.take()
    turns.release()


async def test_a_waiter_cancelled_as_it_is_handed_the_turn_passes_it_on() -> None:
    turns, order = _Turns(), list[str]()
    assert turns.take()
    handed = asyncio.create_task(take(turns, "handed", order))
    after = asyncio.create_task(take(turns, "after", order))
    await asyncio.sleep(0.01)
    turns.release()  # hands the turn to "handed", which has not run yet ...
    handed.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 5)
    assert order == ["after"]
    assert turns.take()
    turns.release()
