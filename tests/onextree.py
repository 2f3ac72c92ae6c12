"""A stand-in of the OnexTree intelligence service on 127.0.0.1 that tests start and steer: it answers at once, after
``delay_s`` or once ``open`` is set, with ``status`` (200: the intelligence, else an error body), and counts its
calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


class OnexTree:
    def __init__(self) -> None:
        self.status = 200
        self.delay_s = 0.0
        self.calls = 0
        #: Cleared, every call waits until it is set again.
        self.open = asyncio.Event()
        self.open.set()

    async def intelligence(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        await self.open.wait()
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": "no"}, status=self.status)
        return web.json_response({"data": {"file_hash": body["file_hash"], "patterns": ["config"]}})


@contextlib.asynccontextmanager
async def serve() -> AsyncIterator[tuple[OnexTree, str]]:
    """The service and its base URL, for the block's duration."""
    service = OnexTree()
    app = web.Application()
    app.router.add_post("/intelligence", service.intelligence)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield service, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
