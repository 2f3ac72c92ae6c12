"""Prometheus metrics in the text exposition format (0.0.4): counters and histograms with labels, kept small."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        names = self.label_names
        if len(labels) == len(names):
            try:
                return tuple([str(labels[n]) for n in names])
            except KeyError:
                pass
        raise ValueError(f"{self.name} takes labels {names}, got {tuple(labels)}")

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        return [*self.header(), *(f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in self._values.items())]


class CounterReading(Counter):
    """A counter whose total is kept elsewhere (a circuit breaker's count of openings): copied in before each render
    with :meth:`set`, exported as a Prometheus counter. The source must only ever count up."""

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Iterable[str] = (), buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), []))

    def render(self) -> list[str]:
        lines = self.header()
        for key, counts in self._counts.items():
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = "+Inf" if math.isinf(bound) else f"{bound:g}"
                bucket_labels = _labels(self.label_names, key, 'le="' + le + '"')
                lines.append(f"{self.name}_bucket{bucket_labels} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {self._sums[key]:g}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Metrics:
    """The host's metrics, one registry per host."""

    def __init__(self) -> None:
        self.consumed = Counter("onex_events_consumed_total", "Events handled successfully.", ("topic", "group"))
        self.published = Counter("onex_events_published_total", "Events published.", ("topic",))
        self.failed = Counter("onex_events_failed_total", "Handler attempts that raised.", ("topic", "group"))
        self.dead_lettered = Counter(
            "onex_events_dead_lettered_total", "Events sent to a dead-letter topic.", ("topic", "group")
        )
        self.handler_seconds = Histogram("onex_handler_duration_seconds", "Handler latency.", ("node", "event"))
        self.transitions = Counter(
            "onex_fsm_transitions_total", "FSM transitions taken.", ("machine", "from_state", "to_state")
        )
        self.extra: list[_Metric] = []
        self._collectors: list[Callable[[], None]] = []

    def register(self, metric: _Metric) -> None:
        self.extra.append(metric)

    def on_render(self, collect: Callable[[], None]) -> None:
        """Call ``collect`` before every render: gauges read from somewhere else (a pool's size) are set there, so
        every endpoint that renders this registry shows current values."""
        self._collectors.append(collect)

    def render(self) -> str:
        for collect in self._collectors:
            collect()
        metrics: list[_Metric] = [
            self.consumed,
            self.published,
            self.failed,
            self.dead_lettered,
            self.handler_seconds,
            self.transitions,
            *self.extra,
        ]
        lines: list[str] = []
        for m in metrics:
            lines.extend(m.render())  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"
