"""Hash metrics and blake3-hash-generated events, written in batches off the request path.

A hash takes microseconds; a database round trip per hash would make ``/hash`` as slow as the database. So each
hash is queued here (a :class:`framework.batcher.Batcher`), and a background task writes what is queued every
:data:`FLUSH_INTERVAL_S` (or as soon as :data:`FLUSH_ROWS` are waiting) in ONE transaction per batch of at most
:data:`FLUSH_ROWS` records: the ``hash_metrics`` rows with one ``executemany`` and the events through the outbox.
While the database fails, the records are kept (at most :data:`MAX_QUEUED`) and retried with backoff; the backlog is
then written in bounded transactions, not one holding it all. The price: rows and events still queued when the
process dies are lost; they are metrics and announcements, not data (a stamp and its metadata-stamp-created event
are written in the request's transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from framework.batcher import Batcher
from framework.events.envelope import OnexEnvelopeV1

FLUSH_INTERVAL_S = 0.05
FLUSH_ROWS = 1000
MAX_QUEUED = 100_000

log = logging.getLogger("onex.node.metadata_stamping.recorder")


@dataclass(frozen=True, slots=True)
class Recorded:
    metric: dict[str, Any]
    event: dict[str, Any] | None
    cause: OnexEnvelopeV1 | None


Write = Callable[[list[Recorded]], Awaitable[None]]


class HashRecorder(Batcher[Recorded]):
    """Queue of hash records. ``write`` (the node's: it owns the effects and the transaction) writes one batch of at
    most :data:`FLUSH_ROWS` records in one transaction, and raises if it did not (the batch is kept and retried)."""

    def __init__(self, write: Write) -> None:
        super().__init__(
            write,
            name="hash metrics",
            flush_interval_s=FLUSH_INTERVAL_S,
            flush_rows=FLUSH_ROWS,
            max_queued=MAX_QUEUED,
            max_batch=FLUSH_ROWS,
            logger=log,
        )

    def record(self, metric: dict[str, Any], event: dict[str, Any] | None, cause: OnexEnvelopeV1 | None) -> None:
        self.add(Recorded(metric, event, cause))
