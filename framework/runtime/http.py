"""The host's HTTP server: /health and /metrics, plus routes that nodes contribute; every JSON answer in the
unified format ``{status, data, error, message, metadata: {request_id, duration_ms}}``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

Status = Literal["success", "error", "partial"]
_request_started_key = web.RequestKey("onex_request_started", float)
_request_id_key = web.RequestKey("onex_request_id", str)


def respond(
    request: web.Request,
    data: Any = None,
    *,
    status: Status = "success",
    http_status: int = 200,
    error: str | None = None,
    message: str = "",
) -> web.Response:
    started = request.get(_request_started_key, time.perf_counter())
    body = {
        "status": status,
        "data": data,
        "error": error,
        "message": message,
        "metadata": {
            "request_id": request.get(_request_id_key, ""),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    }
    return web.Response(
        text=json.dumps(body, default=str),
        status=http_status,
        content_type="application/json",
        headers={"X-Request-Id": request.get(_request_id_key, "")},
    )


@web.middleware
async def unified_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request ids and timing for every request; HTTP errors and unexpected exceptions become unified errors
    (never a traceback)."""
    request[_request_started_key] = time.perf_counter()
    request[_request_id_key] = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = respond(
            request, status="error", http_status=exc.status, error=exc.reason, message=exc.text or exc.reason
        )
        # What the error's own headers say stays said (a 405's Allow, which RFC 9110 requires); the body is ours.
        for name, value in exc.headers.items():
            if name.lower() not in ("content-type", "content-length", "x-request-id"):
                response.headers.add(name, value)
        return response
    except Exception as exc:
        request.app.logger.exception("request failed", extra={"path": request.path})
        return respond(
            request,
            status="error",
            http_status=500,
            error="internal_error",
            message=f"internal error ({type(exc).__name__}); see the host's log for request {request[_request_id_key]}",
        )
