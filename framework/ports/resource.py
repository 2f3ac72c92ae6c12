"""The one life every resource shares: ``start()``, ``stop()`` (safe to call twice) and ``async with``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from framework.errors import UsageError


class Resource:
    """Base of everything the host owns: buses, stores, servers, nodes.

    Subclasses implement ``_start`` and ``_stop``. ``start`` on a started resource and use after ``stop`` are
    usage errors with an exact message; ``stop`` is idempotent and also cleans up after a failed ``start``.
    """

    #: Name used in messages; subclasses may override per instance.
    resource_name: str = ""

    def __init__(self) -> None:
        self._state = "new"
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.resource_name or type(self).__name__

    @property
    def started(self) -> bool:
        return self._state == "started"

    async def start(self) -> None:
        async with self._lock:
            if self._state == "started":
                raise UsageError(f"{self.name} is already started; call stop() before starting it again")
            if self._state == "stopped":
                raise UsageError(f"{self.name} was stopped and cannot be restarted; create a new one")
            try:
                await self._start()
            except BaseException:
                await self._stop()
                self._state = "stopped"
                raise
            self._state = "started"

    async def stop(self) -> None:
        async with self._lock:
            if self._state == "stopped":
                return
            try:
                if self._state == "started":
                    await self._stop()
            finally:
                self._state = "stopped"

    def require_started(self, action: str) -> None:
        """Raise a usage error naming ``action`` unless the resource is running."""
        if self._state != "started":
            raise UsageError(f"cannot {action}: {self.name} is {self._state}; call start() first")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _start(self) -> None:  # pragma: no cover - trivial default
        return None

    async def _stop(self) -> None:  # pragma: no cover - trivial default
        return None
