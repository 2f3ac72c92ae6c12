"""A bus handler that keeps what it is given, with bounded waits: the one collector the end-to-end tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from framework.ports.event_bus import Message


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def wait_until(self, done: Callable[[list[Message]], bool], timeout: float = 60.0) -> list[Message]:
        """All messages, once ``done(messages)`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                self.arrived.clear()
                if done(self.messages):
                    return self.messages
                await self.arrived.wait()

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[Message]:
        """All messages, once there are at least ``count``."""
        return await self.wait_until(lambda messages: len(messages) >= count, timeout)

    async def matching(self, ok: Callable[[Message], bool], timeout: float = 60.0) -> list[Message]:
        """The messages that satisfy ``ok``, once there is one (a new group may also read older messages)."""
        await self.wait_until(lambda messages: any(ok(m) for m in messages), timeout)
        return [m for m in self.messages if ok(m)]

    async def quiet(self, period_s: float = 0.25, rounds: int = 20) -> None:
        """Consume on until nothing more arrives for ``period_s`` (at most ``rounds`` periods), so that a
        duplicate would show."""
        for _ in range(rounds):
            before = len(self.messages)
            await asyncio.sleep(period_s)
            if len(self.messages) == before:
                return
