"""The OpenAPI 3.1 document of the stamping API, derived from the contract's models (OpenAPI 3.1 schemas are JSON
Schema 2020-12, so the models go in as they are), and a docs page that renders it with no CDN."""

from __future__ import annotations

import json
from typing import Any

from framework.contract.spec import Contract

PREFIX = "/api/v1/metadata-stamping"

_UNIFIED = {
    "type": "object",
    "required": ["status", "data", "error", "message", "metadata"],
    "properties": {
        "status": {"type": "string", "enum": ["success", "error", "partial"]},
        "data": {},
        "error": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "metadata": {
            "type": "object",
            "required": ["request_id", "duration_ms"],
            "properties": {"request_id": {"type": "string"}, "duration_ms": {"type": "number"}},
        },
    },
}
_NAMESPACE = {"type": "string", "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$", "maxLength": 255}


def _refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else _refs(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_refs(v) for v in value]
    return value


def _answers(*codes: int, json_body: bool = True) -> dict[str, Any]:
    unified = {"application/json": {"schema": {"$ref": "#/components/schemas/UnifiedResponse"}}}
    names = {
        200: "done",
        400: "invalid JSON",
        404: "not found",
        413: "body too large",
        422: "invalid request",
        503: "degraded: the database circuit is not closed",
    }
    return {str(c): {"description": names.get(c, "answer"), "content": unified if json_body else {}} for c in codes}


def _post(model: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
            },
            "responses": _answers(200, 400, 413, 422),
        }
    }


def build(contract: Contract) -> dict[str, Any]:
    schemas = {name: _refs(schema) for name, schema in contract.models.items()}
    schemas["UnifiedResponse"] = _UNIFIED
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OmniNode metadata stamping",
            "version": str(contract.version),
            "description": contract.description,
        },
        "servers": [{"url": "/"}],
        "paths": {
            f"{PREFIX}/stamp": _post("StampRequest", "Stamp content (lightweight or rich) and store the stamp"),
            f"{PREFIX}/validate": _post("ValidateRequest", "Check the stamps in content: valid, tampered or missing"),
            f"{PREFIX}/hash": _post("HashRequest", "BLAKE3 hash of content"),
            f"{PREFIX}/batch": _post("BatchRequest", "Stamp many contents; 'partial' when some fail"),
            f"{PREFIX}/validate-protocol": _post("ProtocolRequest", "O.N.E. v0.1 checks of the stamps in content"),
            f"{PREFIX}/stamp/{{file_hash}}": {
                "get": {
                    "summary": "The stored stamp of a hash, in one namespace",
                    "parameters": [
                        {
                            "name": "file_hash",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        },
                        {"name": "namespace", "in": "query", "required": False, "schema": _NAMESPACE},
                    ],
                    "responses": _answers(200, 404, 422),
                }
            },
            f"{PREFIX}/namespace/{{namespace}}": {
                "get": {
                    "summary": "A namespace's stamps, newest first, a page at a time",
                    "parameters": [
                        {"name": "namespace", "in": "path", "required": True, "schema": _NAMESPACE},
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": _answers(200, 422),
                }
            },
            f"{PREFIX}/health": {"get": {"summary": "Health of the stamping service", "responses": _answers(200, 503)}},
            f"{PREFIX}/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Metadata stamping API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h2{margin-top:2em;border-bottom:1px solid #ddd}
.op{margin:1em 0;padding:.6em 1em;border:1px solid #ddd;border-radius:6px}
.m{display:inline-block;min-width:4em;font-weight:bold;text-transform:uppercase} .post{color:#2a7} .get{color:#27a}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:13px}
</style></head>
<body><h1>Metadata stamping API</h1>
<p>Every answer is JSON in the unified format <code>{status, data, error, message, metadata: {request_id,
duration_ms}}</code>. The machine-readable description is <a href="openapi.json">openapi.json</a>.</p>
<div id="ops"></div><h2>Schemas</h2><div id="schemas"></div>
<script id="spec" type="application/json">__SPEC__</script>
<script>
const spec = JSON.parse(document.getElementById('spec').textContent);
const esc = s => String(s).replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
let html = '';
for (const [path, ops] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(ops)) {
  html += `<div class="op"><span class="m ${method}">${method}</span> <code>${esc(path)}</code>`;
  html += `<br>${esc(op.summary||'')}`;
  const body = op.requestBody && op.requestBody.content['application/json'].schema.$ref;
  if (body) html += `<br>body: <a href="#${body.split('/').pop()}">${body.split('/').pop()}</a>`;
  for (const p of op.parameters||[]) html += `<br>${p.in} <code>${esc(p.name)}</code>${p.required?' (required)':''}`;
  html += `<br>answers: ${Object.keys(op.responses).join(', ')}</div>`;
}
document.getElementById('ops').innerHTML = html;
let s = '';
for (const [name, schema] of Object.entries(spec.components.schemas))
  s += `<h3 id="${name}">${name}</h3><pre>${esc(JSON.stringify(schema, null, 2))}</pre>`;
document.getElementById('schemas').innerHTML = s;
</script></body></html>
"""


def docs_page(document: dict[str, Any]) -> str:
    # The document is embedded (no fetch, no CDN); '</' is escaped so it cannot close the script element.
    return DOCS_PAGE.replace("__SPEC__", json.dumps(document).replace("</", "<\\/"))
