"""Workflows on a real host: PostgreSQL keeps every FSM transition and step outcome, events reach Kafka through the
outbox, and a host killed mid-workflow resumes (or fails) every unfinished workflow when it starts again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from framework.adapters.kafka_bus import KafkaEventBus
from framework.contract.validate import load_contract
from framework.ports.event_bus import Message
from framework.runtime.config import Settings
from framework.runtime.host import Host
from tests.pg import wait_for
from tests.workflows.flow_nodes import FlowOrchestrator
from tests.workflows.helpers import CONTRACTS, with_workflow

ROOT = Path(__file__).resolve().parents[2]
RESUME = Path(__file__).parent / "resume"


@pytest.fixture
def env() -> str:
    return f"w{uuid.uuid4().hex[:10]}"


async def executions(db: asyncpg.Connection, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await db.fetch(
        "SELECT workflow_id::text AS id, state, completed_at, error FROM workflow_executions "
        "WHERE workflow_id = ANY($1::uuid[])",
        ids,
    )
    return {r["id"]: r for r in rows}


async def test_every_transition_and_step_outcome_is_persisted_and_announced(
    kafka_bootstrap: str, postgres_dsn: str, db: asyncpg.Connection, env: str, tmp_path: Path
) -> None:
    workflow = {
        "steps": [
            {"name": "first", "target": {"handler": "add_one"}},
            {"name": "maybe", "target": {"handler": "ok"}, "required": False},
            {"name": "second", "target": {"node": "calculator", "handler": "double"}},
        ]
    }
    contracts = [
        with_workflow(load_contract(CONTRACTS / "flow.yaml"), workflow),
        load_contract(CONTRACTS / "calculator.yaml"),
    ]
    settings = Settings(
        service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=postgres_dsn
    )
    seen: list[Message] = []
    arrived = asyncio.Event()

    async def collect(message: Message) -> None:
        seen.append(message)
        arrived.set()

    async with Host(contracts, settings) as host, KafkaEventBus(kafka_bootstrap) as client:
        node = host.nodes[0]
        assert isinstance(node, FlowOrchestrator)
        topic = f"{env}.omninode_bridge.onex.evt.workflow-state-transition.v1"
        sub = await client.subscribe([topic], group=f"{env}-check", handler=collect)
        good = await node.run_workflow({"n": 5, "fail": ["maybe"]})
        assert good is not None
        async with asyncio.timeout(60):
            while len([m for m in seen if m.envelope.payload["workflow_id"] == good.workflow_id]) < 2:
                arrived.clear()
                await arrived.wait()
        await sub.stop()

    wid = good.workflow_id
    assert good.state == "completed" and good.results["second"] == {"value": 10}
    row = (await executions(db, [wid]))[wid]
    assert row["state"] == "completed" and row["completed_at"] is not None and row["error"] is None
    steps = await db.fetch(
        "SELECT step, status, attempts, result FROM workflow_steps WHERE workflow_id = $1 ORDER BY finished_at",
        uuid.UUID(wid),
    )
    assert [(s["step"], s["status"], s["attempts"]) for s in steps] == [
        ("first", "completed", 1),
        ("maybe", "failed", 1),
        ("second", "completed", 1),
    ]
    assert json.loads(steps[2]["result"]) == {"value": {"value": 10}}
    transitions = await db.fetch(
        "SELECT sequence, from_state, to_state, trigger, context FROM fsm_transitions "
        "WHERE machine = 'workflow' AND instance_id = $1 ORDER BY sequence",
        wid,
    )
    assert [(t["sequence"], t["from_state"], t["to_state"]) for t in transitions] == [
        (1, "pending", "processing"),
        (2, "processing", "completed"),
    ]
    assert json.loads(transitions[1]["context"])["skipped_steps"] == 1
    mine = [m.envelope.payload for m in seen if m.envelope.payload["workflow_id"] == wid]
    assert [(p["from_state"], p["to_state"]) for p in mine] == [("pending", "processing"), ("processing", "completed")]


def _start_host(env_name: str, data_dir: Path, kafka: str, dsn: str, pause_s: float) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "ONEX_ENV": env_name,
        "ONEX_DATA_DIR": str(data_dir),
        "SERVICE_PORT": "0",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "POSTGRES_DSN": dsn,
        "FLOW_PAUSE_S": str(pause_s),
        "ONEX_WORKFLOW_LEASE_S": "1",  # the killed host's leases expire a second after its last renewal
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "framework.cli.main", "up", str(RESUME)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def _endpoints(path: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while not path.exists():
            if proc.poll() is not None:
                raise AssertionError(f"host exited: {proc.communicate()[1].decode()[-3000:]}")
            await asyncio.sleep(0.1)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def _post(http: aiohttp.ClientSession, url: str, n: int) -> None:
    try:
        async with http.post(url, json={"n": n}) as resp:
            await resp.read()
    except aiohttp.ClientError:
        pass  # the host is killed under it


async def test_a_host_killed_mid_workflow_resumes_every_unfinished_workflow(
    kafka_bootstrap: str,
    postgres_dsn: str,
    db: asyncpg.Connection,
    env: str,
    tmp_path: Path,
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    host = _start_host(env, tmp_path, kafka_bootstrap, postgres_dsn, pause_s=600)
    try:
        http_url = (await _endpoints(tmp_path / "endpoints.json", host))["http"]
        async with aiohttp.ClientSession() as http:
            posts = [asyncio.create_task(_post(http, f"{http_url}/flow/{wid}", i)) for i, wid in enumerate(ids)]
            async with asyncio.timeout(60):  # every workflow is in its pause step
                while await db.fetchval(  # noqa: ASYNC110 - polling the database
                    "SELECT count(*) FROM workflow_steps WHERE step = 'pause' AND status = 'running' "
                    "AND workflow_id = ANY($1::uuid[])",
                    ids,
                ) < len(ids):
                    await asyncio.sleep(0.05)
            host.send_signal(signal.SIGKILL)
            host.communicate(timeout=30)
            await asyncio.gather(*posts)
    finally:
        if host.poll() is None:
            host.kill()
        host.communicate()
    before = await executions(db, ids)
    assert {r["state"] for r in before.values()} == {"processing"}
    assert all(r["completed_at"] is None for r in before.values())
    # The rows say which step was in flight when the host died.
    rows = await db.fetch(
        "SELECT workflow_id::text AS id, step, status, attempts FROM workflow_steps "
        "WHERE workflow_id = ANY($1::uuid[])",
        ids,
    )
    assert sorted((r["id"], r["step"], r["status"], r["attempts"]) for r in rows) == sorted(
        [(wid, "first", "completed", 1) for wid in ids] + [(wid, "pause", "running", 0) for wid in ids]
    )
    owners = await db.fetch("SELECT DISTINCT owner FROM workflow_executions WHERE workflow_id = ANY($1::uuid[])", ids)
    assert len(owners) == 1 and owners[0]["owner"] == f"resume_orchestrator@{socket.gethostname()}-{host.pid}"

    # A workflow recorded but never started (killed between the two): it is started and run as well.
    orphan = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO workflow_executions (workflow_id, workflow_name, state, context) VALUES ($1, 'resumable', "
        "'pending', $2::jsonb)",
        uuid.UUID(orphan),
        json.dumps({"input": {"n": 100}}),
    )
    # A workflow whose input cannot be used: its required step fails, and so does the workflow, explicitly.
    broken = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO workflow_executions (workflow_id, workflow_name, state, context) VALUES ($1, 'resumable', "
        "'pending', $2::jsonb)",
        uuid.UUID(broken),
        json.dumps({"input": {}}),
    )

    FlowOrchestrator.pause_s = 0.0
    settings = Settings(
        service_port=0,
        env=env,
        data_dir=tmp_path / "again",
        kafka_bootstrap_servers=kafka_bootstrap,
        postgres_dsn=postgres_dsn,
        workflow_lease_s=0.3,  # the new host looks for expired leases every 0.1 s
    )
    contracts = [load_contract(RESUME / "resumable.yaml"), load_contract(RESUME / "calculator.yaml")]
    async with Host(contracts, settings) as again:
        node = again.nodes[0]
        assert isinstance(node, FlowOrchestrator) and node.recovery is not None
        await node.recovery  # the unowned ones at once; the dead host's once their leases expire

        async def all_finished() -> bool:
            rows = await executions(db, [*ids, orphan, broken])
            return all(r["completed_at"] is not None for r in rows.values())

        await wait_for(all_finished, "every unfinished workflow to be resumed or failed")
    after = await executions(db, [*ids, orphan, broken])
    assert {wid: after[wid]["state"] for wid in [*ids, orphan]} == {wid: "completed" for wid in [*ids, orphan]}
    assert after[broken]["state"] == "failed" and "first" in after[broken]["error"]
    assert all(r["completed_at"] is not None for r in after.values())
    # Steps recorded before the kill were not run again; the rest ran once.
    steps = await db.fetch(
        "SELECT workflow_id::text AS id, step, attempts, result FROM workflow_steps "
        "WHERE workflow_id = ANY($1::uuid[])",
        ids,
    )
    assert sorted((s["step"], s["attempts"]) for s in steps) == sorted(
        [(step, 1) for step in ("first", "pause", "second") for _ in ids]
    )
    seconds = {s["id"]: json.loads(s["result"])["value"]["value"] for s in steps if s["step"] == "second"}
    assert seconds == {wid: i * 2 for i, wid in enumerate(ids)}  # calculator.double of the input's n
    transitions = await db.fetch(
        "SELECT instance_id, array_agg(to_state ORDER BY sequence) AS path FROM fsm_transitions "
        "WHERE machine = 'workflow' AND instance_id = ANY($1::text[]) GROUP BY instance_id",
        [*ids, orphan],
    )
    assert {t["instance_id"]: list(t["path"]) for t in transitions} == {
        wid: ["processing", "completed"] for wid in [*ids, orphan]
    }
