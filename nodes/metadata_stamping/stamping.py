"""Writing stamps: one at a time in a caller's transaction, or many in one (group commit, writer.py).

A stamp is prepared without the database (detection, hash, stamp text, row), then stored with the upsert of the
``save_stamp`` effect (insert, or on the same namespace and hash update it, keeping its id and bumping its version:
the contract's ``keep`` and ``increment``) and announced (``metadata-stamp-created``) in the same transaction. Both
paths run the statements the contract fixes (the generated ``save_stamp`` and ``save_stamp_many``); no SQL here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import current_transaction, deferred_outbox
from framework.runtime.kinds.base import current_event
from nodes.metadata_stamping import stamps
from nodes.metadata_stamping._generated import RestampValues, SaveStampReturned, SaveStampRow
from nodes.metadata_stamping.node import _HEAD, _now, _text
from nodes.metadata_stamping.requests import ContentRequest
from nodes.metadata_stamping.writer import GroupWriter

if TYPE_CHECKING:
    from nodes.metadata_stamping.filetypes import Detection
    from nodes.metadata_stamping.node import MetadataStampingNode


@dataclass(frozen=True)
class PreparedStamp:
    """A stamp ready to be stored: everything but what the database answers (id, version, created_at)."""

    req: ContentRequest
    detection: Detection
    stripped: str | None
    digest: str
    size: int
    stamp_id: uuid.UUID
    kind: stamps.Kind
    now: datetime
    stamped: str | None
    row: dict[str, Any]
    #: The event being handled when the stamp was asked for: its event is chained to it.
    cause: OnexEnvelopeV1 | None = field(default=None)

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.req.namespace, self.digest)

    @property
    def save_row(self) -> SaveStampRow:
        """The row ``save_stamp`` writes: version 1 when it is inserted (an update increments the stored one)."""
        return cast(SaveStampRow, {**self.row, "version": 1})


class StampWriter:
    """Stores and announces the stamps of ``node``."""

    def __init__(self, node: MetadataStampingNode) -> None:
        self._node = node
        self.group: GroupWriter[PreparedStamp, dict[str, Any]] = GroupWriter(
            self._write_batch, self._write_one, key=lambda p: p.key
        )

    async def stamp(self, req: ContentRequest) -> dict[str, Any]:
        """Store and announce a stamp: in the transaction open in this context, else with the others waiting."""
        prepared = await self.prepare(req)
        if current_transaction(self._node.store) is not None:
            return await self._write_one(prepared)
        return await self.group.submit(prepared)

    async def stamp_here(self, req: ContentRequest, *, batch_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Store and announce a stamp in the transaction open in this context (or one of its own)."""
        return await self._write_one(await self.prepare(req, batch_id=batch_id))

    async def drain(self) -> None:
        await self.group.drain()

    async def prepare(self, req: ContentRequest, *, batch_id: uuid.UUID | None = None) -> PreparedStamp:
        """Everything of a stamp that needs no database: detection, hash, stamp text and row."""
        node = self._node
        assert req.namespace is not None
        detection = node.file_types.detect(req.file_path, req.data[:_HEAD], req.content_type)
        text = None if detection.comment is None else _text(req.data)
        stripped = stamps.strip(text) if text is not None else None
        hashed = stripped.encode("utf-8") if stripped is not None else req.data
        digest, duration_ms = await node._hash(hashed)
        node._record("stamp", len(hashed), duration_ms, req.namespace, batch_id=batch_id)
        # Its id is the uuid5 of (namespace, hash), so the stamp text can name it before the row exists.
        stamp_id = stamps.stamp_id(req.namespace, digest)
        now = _now()
        kind: stamps.Kind = "rich" if req.rich else "lightweight"
        stamped, row = node._stamp_row(
            req, detection, stripped, digest=digest, size=len(hashed), stamp_id=stamp_id, kind=kind, now=now
        )
        return PreparedStamp(
            req, detection, stripped, digest, len(hashed), stamp_id, kind, now, stamped, row, current_event.get()
        )

    # --- one -------------------------------------------------------------------------------------------------------

    async def _write_one(self, prepared: PreparedStamp) -> dict[str, Any]:
        node = self._node

        async def work() -> dict[str, Any]:
            # One round trip: insert the stamp, or update it (same namespace and hash), keeping its id and bumping
            # its version (the contract's keep and increment).
            saved = await node.typed_effects.save_stamp(prepared.save_row)
            return await self._finish(prepared, saved)

        return await node._in_transaction(work)

    # --- many ------------------------------------------------------------------------------------------------------

    async def _write_batch(self, batch: list[PreparedStamp]) -> list[dict[str, Any]]:
        """One transaction: one upsert statement for every row, then each stamp's event, all outbox rows in one
        ``executemany``."""
        # Rows are written in key order, so that two batches in flight lock their rows in one order. The keys are
        # distinct (GroupWriter never puts one key twice in a batch), as save_stamp_many requires.
        ordered = sorted(batch, key=lambda p: (p.req.namespace or "", p.digest))
        async with self._node.store.transaction() as tx:
            # One statement for every row, in this transaction; the rows come back in the order given.
            rows = await self._node.typed_effects.save_stamp_many([p.save_row for p in ordered])
            saved = {p.key: row for p, row in zip(ordered, rows, strict=True)}
            # Every stamp's event, all outbox rows in one round trip.
            async with deferred_outbox(tx):
                results = [await self._finish(p, saved[p.key]) for p in batch]
        return results

    async def _finish(self, prepared: PreparedStamp, saved: SaveStampReturned) -> dict[str, Any]:
        """After the upsert (``saved``: the stored id, version and created_at): announce the stamp in the same
        transaction, and answer its StampResult."""
        node = self._node
        p = prepared
        req = p.req
        assert req.namespace is not None
        stamped = p.stamped
        if saved["id"] != p.stamp_id:
            # A row stored with another id (written by something else): the stamp must name that id.
            stamped, row = node._stamp_row(
                req, p.detection, p.stripped, digest=p.digest, size=p.size, stamp_id=saved["id"], kind=p.kind, now=p.now
            )
            values = cast(RestampValues, {c: v for c, v in row.items() if c not in ("id", "namespace", "file_hash")})
            await node.typed_effects.restamp(values, namespace=req.namespace, file_hash=p.digest)
        created = saved["version"] == 1
        await node.publish(
            "metadata-stamp-created",
            {
                "stamp_id": str(saved["id"]),
                "file_hash": p.digest,
                "namespace": req.namespace,
                "file_path": req.file_path,
                "file_size": p.size,
                "content_type": p.detection.content_type,
                "stamp_kind": p.kind,
                "protocol_version": stamps.PROTOCOL_VERSION,
                "created_at": saved["created_at"].isoformat(),
            },
            cause=p.cause,
        )
        node.stamps_total.inc(kind=p.kind, created=str(created).lower())
        return {
            "stamp_id": str(saved["id"]),
            "file_hash": p.digest,
            "namespace": req.namespace,
            "stamped_content": stamped,
            "content_type": p.detection.content_type,
            "created": created,
            "file_size": p.size,
            "file_path": req.file_path,
            "stamp_kind": p.kind,
            "timestamp": p.now.isoformat(),
            "version": saved["version"],
            "file_type": p.detection.as_dict(),
        }
