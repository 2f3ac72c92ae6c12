"""The HTTP API of the stamping service, mounted by the host under ``/api/v1/metadata-stamping``. Every JSON answer
is in the unified format (framework.runtime.http.respond); bad requests are 4xx with a stable ``error`` code."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from framework.runtime.http import respond
from nodes.metadata_stamping.openapi import PREFIX, build, docs_page
from nodes.metadata_stamping.requests import DEFAULT_NAMESPACE, BadRequest

if TYPE_CHECKING:
    from nodes.metadata_stamping.node import MetadataStampingNode

#: Largest request body; base64 content of a 10 MB file fits.
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_PAGE = 50
MAX_PAGE = 500
#: The docs page loads nothing from anywhere: its script and style are inline.
_DOCS_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
_HASH_RE = re.compile(r"[0-9a-f]{64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(request: web.Request, http_status: int, code: str, message: str) -> web.Response:
    return respond(request, status="error", http_status=http_status, error=code, message=message)


async def read_json(request: web.Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The JSON body, read up to ``limit`` bytes (aiohttp's own 1 MB limit applies to ``request.read`` only)."""
    too_large = BadRequest(f"request body is larger than {limit} bytes", code="payload_too_large", http_status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json", http_status=400) from None


def routes(node: MetadataStampingNode) -> list[web.RouteDef]:
    document = build(node.contract)
    docs = docs_page(document)

    def json_post(work: Callable[[Any], Awaitable[dict[str, Any]]], message: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                data = await work(await read_json(request))
            except BadRequest as exc:
                return _error(request, exc.http_status, exc.code, str(exc))
            return respond(request, data, message=message)

        return handler

    async def batch(request: web.Request) -> web.StreamResponse:
        try:
            data = await node.batch(await read_json(request))
        except BadRequest as exc:
            return _error(request, exc.http_status, exc.code, str(exc))
        if data["failed"] == 0:
            return respond(request, data, message=f"{data['total']} stamped")
        if data["succeeded"] == 0:
            return respond(
                request, data, status="error", http_status=422, error="batch_failed", message="every item failed"
            )
        return respond(request, data, status="partial", message=f"{data['succeeded']} stamped, {data['failed']} failed")

    async def get_stamp(request: web.Request) -> web.StreamResponse:
        file_hash = request.match_info["file_hash"]
        namespace = request.query.get("namespace", DEFAULT_NAMESPACE)
        if not _HASH_RE.fullmatch(file_hash):
            return _error(request, 422, "invalid_hash", f"file_hash must be 64 lowercase hex digits, got {file_hash!r}")
        try:
            found = await node.find(file_hash, namespace)
        except BadRequest as exc:
            return _error(request, exc.http_status, exc.code, str(exc))
        if found is None:
            return _error(request, 404, "not_found", f"no stamp of {file_hash} in namespace {namespace}")
        return respond(request, found, message="found")

    async def list_namespace(request: web.Request) -> web.StreamResponse:
        try:
            limit = _int_query(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
            offset = _int_query(request, "offset", 0, 0, 2**31 - 1)
            data = await node.list_namespace(request.match_info["namespace"], limit=limit, offset=offset)
        except BadRequest as exc:
            return _error(request, exc.http_status, exc.code, str(exc))
        return respond(request, data, message=f"{len(data['items'])} of {data['total']}")

    async def health(request: web.Request) -> web.StreamResponse:
        store = node.runtime.resources.get("store")
        circuit = store.stats()["circuit"]["state"] if store is not None else "none"
        data = {"service": node.name, "database_circuit": circuit, **node.stats()}
        if circuit not in ("closed", "none"):
            return respond(request, data, status="error", http_status=503, error="degraded", message="database")
        return respond(request, data, message="healthy")

    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(text=node.runtime.metrics.render(), content_type="text/plain", charset="utf-8")

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(document)

    async def docs_handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=docs,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": _DOCS_CSP},
        )

    return [
        web.post(f"{PREFIX}/stamp", json_post(node.stamp, "stamped")),
        web.post(f"{PREFIX}/validate", json_post(node.validate, "validated")),
        web.post(f"{PREFIX}/hash", json_post(node.hash, "hashed")),
        web.post(f"{PREFIX}/batch", batch),
        web.post(f"{PREFIX}/validate-protocol", json_post(node.validate_protocol, "checked")),
        web.get(f"{PREFIX}/stamp/{{file_hash}}", get_stamp),
        web.get(f"{PREFIX}/namespace/{{namespace}}", list_namespace),
        web.get(f"{PREFIX}/health", health),
        web.get(f"{PREFIX}/metrics", metrics),
        web.get(f"{PREFIX}/openapi.json", openapi),
        web.get(f"{PREFIX}/docs", docs_handler),
    ]


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}", code=f"invalid_{name}")
    return int(raw)
