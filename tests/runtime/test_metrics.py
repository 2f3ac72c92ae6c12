"""The Prometheus text exposition: counters, histograms with cumulative buckets, label escaping."""

from __future__ import annotations

import pytest

from framework.runtime.metrics import Counter, Histogram, Metrics


def test_counter_renders_labels_and_values() -> None:
    c = Counter("x_total", "Things.", ("topic",))
    c.inc(topic="a")
    c.inc(2, topic="a")
    c.inc(topic='we"ird\n')
    lines = c.render()
    assert lines[:2] == ["# HELP x_total Things.", "# TYPE x_total counter"]
    assert 'x_total{topic="a"} 3' in lines
    assert 'x_total{topic="we\\"ird\\n"} 1' in lines
    assert c.value(topic="a") == 3


@pytest.mark.parametrize("labels", [{"group": "g"}, {}, {"topic": "t", "group": "g"}])
def test_wrong_labels_are_refused(labels: dict[str, str]) -> None:
    counter = Counter("x_total", "Things.", ("topic",))
    with pytest.raises(ValueError, match=r"takes labels \('topic',\)"):
        counter.inc(1.0, **labels)
    assert counter.render()[2:] == []


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram("lat_seconds", "Latency.", ("node",), buckets=(0.01, 0.1))
    for v in (0.005, 0.05, 0.05, 5.0):
        h.observe(v, node="n")
    lines = h.render()
    assert 'lat_seconds_bucket{node="n",le="0.01"} 1' in lines
    assert 'lat_seconds_bucket{node="n",le="0.1"} 3' in lines
    assert 'lat_seconds_bucket{node="n",le="+Inf"} 4' in lines
    assert 'lat_seconds_count{node="n"} 4' in lines
    assert any(line.startswith('lat_seconds_sum{node="n"} 5.1') for line in lines)
    assert h.count(node="n") == 4


def test_registry_renders_every_family() -> None:
    m = Metrics()
    m.consumed.inc(topic="t", group="g")
    text = m.render()
    for family in (
        "onex_events_consumed_total",
        "onex_events_published_total",
        "onex_events_failed_total",
        "onex_events_dead_lettered_total",
        "onex_handler_duration_seconds",
        "onex_fsm_transitions_total",
    ):
        assert f"# TYPE {family} " in text
    assert text.endswith("\n")
