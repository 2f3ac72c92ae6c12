"""The bridge orchestrator with the metadata stamping node, on the embedded PostgreSQL and Kafka, and a small local
OnexTree service that is up, down or slow."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.onextree_client import OnexTreeClient
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import Message
from framework.runtime.config import Settings
from framework.runtime.host import Host
from tests.onextree import OnexTree, serve
from tests.pg import wait_for

ROOT = Path(__file__).resolve().parents[3]
CONTRACTS = [ROOT / "contracts" / "metadata_stamping.yaml", ROOT / "contracts" / "bridge_orchestrator.yaml"]


@pytest.fixture
async def onextree() -> AsyncIterator[tuple[OnexTree, str]]:
    async with serve() as running:
        yield running


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def bridge(
    kafka_bootstrap: str,
    postgres_dsn: str,
    tmp_path: Path,
    onextree: tuple[OnexTree, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Host, str, OnexTree]]:
    service, url = onextree
    monkeypatch.setenv("ONEXTREE_URL", url)
    env = f"b{uuid.uuid4().hex[:10]}"
    settings = Settings(
        service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=postgres_dsn
    )
    async with Host([load_contract(p) for p in CONTRACTS], settings) as host:
        yield host, env, service


async def post(host: Host, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(f"{host.endpoints.http}/workflow", json=body) as resp:
        return resp.status, await resp.json()


def request(**extra: Any) -> dict[str, Any]:
    return {"content": f"hello {uuid.uuid4()}", "namespace": "bridge.tests", **extra}


async def test_post_workflow_runs_the_stamping_workflow(bridge: tuple[Host, str, OnexTree]) -> None:
    host, _, service = bridge
    status, body = await post(host, request(file_path="a.txt"))
    assert status == 200, body
    data = body["data"]
    assert data["state"] == "completed" and data["intelligence"] == "skipped"
    assert len(data["file_hash"]) == 64 and data["stamp_id"]
    assert [(s["step"], s["status"]) for s in data["steps"]] == [
        ("validate_input", "completed"),
        ("hash_generation", "completed"),
        ("onextree_intelligence", "skipped"),
        ("stamp_creation", "completed"),
        ("event_publishing", "completed"),
    ]
    assert service.calls == 0


async def test_intelligence_is_received_when_the_service_answers(bridge: tuple[Host, str, OnexTree]) -> None:
    host, _, service = bridge
    status, body = await post(host, request(enable_intelligence=True))
    assert status == 200, body
    assert body["data"]["intelligence"] == "received"
    assert body["data"]["intelligence_data"]["patterns"] == ["config"]
    assert service.calls == 1


async def test_a_slow_service_means_no_intelligence_not_a_failure(bridge: tuple[Host, str, OnexTree]) -> None:
    host, _, service = bridge
    service.delay_s = 5.0
    status, body = await post(host, request(enable_intelligence=True))
    assert status == 200, body
    assert body["data"]["state"] == "completed" and body["data"]["intelligence"] == "unavailable"
    assert body["data"]["stamp_id"]


async def test_a_service_that_is_down_means_no_intelligence_and_opens_the_circuit(
    bridge: tuple[Host, str, OnexTree],
) -> None:
    host, _, _ = bridge
    node = next(n for n in host.nodes if n.name == "bridge_orchestrator")
    client = node.onextree  # type: ignore[attr-defined]
    client.base_url = f"http://127.0.0.1:{closed_port()}"
    for _ in range(4):
        status, body = await post(host, request(enable_intelligence=True))
        assert status == 200, body
        assert body["data"]["state"] == "completed" and body["data"]["intelligence"] == "unavailable"
    assert client.breaker.state == "open"


async def test_over_its_limit_post_workflow_answers_503_with_retry_after_and_serves_on(
    kafka_bootstrap: str,
    postgres_dsn: str,
    tmp_path: Path,
    onextree: tuple[OnexTree, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, url = onextree
    service.open.clear()  # each workflow waits in its intelligence step until the test lets it go on
    monkeypatch.setenv("ONEXTREE_URL", url)
    contracts = [load_contract(p) for p in CONTRACTS]
    orchestrator = contracts[1]
    workflow = orchestrator.subcontracts.workflow
    assert workflow is not None
    # One workflow at a time and one waiting (the queue's default is the limit); the intelligence step waits as long
    # as the service holds it (the test lets it go), instead of giving up after its 500 ms.
    steps = [
        s.model_copy(update={"timeout_ms": 60_000}) if s.name == "onextree_intelligence" else s for s in workflow.steps
    ]
    narrow = orchestrator.model_copy(
        update={
            "subcontracts": orchestrator.subcontracts.model_copy(
                update={"workflow": workflow.model_copy(update={"max_in_flight": 1, "steps": steps})}
            )
        }
    )
    settings = Settings(
        service_port=0,
        env=f"b{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        kafka_bootstrap_servers=kafka_bootstrap,
        postgres_dsn=postgres_dsn,
    )
    async with Host([contracts[0], narrow], settings) as host:
        node = next(n for n in host.nodes if n.name == "bridge_orchestrator")
        node.onextree = OnexTreeClient(  # type: ignore[attr-defined]
            node.runtime.resources["http_session"], url, timeout_s=60.0
        )
        engine = node.engine  # type: ignore[attr-defined]

        async def send() -> tuple[int, dict[str, Any], str | None]:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{host.endpoints.http}/workflow", json=request(enable_intelligence=True)) as resp,
            ):
                return resp.status, await resp.json(), resp.headers.get("Retry-After")

        admitted = [asyncio.create_task(send()) for _ in range(2)]
        await wait_for(lambda: engine.in_flight == 1 and engine.queued == 1, "one workflow running and one queued")
        status, refused, retry_after = await send()
        assert status == 503 and refused["status"] == "error" and refused["error"] == "busy", refused
        assert "limit 1" in refused["message"] and retry_after is not None and int(retry_after) >= 1
        service.open.set()
        for status, body, _ in await asyncio.gather(*admitted):
            assert status == 200 and body["data"]["state"] == "completed"
        status, body, _ = await send()  # and it serves on
        assert status == 200 and body["data"]["state"] == "completed"


async def test_invalid_requests_and_failed_workflows(bridge: tuple[Host, str, OnexTree]) -> None:
    host, _, _ = bridge
    status, body = await post(host, {"namespace": "x"})
    assert status == 400 and body["error"] == "invalid_request"
    status, body = await post(host, request(content="%%%not base64", encoding="base64"))
    assert status == 422 and body["data"]["state"] == "failed"
    assert "validate_input" in body["data"]["error"]


async def test_command_topic_starts_workflows_and_all_nine_events_are_published(
    bridge: tuple[Host, str, OnexTree], kafka_bootstrap: str
) -> None:
    _, env, _ = bridge
    names = [
        "stamp-workflow-started",
        "stamp-workflow-completed",
        "stamp-workflow-failed",
        "workflow-step-completed",
        "onextree-intelligence-requested",
        "onextree-intelligence-received",
        "metadata-stamp-created",
        "blake3-hash-generated",
        "workflow-state-transition",
    ]
    seen: dict[str, list[OnexEnvelopeV1]] = {n: [] for n in names}
    changed = asyncio.Event()

    async def collect(message: Message) -> None:
        seen[message.envelope.event_type].append(message.envelope)
        changed.set()

    async with KafkaEventBus(kafka_bootstrap) as client:
        topics = [f"{env}.omninode_bridge.onex.evt.{n}.v1" for n in names]
        sub = await client.subscribe(topics, group=f"{env}-check", handler=collect)
        command = OnexEnvelopeV1(
            event_type="stamp-workflow-requested",
            source_node_id="tests",
            source_service="tests",
            source_version="1.0.0",
            payload=request(enable_intelligence=True),
        )
        await client.publish(f"{env}.omninode_bridge.onex.cmd.stamp-workflow-requested.v1", command)
        bad = OnexEnvelopeV1(
            event_type="stamp-workflow-requested",
            source_node_id="tests",
            source_service="tests",
            source_version="1.0.0",
            payload=request(content="%%%", encoding="base64"),
        )
        await client.publish(f"{env}.omninode_bridge.onex.cmd.stamp-workflow-requested.v1", bad)
        steps = ["validate_input", "hash_generation", "onextree_intelligence", "stamp_creation", "event_publishing"]

        def steps_of(cause: OnexEnvelopeV1) -> list[str]:
            return [e.payload["step"] for e in seen["workflow-step-completed"] if e.correlation_id == cause.event_id]

        async with asyncio.timeout(60):
            while not all(seen[n] for n in names) or set(steps_of(command)) != set(steps):
                changed.clear()
                await changed.wait()
        await sub.stop()
    [completed] = seen["stamp-workflow-completed"]
    [failed] = seen["stamp-workflow-failed"]
    assert completed.correlation_id == command.event_id
    # Every event of the good request, the stamping node's included, carries its correlation id.
    for name in ("metadata-stamp-created", "blake3-hash-generated", "onextree-intelligence-requested"):
        assert {e.correlation_id for e in seen[name]} == {command.event_id}, name
    assert set(steps_of(command)) == set(steps)  # a step-completed for every step
    assert failed.correlation_id == bad.event_id and "validate_input" in failed.payload["error"]
    assert seen["onextree-intelligence-received"][0].payload["available"] is True
