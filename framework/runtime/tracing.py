"""``EventTracer``: the event log (``event_logs``, migration 004): one row per event a hosted node consumed (``in``)
or published (``out``), written in batches off the event path.

Recording a trace is a tuple appended to an in-memory queue (a :class:`framework.batcher.Batcher`); a background
task writes the queue every :data:`FLUSH_INTERVAL_S` (or once :data:`FLUSH_ROWS` are waiting) with ONE ``COPY``
outside any transaction (``PostgresStore.copy_records``). Timestamps are taken as ``time.time()`` floats and turned
into rows only there. While the database is away the traces are kept (at most ``max_queued``; beyond that they are
counted as dropped, with a warning at most once a minute) and the write is retried with backoff: handling never
waits for the event log and never fails because of it. The host flushes it on stop, within its drain timeout.

A batch the database refuses for its values (SQLSTATE class 22, data exception, or 23, integrity constraint
violation) would be refused again on every retry and stall the log behind it: it is dropped and counted (``dropped``),
with an error logged at most once per :data:`REFUSED_LOG_INTERVAL_S` giving the batches and rows refused since the
last one. Any other refusal (a read-only server after a failover, a full disk, a missing privilege) may pass on its
own, so it is handled like an outage: the rows are kept and retried with backoff.

Statuses (``status`` column):

- ``in``: ``handled`` (the handler succeeded and the delivery is committed), ``retrying`` (the attempt failed and
  the event will be delivered again after a backoff; also a last attempt whose dead-lettering a stop or a
  rebalance cut off),
  ``dead_lettered`` (the last attempt failed, or the event is poison, and its dead letter was written: logged once
  the broker took it), ``dropped`` (the last attempt failed and the subscription has no dead-letter topic: the
  event is logged and skipped), ``duplicate`` (the consumer group had already processed the
  event id: it was skipped, without running the handler), ``cancelled`` (a drain timeout cut the handler off: the
  event will be delivered again). Every handler attempt is one row, so a failing event has one row per attempt.
- ``out``: ``published``, written once the broker acknowledged the event: by the outbox relay for events written
  through the outbox, by the node for events it published directly.

``correlation_id`` is the envelope's, or for a root event (which starts its chain) its own ``event_id``, so
``WHERE correlation_id = $1`` finds a whole chain, root included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from framework.batcher import Batcher
from framework.errors import QueryError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import DEAD_LETTERED, DROPPED  # what the delivery reports of a message it gave up

__all__ = [
    "CANCELLED",
    "COLUMNS",
    "DEAD_LETTERED",
    "DROPPED",
    "DUPLICATE",
    "HANDLED",
    "PUBLISHED",
    "RETRYING",
    "EventTracer",
]

log = logging.getLogger("onex.event_log")

HANDLED: Final = "handled"
RETRYING: Final = "retrying"
DUPLICATE: Final = "duplicate"
CANCELLED: Final = "cancelled"
PUBLISHED: Final = "published"

TABLE: Final = "event_logs"
COLUMNS: Final = (
    "event_id",
    "topic",
    "event_type",
    "correlation_id",
    "direction",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
)
FLUSH_INTERVAL_S: Final = 0.1
FLUSH_ROWS: Final = 1000
MAX_QUEUED: Final = 100_000
#: Rows per COPY when a backlog is written after an outage.
MAX_BATCH: Final = 10_000
#: Error texts are cut here.
MAX_ERROR_TEXT: Final = 2000
#: At most one error logged per this many seconds about batches the database refused.
REFUSED_LOG_INTERVAL_S: Final = 60.0
#: SQLSTATE classes that blame the rows themselves: data exception, integrity constraint violation.
_DATA_ERROR_CLASSES: Final = ("22", "23")

#: One queued trace: event_id, topic, event_type, correlation_id, direction, status, started, finished (time.time()),
#: error text.
Trace = tuple[UUID, str, str, UUID, str, str, float, float, str | None]


class BulkWriter(Protocol):
    """Where the traces go: ``PostgresStore.copy_records`` (one COPY, outside any transaction)."""

    async def copy_records(self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]) -> int: ...


def error_text(exc: BaseException) -> str:
    """``Type: message``, cut to :data:`MAX_ERROR_TEXT` characters. PostgreSQL text holds no NUL, and UTF-8 no lone
    surrogate (as in a file name decoded with ``surrogateescape``): the driver could not even send such a row, and
    the batch would be retried forever."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def is_data_error(exc: QueryError) -> bool:
    """Whether the database refused the values themselves (SQLSTATE class 22 or 23), so that the same rows can never
    be written; any other refusal may pass on its own (25006 read-only after a failover, 53100 disk full, 42501 a
    missing privilege)."""
    return (exc.sqlstate or "")[:2] in _DATA_ERROR_CLASSES


