"""A circuit breaker: after repeated connection failures, fail fast instead of queueing every caller behind a
dependency that is down, and let a single probe find out when it is back.

States:

- ``closed``: calls go through; each connection-level failure counts, each success resets the count. After
  ``failure_threshold`` consecutive failures the circuit opens.
- ``open``: :meth:`CircuitBreaker.allow` raises :class:`~framework.errors.CircuitOpenError` (retriable) naming the
  breaker, the last failure and until when it stays open, without touching the dependency.
- ``half_open``: once ``reset_timeout_s`` has passed, the next call is let through as the probe; others still fail
  fast while it is in flight. The probe's success closes the circuit; its failure opens it for another
  ``reset_timeout_s``. A probe that ends without a verdict (cancelled, or failed for a reason unrelated to the
  connection) frees the slot for the next caller, and a probe that never reports back is replaced after
  ``probe_timeout_s``, so a lost probe cannot keep the circuit half-open for ever.

Only the caller knows what counts as a connection failure (the PostgreSQL store counts lost connections and refused
connects, not constraint violations), so it reports outcomes explicitly. Time comes from ``clock`` (monotonic
seconds) so tests can move it without sleeping. Not thread-safe: one event loop owns a breaker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from framework.errors import CircuitOpenError, UsageError

__all__ = ["CircuitBreaker", "CircuitState"]

logger = logging.getLogger(__name__)

_MAX_ERROR_TEXT = 300


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """A consecutive-failure circuit breaker named ``name`` (the name appears in messages, logs and stats)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        probe_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if type(failure_threshold) is not int or failure_threshold < 1:
            raise UsageError(f"failure_threshold must be an integer >= 1, got {failure_threshold!r}")
        if not reset_timeout_s > 0:
            raise UsageError(f"reset_timeout_s must be > 0 seconds, got {reset_timeout_s!r}")
        if probe_timeout_s is not None and not probe_timeout_s > 0:
            raise UsageError(f"probe_timeout_s must be > 0 seconds or None, got {probe_timeout_s!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.probe_timeout_s = probe_timeout_s if probe_timeout_s is not None else max(30.0, reset_timeout_s)
        self._clock = clock
        self._wall_clock = wall_clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._open_until = 0.0
        self._probe_started: float | None = None
        self._last_failure = ""
        self._opened_total = 0
        self._rejected_total = 0
        self._probes_total = 0
        self._failures_total = 0
        self._successes_total = 0

    @property
    def state(self) -> CircuitState:
        return self._state

    def allow(self) -> bool:
        """Ask to make a call. Returns ``True`` when the call is the half-open probe (report its outcome!),
        ``False`` for an ordinary call; raises :class:`CircuitOpenError` when the call must fail fast."""
        now = self._clock()
        if self._state is CircuitState.CLOSED:
            return False
        if self._state is CircuitState.OPEN:
            if now < self._open_until:
                self._reject(now, self._open_until - now)
            self._state = CircuitState.HALF_OPEN
            self._probe_started = now
            self._probes_total += 1
            logger.info("circuit half-open: letting one probe through", extra={"circuit": self.name})
            return True
        # Half-open: one probe at a time, unless the one in flight has gone silent for too long.
        if self._probe_started is not None and now - self._probe_started < self.probe_timeout_s:
            self._reject(now, 0.0)
        self._probe_started = now
        self._probes_total += 1
        return True

    def record_success(self) -> None:
        """A call reached the dependency: close the circuit (and reset the failure count)."""
        self._successes_total += 1
        self._consecutive = 0
        self._probe_started = None
        if self._state is not CircuitState.CLOSED:
            self._state = CircuitState.CLOSED
            logger.info("circuit closed: the dependency answers again", extra={"circuit": self.name})

    def record_failure(self, error: BaseException | str) -> None:
        """A call failed at the connection level: count it, and open the circuit at the threshold (at once when
        half-open)."""
        self._failures_total += 1
        self._consecutive += 1
        self._last_failure = _describe(error)
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._consecutive >= self.failure_threshold
        ):
            self._open()
        # While open, the count grows but the deadline stays: stale failures of calls started earlier must not
        # push the probe back.

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled, or failed for a reason unrelated to the dependency): let the
        next caller probe."""
        if self._state is CircuitState.HALF_OPEN:
            self._probe_started = None

    def stats(self) -> dict[str, Any]:
        """State and counters, for /health and /metrics."""
        now = self._clock()
        retry_after = max(0.0, self._open_until - now) if self._state is CircuitState.OPEN else 0.0
        return {
            "state": str(self._state),
            "consecutive_failures": self._consecutive,
            "failure_threshold": self.failure_threshold,
            "reset_timeout_s": self.reset_timeout_s,
            "retry_after_s": round(retry_after, 3),
            "open_until": self._wall_time(self._open_until, now) if self._state is CircuitState.OPEN else None,
            "opened_total": self._opened_total,
            "rejected_total": self._rejected_total,
            "probes_total": self._probes_total,
            "failures_total": self._failures_total,
            "successes_total": self._successes_total,
            "last_failure": self._last_failure or None,
        }

    def _open(self) -> None:
        now = self._clock()
        self._state = CircuitState.OPEN
        self._open_until = now + self.reset_timeout_s
        self._probe_started = None
        self._opened_total += 1
        logger.warning(
            "circuit opened: failing fast",
            extra={
                "circuit": self.name,
                "consecutive_failures": self._consecutive,
                "reset_timeout_s": self.reset_timeout_s,
                "last_failure": self._last_failure,
            },
        )

    def _reject(self, now: float, retry_after: float) -> None:
        self._rejected_total += 1
        if self._state is CircuitState.OPEN:
            until = self._wall_time(self._open_until, now)
            message = (
                f"circuit '{self.name}' is open after {self._consecutive} consecutive connection failures (last: "
                f"{self._last_failure}); failing fast until {until} (in {retry_after:.2f} s), then one probe is let "
                "through; retry later"
            )
        else:
            message = (
                f"circuit '{self.name}' is half-open after connection failures (last: {self._last_failure}): a probe "
                "is checking whether the dependency is back; retry in a moment"
            )
        raise CircuitOpenError(message, retry_after_s=retry_after)

    def _wall_time(self, monotonic: float, now: float) -> str:
        at = self._wall_clock() + (monotonic - now)
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."
