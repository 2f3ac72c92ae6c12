"""Delivery rules both event buses share: decode, skip processed ids, retry with backoff, dead-letter (with the
original value and headers, plus what failed), and treat poison as poison. The rules of the port in one place."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from framework.errors import PoisonMessage, UsageError
from framework.events.cloudevents import binary_headers, decode_message
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import (
    DEAD_LETTERED,
    DLT_ATTEMPTS,
    DLT_ERROR,
    DLT_ERROR_TYPE,
    DLT_GROUP,
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TOPIC,
    DROPPED,
    INTERRUPTED,
    DeliveryPolicy,
    DuplicateObserver,
    FailureObserver,
    Handler,
    Headers,
    Message,
    ProcessedEvents,
    dead_letter_topic,
)

logger = logging.getLogger(__name__)

_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC_LENGTH: Final = 249
#: The port's default policy, shared (it is frozen).
DEFAULT_POLICY: Final = DeliveryPolicy()
#: Dead-letter error texts are cut here: a header is no place for a megabyte of exception text.
_MAX_ERROR_TEXT: Final = 2000
#: Cap on the wait between attempts to write a dead letter while the broker refuses it.
_MAX_DLT_RETRY_S: Final = 5.0


# --- shared by both buses ----------------------------------------------------------------------------------------


#: Names already found valid: every publish checks its topic, and a process uses few.
_VALID_TOPICS: set[str] = set()
_MAX_REMEMBERED_TOPICS: Final = 10_000


def check_topic_name(topic: object) -> str:
    """Kafka's own rule for topic names, so the memory bus refuses what Kafka would refuse."""
    if type(topic) is str and topic in _VALID_TOPICS:
        return topic
    if not isinstance(topic, str) or not topic:
        raise UsageError(f"a topic name must be a non-empty string, got {topic!r}")
    if len(topic) > _MAX_TOPIC_LENGTH or _TOPIC_RE.fullmatch(topic) is None or topic in {".", ".."}:
        raise UsageError(
            f"bad topic name {topic!r}: Kafka allows 1-{_MAX_TOPIC_LENGTH} characters of [A-Za-z0-9._-], "
            "not '.' or '..'"
        )
    if len(_VALID_TOPICS) < _MAX_REMEMBERED_TOPICS:
        _VALID_TOPICS.add(topic)
    return topic


def check_subscription(
    topics: Sequence[str], group: str, policy: DeliveryPolicy, fetch_max_wait_ms: int | None = None
) -> tuple[str, ...]:
    """The arguments of ``subscribe``, checked; returns the topics without duplicates, in order."""
    if isinstance(topics, str):
        raise UsageError(f"topics must be a sequence of topic names, got the string {topics!r}; write [{topics!r}]")
    names = tuple(dict.fromkeys(check_topic_name(topic) for topic in topics))
    if not names:
        raise UsageError("subscribe needs at least one topic, got none")
    if not isinstance(group, str) or not group:
        raise UsageError(f"group must be a non-empty string, got {group!r}")
    if type(policy.max_attempts) is not int or policy.max_attempts < 1:
        raise UsageError(f"DeliveryPolicy.max_attempts must be an integer >= 1, got {policy.max_attempts!r}")
    if fetch_max_wait_ms is not None and (type(fetch_max_wait_ms) is not int or fetch_max_wait_ms < 0):
        raise UsageError(f"fetch_max_wait_ms must be an integer >= 0 or None, got {fetch_max_wait_ms!r}")
    return names


def encode_headers(envelope: OnexEnvelopeV1, headers: Headers) -> list[tuple[str, bytes]]:
    """``headers`` plus the CloudEvents binary-mode headers of ``envelope``.

    A caller's header with a CloudEvents name is replaced: the envelope is authoritative (``decode_message`` reads
    the value, not the headers), and a second, contradicting ``ce_id`` would mislead every CloudEvents consumer.
    """
    ce = binary_headers(envelope)
    if not headers:
        return ce
    names = {name for name, _ in ce}
    return [(name, value) for name, value in headers if name not in names] + ce


