"""The one backoff formula: growth, cap, jitter bounds, and no overflow after many failures."""

from __future__ import annotations

import pytest

from framework.backoff import backoff_s
from framework.ports.event_bus import DeliveryPolicy


def test_grows_by_the_multiplier_and_stops_at_the_cap() -> None:
    delays = [backoff_s(n, initial_s=0.1, multiplier=2.0, max_s=1.0, jitter=0.0) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_spreads_within_its_fraction() -> None:
    delays = {backoff_s(3, initial_s=1.0, multiplier=2.0, max_s=100.0, jitter=0.25) for _ in range(500)}
    assert min(delays) >= 3.0 and max(delays) <= 5.0
    assert len(delays) > 1


def test_many_failures_stay_finite_at_the_cap() -> None:
    assert backoff_s(10_000, initial_s=0.1, multiplier=2.0, max_s=10.0, jitter=0.0) == 10.0


def test_delivery_policy_waits_by_it() -> None:
    policy = DeliveryPolicy(initial_backoff_s=0.05, multiplier=3.0, max_backoff_s=1.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == pytest.approx([0.05, 0.15, 0.45, 1.0])
