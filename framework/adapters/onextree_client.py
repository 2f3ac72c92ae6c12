"""``OnexTreeClient``: asks the OnexTree intelligence service about content, and never lets it break a workflow.

Each call has a timeout per attempt and a few attempts with backoff; a circuit breaker (shared by every call of one
client) stops calling a service that keeps failing and lets one probe through after ``reset_timeout_s``. Whatever
goes wrong — no URL configured, the service down, slow, answering 5xx or nonsense, the circuit open — the answer is
an :class:`Intelligence` with ``available=False`` and the reason, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from framework.adapters.circuit_breaker import CircuitBreaker
from framework.errors import CircuitOpenError

log = logging.getLogger("onex.onextree")


@dataclass(frozen=True)
class Intelligence:
    available: bool
    data: dict[str, Any] | None = None
    reason: str | None = None


class _Unavailable(Exception):
    """The service could not be reached or answered with a server error: counts against the circuit."""


class OnexTreeClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str | None,
        *,
        timeout_s: float = 0.2,
        attempts: int = 2,
        backoff_s: float = 0.02,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/") if base_url else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker("onextree", failure_threshold=5, reset_timeout_s=5.0)

    async def intelligence(self, request: dict[str, Any]) -> Intelligence:
        """POST ``request`` to ``{base_url}/intelligence``; the JSON object it answers, or why there is none."""
        if self.base_url is None:
            return Intelligence(False, reason="ONEXTREE_URL is not configured")
        reason = ""
        for attempt in range(1, self._attempts + 1):
            try:
                probe = self.breaker.allow()
            except CircuitOpenError as exc:
                return Intelligence(False, reason=str(exc))
            verdict = False
            try:
                data = await self._call(request)
            except _Unavailable as exc:
                self.breaker.record_failure(str(exc))
                verdict, reason = True, str(exc)
            except Exception as exc:  # a bad answer: the service is up, so the circuit is not at fault
                self.breaker.record_success()
                return Intelligence(False, reason=f"OnexTree answered unusably: {type(exc).__name__}: {exc}")
            else:
                self.breaker.record_success()
                return Intelligence(True, data=data)
            finally:
                if probe and not verdict:
                    self.breaker.release_probe()
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff_s * attempt)
        log.warning("OnexTree unavailable; going on without intelligence", extra={"reason": reason})
        return Intelligence(False, reason=reason)

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/intelligence"
        try:
            async with self._session.post(url, json=request, timeout=self._timeout) as resp:
                if resp.status >= 500:
                    raise _Unavailable(f"POST {url} answered {resp.status}")
                if resp.status >= 400:
                    raise ValueError(f"POST {url} answered {resp.status}")
                body = await resp.json()
        except TimeoutError:
            raise _Unavailable(f"POST {url} timed out after {self._timeout.total} s") from None
        except aiohttp.ClientConnectionError as exc:
            raise _Unavailable(f"POST {url} failed: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError(f"expected a JSON object, got {type(body).__name__}")
        return body.get("data", body) if isinstance(body.get("data"), dict) else body
