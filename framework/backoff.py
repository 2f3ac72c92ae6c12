"""Exponential backoff with jitter: the one formula the bus, the outbox relay and workflow steps wait by."""

from __future__ import annotations

import random

#: Past this many doublings the cap has long been reached; it also keeps the power finite.
_MAX_EXPONENT = 60


def backoff_s(attempt: int, *, initial_s: float, multiplier: float, max_s: float, jitter: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): ``initial_s * multiplier**(attempt-1)``, capped at
    ``max_s``, then spread by ±``jitter`` (a fraction) so that many waiters do not retry in step."""
    base = min(max_s, initial_s * multiplier ** min(attempt - 1, _MAX_EXPONENT))
    return max(0.0, base * (1 + jitter * (2 * random.random() - 1)))
