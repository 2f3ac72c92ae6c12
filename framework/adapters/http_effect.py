"""The ``http`` effect: one declared call to an HTTP service, with its timeout, on a shared aiohttp session."""

from __future__ import annotations

import os
import re
from typing import Any

import aiohttp

from framework.errors import PortError, RetriablePortError

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def expand_url(url: str, environ: dict[str, str] | None = None) -> str:
    """Fill ``${VAR}`` placeholders from the environment; a missing variable is an error naming it."""
    env = os.environ if environ is None else environ

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise PortError(f"URL '{url}' needs the environment variable {name}, which is not set")
        return env[name]

    return _PLACEHOLDER.sub(fill, url)


class HttpEffect:
    def __init__(self, session: aiohttp.ClientSession, url: str, method: str, timeout_ms: int) -> None:
        self._session = session
        self._url_template = url
        self._method = method
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)

    async def __call__(self, json: Any = None, *, params: dict[str, str] | None = None) -> Any:
        """Call the service; returns its JSON (or text). 5xx and connection failures are retriable errors."""
        url = expand_url(self._url_template)
        try:
            async with self._session.request(
                self._method, url, json=json, params=params, timeout=self._timeout
            ) as resp:
                body = await resp.json() if resp.content_type == "application/json" else await resp.text()
                if resp.status >= 500:
                    raise RetriablePortError(f"{self._method} {url} answered {resp.status}")
                if resp.status >= 400:
                    raise PortError(f"{self._method} {url} answered {resp.status}: {str(body)[:200]}")
                return body
        except TimeoutError:
            raise RetriablePortError(f"{self._method} {url} timed out after {self._timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise RetriablePortError(f"{self._method} {url} failed: {exc}") from None