class EventTracer:
    """The event log of one host, written through ``sink``."""

    def __init__(
        self,
        sink: BulkWriter,
        *,
        max_queued: int = MAX_QUEUED,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        flush_rows: int = FLUSH_ROWS,
        max_batch: int = MAX_BATCH,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        refused_log_interval_s: float = REFUSED_LOG_INTERVAL_S,
    ) -> None:
        self._sink = sink
        self._batcher: Batcher[Trace] = Batcher(
            self._write,
            name="event log",
            flush_interval_s=flush_interval_s,
            flush_rows=flush_rows,
            max_queued=max_queued,
            max_batch=max_batch,
            initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s,
            logger=log,
        )
        self._refused_log_interval_s = refused_log_interval_s
        self._last_refused_log = float("-inf")
        self._refused_batches_unreported = 0
        self._refused_rows_unreported = 0
        #: Queue one :data:`Trace` tuple (the hot path; :meth:`consumed` and :meth:`published` build the tuple).
        self.add = self._batcher.add

    # --- recording (no await, no I/O) -------------------------------------------------------------------------

    def consumed(
        self,
        topic: str,
        envelope: OnexEnvelopeV1,
        status: str,
        started: float,
        finished: float,
        *,
        error: str | None = None,
    ) -> None:
        """An ``in`` row: ``started``/``finished`` are ``time.time()`` values."""
        self.add(
            (
                envelope.event_id,
                topic,
                envelope.event_type,
                envelope.correlation_id or envelope.event_id,
                "in",
                status,
                started,
                finished,
                error,
            )
        )

    def published(self, topic: str, envelope: OnexEnvelopeV1, started: float, finished: float) -> None:
        """An ``out`` row, once the broker acknowledged ``envelope``."""
        self.add(
            (
                envelope.event_id,
                topic,
                envelope.event_type,
                envelope.correlation_id or envelope.event_id,
                "out",
                PUBLISHED,
                started,
                finished,
                None,
            )
        )

    # --- life and numbers ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._batcher.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write what is queued (within ``timeout_s``), then stop."""
        await self._batcher.stop(timeout_s)
        log.info("event log stopped", extra={"stats": self.stats()})

    async def flush(self) -> None:
        """Write what is queued now; raises if the database could not take it (the traces stay queued). A batch whose
        values it refused is dropped instead."""
        await self._batcher.flush()

    @property
    def pending(self) -> int:
        return self._batcher.pending

    @property
    def written(self) -> int:
        """Rows in ``event_logs``."""
        return self._batcher.written

    @property
    def dropped(self) -> int:
        """Traces lost: the queue was full, the stop gave up on them, or the database refused their values."""
        return self._batcher.dropped + self._batcher.rejected

    def stats(self) -> dict[str, int]:
        failures = self._batcher.failures
        return {"pending": self.pending, "written": self.written, "dropped": self.dropped, "failures": failures}

    # --- writing ------------------------------------------------------------------------------------------------

    async def _write(self, batch: list[Trace]) -> int | None:
        """Write ``batch`` with one COPY (all rows or none). ``None``: all written; ``0``: the database refused the
        values, the batch is dropped (the batcher counts it). Raises, so that the batch is kept and retried, when
        the database could not take it for any other reason."""
        try:
            await self._sink.copy_records(TABLE, _rows(batch), COLUMNS)
        except QueryError as exc:
            if not is_data_error(exc):
                raise
            # The same rows would be refused on every retry and stall the log behind them.
            self._report_refused(len(batch), exc)
            return 0
        return None

    def _report_refused(self, rows: int, exc: QueryError) -> None:
        """Count a refused batch; log an error (with its traceback) at most once per ``refused_log_interval_s``."""
        self._refused_batches_unreported += 1
        self._refused_rows_unreported += rows
        now = time.monotonic()
        if now - self._last_refused_log < self._refused_log_interval_s:
            return
        self._last_refused_log = now
        batches, refused = self._refused_batches_unreported, self._refused_rows_unreported
        self._refused_batches_unreported = self._refused_rows_unreported = 0
        log.error(
            f"event log: the database refused the values of {refused} rows ({batches} batches) since the last "
            f"report; dropped. Latest: {exc}",
            exc_info=exc,
            extra={"sqlstate": exc.sqlstate, "batches_refused": batches, "rows_refused": refused},
        )


def _rows(batch: list[Trace]) -> list[tuple[Any, ...]]:
    """COPY rows of ``batch``. Timestamps are converted once per value: the rows of one relay publish share theirs."""
    stamps: dict[float, datetime] = {}
    rows = []
    for event_id, topic, raw_type, correlation_id, direction, status, started, ended, error in batch:
        finished = max(ended, started)  # a wall clock stepped back must not break finished_at >= started_at
        started_at = stamps.get(started)
        if started_at is None:
            started_at = stamps[started] = datetime.fromtimestamp(started, UTC)
        finished_at = stamps.get(finished)
        if finished_at is None:
            finished_at = stamps[finished] = datetime.fromtimestamp(finished, UTC)
        # PostgreSQL text cannot hold NUL; a foreign producer's event type might.
        event_type = raw_type.replace("\x00", "\ufffd") if "\x00" in raw_type else raw_type
        rows.append(
            (
                event_id,
                topic,
                event_type,
                correlation_id,
                direction,
                status,
                started_at,
                finished_at,
                (finished - started) * 1000,
                error,
            )
        )
    return rows
