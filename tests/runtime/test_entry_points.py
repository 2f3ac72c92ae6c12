"""``python -m nodes.<name>`` and ``onex up`` (the shipped nodes) as a user runs them: a process that prints where it
listens and what it consumes, answers /health, and stops cleanly on Ctrl-C (SIGINT). External servers here are the
test session's; no password is ever printed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from framework.contract.validate import load_contract
from framework.shipped import shipped_dir

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["bridge_orchestrator", "bridge_reducer", "metadata_stamping", "node_registry"]


@pytest.mark.parametrize(
    ("command", "nodes"),
    [
        (["-m", "nodes.metadata_stamping"], ["metadata_stamping"]),
        (["-m", "framework.cli.main", "up"], SHIPPED),
    ],
    ids=["python -m nodes.metadata_stamping", "onex up"],
)
async def test_a_host_prints_where_it_listens_and_what_it_consumes_and_stops_on_ctrl_c(
    command: list[str], nodes: list[str], kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    env = f"e{uuid.uuid4().hex[:10]}"
    environ = {
        **os.environ,
        "ONEX_ENV": env,
        "ONEX_DATA_DIR": str(tmp_path),
        "SERVICE_PORT": "0",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "POSTGRES_DSN": postgres_dsn,
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        cwd=tmp_path,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not printed or not printed[-1].endswith("Ctrl-C stops"):
                line = await proc.stdout.readline()
                assert line, f"the host exited before it was ready: {(await proc.stderr.read()).decode()[-2000:]}"
                printed.append(line.decode().rstrip("\n"))
        assert printed[0] == f"onex: hosting {len(nodes)} node{'s' if len(nodes) > 1 else ''} ({', '.join(nodes)})"
        http = re.fullmatch(r"  http      (http://127\.0\.0\.1:\d+)  \(health .*\)", printed[1])
        assert http is not None, printed
        assert f"  kafka     {kafka_bootstrap}" in printed
        password = urlsplit(postgres_dsn).password
        assert any(p.startswith("  postgres  postgresql://") for p in printed)
        if password:  # the embedded database always has one; an external POSTGRES_DSN may not
            assert all(password not in p for p in printed)
        for name in nodes:
            contract = load_contract(shipped_dir("contracts") / f"{name}.yaml")
            for sub in contract.subscriptions:
                assert any(p.startswith(f"  {name} consumes {env}.") and f".{sub.event}.v" in p for p in printed), (
                    name,
                    sub.event,
                    printed,
                )
        async with aiohttp.ClientSession() as session, session.get(http.group(1) + "/health") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["data"]["ready"] is True
        assert {f"node:{name}" for name in nodes} <= set(health["data"]["components"])
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert rest.decode().splitlines()[-2:] == ["onex: stopping: draining in-flight events", "onex: stopped"]
