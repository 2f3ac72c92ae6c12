"""MetadataStampingNode: hash, stamp, validate and look up stamps; served over HTTP (api.py), reachable as the
stamp-requested command, and called in-process by the bridge orchestrator (``hash`` and ``stamp``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from framework.adapters.hashing import hash_bytes_async
from framework.contract.spec import Contract
from framework.errors import PayloadInvalid
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import deferred_outbox, in_transaction
from framework.runtime.kinds.base import NodeRuntime, current_event
from framework.runtime.metrics import Counter, Histogram
from framework.runtime.payloads import PayloadValidator
from nodes.metadata_stamping import stamps
from nodes.metadata_stamping._generated import MetadataStampingBase
from nodes.metadata_stamping.filetypes import FileTypes
from nodes.metadata_stamping.recorder import HashRecorder, Recorded
from nodes.metadata_stamping.requests import BadRequest, ContentRequest, check_namespace

T = TypeVar("T")

REQUEST_MODELS = ("StampRequest", "HashRequest", "ValidateRequest", "BatchRequest", "ProtocolRequest")
_HEAD = 4096


def _now() -> datetime:
    return datetime.now(UTC)


class MetadataStampingNode(MetadataStampingBase):
    """The metadata stamping service (contracts/metadata_stamping.yaml)."""

    def __init__(self, contract: Contract, runtime: NodeRuntime) -> None:
        super().__init__(contract, runtime)
        self.file_types = FileTypes()
        self._validators = {
            name: PayloadValidator(name, contract.models[name], contract.models) for name in REQUEST_MODELS
        }
        self.recorder = HashRecorder(self._write_records)
        # Imported here rather than at the top: stamping.py builds on this module (and the import block is left to
        # whoever switches this class's base).
        from nodes.metadata_stamping.stamping import StampWriter  # noqa: PLC0415

        self.stamp_writer = StampWriter(self)
        self.hashes = Counter("onex_stamping_hashes_total", "Contents hashed.", ("operation",))
        self.stamps_total = Counter("onex_stamping_stamps_total", "Stamps written.", ("kind", "created"))
        self.validations = Counter("onex_stamping_validations_total", "Validations by verdict.", ("status",))
        self.hash_seconds = Histogram(
            "onex_stamping_hash_seconds",
            "BLAKE3 time per content.",
            buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0),
        )
        for metric in (self.hashes, self.stamps_total, self.validations, self.hash_seconds):
            runtime.metrics.register(metric)

    # --- life ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        rows = await self.effects.load_handlers(is_active=True)
        self.file_types.load(rows)
        self.recorder.start()

    async def stop(self) -> None:
        await self.stamp_writer.drain()
        await self.recorder.stop()

    def http_routes(self) -> list[web.RouteDef]:
        from nodes.metadata_stamping.api import routes  # noqa: PLC0415 - the API imports this module

        return routes(self)

    # --- the interface of the orchestrator's steps ----------------------------------------------------------------

    async def hash(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{content, encoding?, namespace?}`` → ``{file_hash, file_size, duration_ms}``."""
        req = ContentRequest.parse(self.check("HashRequest", request), namespace_required=False)
        digest, duration_ms = await self._hash(req.data)
        self._record("hash", len(req.data), duration_ms, req.namespace, event=True, digest=digest)
        return {"file_hash": digest, "file_size": len(req.data), "duration_ms": duration_ms}

    async def stamp(self, request: dict[str, Any]) -> dict[str, Any]:
        """A StampRequest → the StampResult: stored, and announced (metadata-stamp-created) with it. Inside a
        caller's transaction it is written there; otherwise it shares a transaction with the stamps requested at the
        same time (stamping.py), and returns once that committed."""
        req = ContentRequest.parse(self.check("StampRequest", request), namespace_required=True)
        return await self.stamp_writer.stamp(req)

    # --- the rest of the service ----------------------------------------------------------------------------------

    async def validate(self, request: dict[str, Any]) -> dict[str, Any]:
        """Re-hash content without its stamps; each stamp is valid or tampered; none is missing. With a namespace, the
        stored stamp of that hash is reported too (the only stamp binary content has)."""
        req = ContentRequest.parse(self.check("ValidateRequest", request), namespace_required=False)
        detection = self.file_types.detect(req.file_path, req.data[:_HEAD])
        text = None if detection.binary else _text(req.data)
        found = stamps.find(text) if text is not None else []
        hashed = stamps.strip(text).encode("utf-8") if text is not None else req.data
        digest, duration_ms = await self._hash(hashed)
        self._record("validate", len(hashed), duration_ms, req.namespace)

        async def work() -> dict[str, Any]:
            stored = None
            if req.namespace is not None:
                rows = await self.effects.find_stamp(namespace=req.namespace, file_hash=digest)
                stored = rows[0] if rows else None
            status = stamps.verdict(found, digest)
            if status == "missing" and stored is not None:
                status = "valid"  # a binary file's stamp lives only in the database
            await self.publish(
                "metadata-stamp-validated",
                {"file_hash": digest, "namespace": req.namespace, "status": status, "stamps_found": len(found)},
            )
            self.validations.inc(status=status)
            return {
                "status": status,
                "file_hash": digest,
                "file_size": len(hashed),
                "stamps": [{**s.as_dict(), "status": "valid" if s.file_hash == digest else "tampered"} for s in found],
                "stored": _public_row(stored) if stored is not None else None,
                "file_type": detection.as_dict(),
            }

        return await self._in_transaction(work)

    async def batch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stamp many contents in one transaction, each in a savepoint of its own: a bad item fails alone."""
        body = self.check("BatchRequest", request)
        batch_id = uuid.uuid4()

        async def work() -> dict[str, Any]:
            results: list[dict[str, Any]] = []
            namespaces: set[str] = set()
            for index, item in enumerate(body["items"]):
                try:
                    req = ContentRequest.parse(self.check("StampRequest", item), namespace_required=True)
                    assert req.namespace is not None
                    namespaces.add(req.namespace)
                    store = self.runtime.resources["store"]
                    async with store.transaction():  # a savepoint
                        result = await self.stamp_writer.stamp_here(req, batch_id=batch_id)
                    results.append({"index": index, "status": "success", "data": result, "error": None})
                except BadRequest as exc:
                    results.append({"index": index, "status": "error", "data": None, "error": str(exc)})
            failed = sum(1 for r in results if r["status"] == "error")
            await self.publish(
                "metadata-batch-processed",
                {
                    "batch_id": str(batch_id),
                    "namespace": next(iter(namespaces)) if len(namespaces) == 1 else None,
                    "total": len(results),
                    "succeeded": len(results) - failed,
                    "failed": failed,
                },
            )
            return {
                "batch_id": str(batch_id),
                "total": len(results),
                "succeeded": len(results) - failed,
                "failed": failed,
                "results": results,
            }

        return await self._in_transaction(work)

    async def validate_protocol(self, request: dict[str, Any]) -> dict[str, Any]:
        """The O.N.E. v0.1 checks of each stamp in ``content``."""
        body = self.check("ProtocolRequest", request)
        found = stamps.find(body["content"])
        if not found:
            raise BadRequest("content holds no ONEX stamp to check", code="no_stamp")
        reports = []
        for stamp in found:
            checks = stamps.protocol_checks(stamp)
            reports.append(
                {
                    "kind": stamp.kind,
                    "compliant": all(c.passed for c in checks),
                    "checks": [c.as_dict() for c in checks],
                }
            )
        return {
            "protocol": f"O.N.E. v{stamps.PROTOCOL_VERSION}",
            "compliant": all(r["compliant"] for r in reports),
            "stamps": reports,
        }

    async def find(self, file_hash: str, namespace: str) -> dict[str, Any] | None:
        """The stored stamp of ``file_hash`` in ``namespace`` (and only there)."""
        check_namespace(namespace)
        rows = await self.effects.find_stamp(namespace=namespace, file_hash=file_hash)
        return _public_row(rows[0]) if rows else None

    async def list_namespace(self, namespace: str, *, limit: int, offset: int) -> dict[str, Any]:
        """One page of a namespace's stamps, newest first."""
        check_namespace(namespace)
        rows = await self.effects.list_namespace(namespace=namespace)
        rows.sort(key=lambda r: (r["created_at"], str(r["id"])), reverse=True)
        page = rows[offset : offset + limit]
        return {
            "namespace": namespace,
            "items": [_public_row(r) for r in page],
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < len(rows) else None,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "handlers": self.file_types.handler_count,
            "recorder": {
                "pending": self.recorder.pending,
                "written": self.recorder.written,
                "dropped": self.recorder.dropped,
            },
        }

    # --- the command ------------------------------------------------------------------------------------------------

    async def on_stamp_requested(self, event: OnexEnvelopeV1) -> None:
        """The stamp-requested command: runs in the host's transaction, so the stamp, its event and the
        processed-event claim commit together. A request that can never succeed is dead-lettered (BadRequest is
        a PoisonMessage)."""
        await self.stamp(dict(event.payload))

    # --- internals --------------------------------------------------------------------------------------------------

    def check(self, model: str, body: object) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object ({model}), got {type(body).__name__}")
        try:
            self._validators[model].check(body, what="request")
        except BadRequest:
            raise
        except PayloadInvalid as exc:
            raise BadRequest(str(exc)) from None
        return body

    async def _in_transaction(self, work: Callable[[], Awaitable[T]]) -> T:
        return await in_transaction(self.store, lambda _tx: work())

    async def _hash(self, data: bytes) -> tuple[str, float]:
        started = time.perf_counter()
        digest = await hash_bytes_async(data)
        seconds = time.perf_counter() - started
        self.hash_seconds.observe(seconds)
        return digest, round(seconds * 1000, 4)

    def _record(
        self,
        operation: str,
        size: int,
        duration_ms: float,
        namespace: str | None,
        *,
        event: bool = False,
        digest: str = "",
        batch_id: uuid.UUID | None = None,
    ) -> None:
        self.hashes.inc(operation=operation)
        metric = {
            "recorded_at": _now(),
            "operation": operation,
            "duration_ms": duration_ms,
            "file_size": size,
            "namespace": namespace,
            "thread_count": 1,
            "batch_id": batch_id,
            "success": True,
            "error": None,
        }
        payload = (
            {"file_hash": digest, "file_size": size, "duration_ms": duration_ms, "namespace": namespace}
            if event
            else None
        )
        self.recorder.record(metric, payload, current_event.get())

    async def _write_records(self, batch: list[Recorded]) -> None:
        async with self.transaction() as tx:
            await self.effects.record_hash_metric.many([r.metric for r in batch])  # type: ignore[attr-defined]
            async with deferred_outbox(tx):  # the events' outbox rows in one round trip, not one each
                for record in batch:
                    if record.event is not None:
                        await self.publish("blake3-hash-generated", record.event, cause=record.cause)

    def _stamp_row(
        self,
        req: ContentRequest,
        detection: Any,
        stripped: str | None,
        *,
        digest: str,
        size: int,
        stamp_id: uuid.UUID,
        kind: stamps.Kind,
        now: datetime,
    ) -> tuple[str | None, dict[str, Any]]:
        """The stamped text (None for types that are never modified) and the metadata_stamps row of one stamp."""
        assert req.namespace is not None
        info = stamps.StampInfo(
            uid=str(stamp_id),
            file_hash=digest,
            timestamp=now.isoformat(),
            namespace=req.namespace,
            file_size=size,
            file_path=req.file_path,
            content_type=detection.content_type,
        )
        stamped: str | None = None
        if stripped is not None and detection.comment is not None:
            stamp_text = stamps.render(info, kind, detection.comment, stamps.newline_of(stripped))
            stamped = stamps.apply(stripped, stamp_text)
        row: dict[str, Any] = {
            "id": stamp_id,
            "file_hash": digest,
            "namespace": req.namespace,
            "file_path": req.file_path,
            "file_size": size,
            "content_type": detection.content_type,
            "stamp_data": {**info.rich_fields(), "kind": kind, "file_type": detection.as_dict()},
            "metadata_version": stamps.PROTOCOL_VERSION,
            "op_id": uuid.uuid4(),
            "updated_at": now,
        }
        return stamped, row


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _public_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}
    for key in ("created_at", "updated_at"):
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out