class Record(Protocol):
    """A consumed record as both buses hold it: aiokafka's ``ConsumerRecord`` and :class:`StoredRecord` fit."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


#: Writes one dead letter: (dead-letter topic, key, value, headers); raises if the broker did not take it.
DeadLetterSink = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[None]]


async def wait_interrupted(interrupt: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``interrupt`` is set first; return whether it was."""
    if interrupt.is_set():
        return True
    if delay <= 0:
        await asyncio.sleep(0)
        return interrupt.is_set()
    try:
        await asyncio.wait_for(interrupt.wait(), delay)
    except TimeoutError:
        return False
    return True


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class Delivery:
    """What one subscription does with one consumed record; the delivery rules of the port, shared by both buses.

    ``handle`` returns ``True`` when the record is finished — handled, skipped as already processed, dead-lettered,
    or dropped — and its offset may be committed; ``False`` when ``interrupt`` was set while it waited (between
    attempts, or for the dead-letter topic): then the offset must not be committed and the record will be delivered
    again to whoever owns the partition next. A handler in flight is never interrupted; only a drain timeout cancels
    it, which raises ``CancelledError`` out of ``handle``.

    Decisions:
    - every ``Exception`` from the handler is retried per the policy (``BaseException`` such as cancellation is not
      caught); the partition waits meanwhile, so order per key holds;
    - a poison message is dead-lettered with ``DLT_ATTEMPTS`` = ``0``: the handler never saw it;
    - with ``policy.dead_letter`` off, or on a topic that is its own dead-letter topic (a ``dlt`` topic of our naming
      — writing there would feed the failure back to ourselves forever), the message is logged and dropped;
    - a message goes to the dead-letter topic with its value, key and original headers unchanged plus the ``DLT_*``
      headers; if the broker refuses the dead letter, it is retried (the partition waits) until it succeeds or the
      subscription stops, because committing without it would lose the message;
    - dead-lettered and dropped event ids are not marked processed: a replay after a fix handles them;
    - a skipped, already processed event is reported to ``on_duplicate(topic, envelope)`` when the subscription has
      one: observers such as the host's event log see what the handler never does;
    - what became of a message that failed for good is reported to ``on_failed(topic, envelope, outcome,
      attempts)``: dead-lettered once the broker took its dead letter, dropped when it has none, interrupted when a
      stop or a rebalance cut the dead-lettering off (it will be delivered again).
    """

    __slots__ = (
        "_dead_letter_sink",
        "_environment",
        "_group",
        "_handler",
        "_on_duplicate",
        "_on_failed",
        "_policy",
        "_processed",
    )

    def __init__(
        self,
        *,
        group: str,
        handler: Handler,
        policy: DeliveryPolicy,
        processed: ProcessedEvents,
        dead_letter: DeadLetterSink,
        environment: str = "dev",
        on_duplicate: DuplicateObserver | None = None,
        on_failed: FailureObserver | None = None,
    ) -> None:
        self._group = group
        self._handler = handler
        self._on_duplicate = on_duplicate
        self._on_failed = on_failed
        self._policy = policy
        self._processed = processed
        self._dead_letter_sink = dead_letter
        self._environment = environment

    async def handle(self, record: Record, interrupt: asyncio.Event) -> bool:
        topic, partition, offset = record.topic, record.partition, record.offset
        key, value, headers = record.key, record.value, tuple(record.headers)
        try:
            envelope = decode_message(value, headers, environment=self._environment)
        except Exception as exc:  # any failure to decode makes the record poison, whatever raised it
            logger.error(
                "undecodable message",
                extra=self._where(topic, partition, offset, None, error=_error_text(exc)),
            )
            return await self._dead_letter(record, headers, exc, None, attempts=0, interrupt=interrupt)
        if value is None:
            value = b""  # a foreign binary-mode CloudEvent may carry no data at all
        event_id = str(envelope.event_id)
        try:
            seen = await self._processed.is_processed(self._group, event_id)
        except Exception as exc:  # a store that is away must not stop the stream; handlers are idempotent too
            logger.warning(
                "could not check whether the event was processed; handling it",
                extra=self._where(topic, partition, offset, event_id, error=_error_text(exc)),
            )
            seen = False
        if seen:
            logger.info("skipped already processed event", extra=self._where(topic, partition, offset, event_id))
            if self._on_duplicate is not None:
                try:
                    self._on_duplicate(topic, envelope)
                except Exception:  # an observer's failure is not the message's
                    logger.warning("on_duplicate observer failed", exc_info=True)
            return True
        attempt = 1
        while True:
            try:
                await self._handler(Message(topic, partition, offset, key, value, headers, envelope, attempt))
            except Exception as exc:  # the handler's failure is data here: retry, then dead-letter
                # A PoisonMessage can never succeed (an invalid payload, say): retrying only delays the stream.
                if attempt >= self._policy.max_attempts or isinstance(exc, PoisonMessage):
                    return await self._dead_letter(
                        record, headers, exc, envelope, attempts=attempt, interrupt=interrupt
                    )
                delay = self._policy.backoff(attempt)
                logger.warning(
                    "handler failed, will retry",
                    extra=self._where(
                        topic,
                        partition,
                        offset,
                        event_id,
                        attempt=attempt,
                        max_attempts=self._policy.max_attempts,
                        backoff_s=round(delay, 4),
                        error=_error_text(exc),
                        error_type=_error_type(exc),
                    ),
                )
                if await wait_interrupted(interrupt, delay):
                    return False
                attempt += 1
            else:
                try:
                    await self._processed.mark_processed(self._group, event_id)
                except Exception as exc:  # the effect happened; the worst case is a duplicate, never a loss
                    logger.warning(
                        "could not record the event as processed",
                        extra=self._where(topic, partition, offset, event_id, error=_error_text(exc)),
                    )
                return True

    async def _dead_letter(
        self,
        record: Record,
        headers: Headers,
        exc: BaseException,
        envelope: OnexEnvelopeV1 | None,
        *,
        attempts: int,
        interrupt: asyncio.Event,
    ) -> bool:
        topic, partition, offset = record.topic, record.partition, record.offset
        event_id = None if envelope is None else str(envelope.event_id)
        where = self._where(
            topic, partition, offset, event_id, attempts=attempts, error=_error_text(exc), error_type=_error_type(exc)
        )
        dlt = dead_letter_topic(topic)
        if not self._policy.dead_letter or dlt == topic:
            reason = "dead-lettering is off" if not self._policy.dead_letter else "the topic is a dead-letter topic"
            logger.error(f"message dropped: {reason}", extra=where)
            self._report_failure(topic, envelope, DROPPED, attempts)
            return True
        dlt_headers: Headers = (
            *headers,
            (DLT_ERROR, _error_text(exc).encode("utf-8", "replace")),
            (DLT_ERROR_TYPE, _error_type(exc).encode()),
            (DLT_ATTEMPTS, str(attempts).encode()),
            (DLT_TOPIC, topic.encode()),
            (DLT_PARTITION, str(partition).encode()),
            (DLT_OFFSET, str(offset).encode()),
            (DLT_GROUP, self._group.encode()),
        )
        failures = 0
        try:
            while True:
                try:
                    await self._dead_letter_sink(dlt, record.key, record.value, dlt_headers)
                except Exception as sink_error:  # the broker refused or is away: the partition waits for it
                    failures += 1
                    delay = min(_MAX_DLT_RETRY_S, self._policy.backoff(failures))
                    logger.warning(
                        "could not write dead letter, will retry",
                        extra={**where, "dead_letter_topic": dlt, "sink_error": repr(sink_error), "backoff_s": delay},
                    )
                    if await wait_interrupted(interrupt, delay):
                        self._report_failure(topic, envelope, INTERRUPTED, attempts)
                        return False
                else:
                    logger.error("message dead-lettered", extra={**where, "dead_letter_topic": dlt})
                    self._report_failure(topic, envelope, DEAD_LETTERED, attempts)
                    return True
        except asyncio.CancelledError:  # a drain timeout: not committed, so delivered again
            self._report_failure(topic, envelope, INTERRUPTED, attempts)
            raise

    def _report_failure(self, topic: str, envelope: OnexEnvelopeV1 | None, outcome: str, attempts: int) -> None:
        if self._on_failed is not None:
            try:
                self._on_failed(topic, envelope, outcome, attempts)
            except Exception:  # an observer's failure is not the message's
                logger.warning("on_failed observer failed", exc_info=True)

    def _where(
        self, topic: str, partition: int, offset: int, event_id: str | None, **more: object
    ) -> dict[str, object]:
        return {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event_id": event_id,
            "group": self._group,
            **more,
        }


# --- the in-process broker ---------------------------------------------------------------------------------------
