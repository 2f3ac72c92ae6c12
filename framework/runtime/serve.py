"""Run a host in the foreground: start, print where everything is, wait for SIGINT/SIGTERM, drain, stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from framework.contract.spec import Contract
from framework.runtime.config import Settings
from framework.runtime.host import Host
from framework.runtime.logs import configure


def describe(host: Host) -> str:
    e = host.endpoints
    lines = [
        f"onex: hosting {len(host.nodes)} node{'s' if len(host.nodes) != 1 else ''} "
        f"({', '.join(n.name for n in host.nodes)})"
    ]
    lines.append(f"  http      {e.http}  (health {e.http}/health, metrics {e.http}/metrics)")
    if e.kafka_bootstrap:
        lines.append(f"  kafka     {e.kafka_bootstrap}{'  (embedded)' if 'kafka' in e.embedded else ''}")
    else:
        lines.append("  bus       in-memory (events stay in this process)")
    if e.postgres_dsn:
        lines.append(f"  postgres  {e.postgres_dsn}{'  (embedded)' if 'postgres' in e.embedded else ''}")
    for node, topics in e.consumes.items():
        for topic in topics:
            lines.append(f"  {node} consumes {topic}")
    lines.append(f"  endpoints written to {host.settings.data_dir / 'endpoints.json'}; Ctrl-C stops")
    return "\n".join(lines)


async def serve(contracts: list[Contract], settings: Settings, out: TextIO = sys.stdout) -> int:
    configure(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = Host(contracts, settings)
    try:
        await host.start()
        print(describe(host), file=out, flush=True)
        await stop.wait()
        print("onex: stopping: draining in-flight events", file=out, flush=True)
    finally:
        await host.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("onex: stopped", file=out, flush=True)
    return 0


def run(contracts: list[Contract], settings: Settings) -> int:
    return asyncio.run(serve(contracts, settings))
