"""The host end to end: a COMPUTE and an EFFECT node from test contracts, over the embedded Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from blake3 import blake3

from framework.adapters.kafka_bus import KafkaEventBus
from framework.contract.validate import load_contract
from framework.errors import PortError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import DLT_ATTEMPTS, DeliveryPolicy
from framework.runtime.config import Settings
from framework.runtime.host import Host
from framework.runtime.logs import JsonFormatter
from tests.collect import Collector
from tests.pg import migrated_database, wait_for

CONTRACTS = Path(__file__).parent / "contracts"
ROOT = Path(__file__).resolve().parents[2]


def topic(env: str, event: str) -> str:
    return f"{env}.onex_tests.e2e.evt.{event}.v1"


def submitted(doc_id: str, text: str) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="text-submitted",
        source_node_id="test",
        source_service="tests",
        source_version="1.0.0",
        partition_key=doc_id,
        payload={"doc_id": doc_id, "text": text},
    )


@pytest.fixture
def env() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_compute_and_effect_nodes_end_to_end(
    kafka_bootstrap: str, client_bus: KafkaEventBus, env: str, tmp_path: Path
) -> None:
    settings = Settings(service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap)
    contracts = [load_contract(CONTRACTS / "word_counter.yaml"), load_contract(CONTRACTS / "count_recorder.yaml")]
    results = Collector()
    async with Host(contracts, settings) as host:
        # Every topic of the nodes exists once the host has started, before anything is published or consumed here:
        # count-recorded, which no hosted node consumes, too.
        lister = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await lister.start()
        try:
            existing = await lister.topics()
        finally:
            await lister.stop()
        assert {topic(env, e) for e in ("text-submitted", "words-counted", "count-recorded")} <= existing
        sub = await client_bus.subscribe([topic(env, "count-recorded")], group=f"{env}-check", handler=results)
        sent = [submitted(f"doc-{i}", " ".join(["word"] * i)) for i in range(1, 6)]
        for envelope in sent:
            await client_bus.publish(topic(env, "text-submitted"), envelope)
        got = await results.wait_for(len(sent))
        await sub.stop()

        by_doc = {m.envelope.payload["doc_id"]: m.envelope for m in got}
        assert set(by_doc) == {e.payload["doc_id"] for e in sent}
        for original in sent:
            out = by_doc[original.payload["doc_id"]]
            words = len(original.payload["text"].split())
            assert out.payload["words"] == words
            assert out.payload["digest"] == blake3(f"{original.payload['doc_id']}:{words}".encode()).hexdigest()
            assert out.correlation_id == original.event_id  # the chain started by the submitted event
            assert out.causation_id != original.event_id  # caused by the intermediate words-counted event
            assert out.source_service == "count_recorder" and out.environment == env
        headers = dict(got[0].headers)
        assert headers["ce_type"] == b"omninode.count-recorded.v1"

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{host.endpoints.http}/health") as resp:
                health = await resp.json()
                assert resp.status == 200
            async with http.get(f"{host.endpoints.http}/metrics") as resp:
                metrics = await resp.text()
        assert health["status"] == "success" and health["data"]["ready"] is True
        assert health["data"]["components"]["node:word_counter"] == "up"
        assert f'onex_events_consumed_total{{topic="{topic(env, "text-submitted")}",group="word_counter"}} 5' in metrics
        assert f'onex_events_published_total{{topic="{topic(env, "count-recorded")}"}} 5' in metrics
        # One latency observation per event handled, in each node's histogram.
        assert 'onex_handler_duration_seconds_count{node="word_counter",event="text-submitted"} 5' in metrics
        assert 'onex_handler_duration_seconds_count{node="count_recorder",event="words-counted"} 5' in metrics
        # /health says how things are, not where they are: no address of any component.
        assert "127.0.0.1" not in json.dumps(health) and kafka_bootstrap not in json.dumps(health)
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        assert endpoints["kafka_bootstrap_servers"] == kafka_bootstrap
        assert endpoints["http"] == host.endpoints.http
        assert endpoints["consumes"]["word_counter"] == [topic(env, "text-submitted")]
    assert not host.ready


async def test_invalid_payload_is_dead_lettered_at_once(
    kafka_bootstrap: str, client_bus: KafkaEventBus, env: str, tmp_path: Path
) -> None:
    settings = Settings(service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap)
    dead = Collector()
    lines = io.StringIO()  # the host's log, as the JSON lines `onex run` writes
    json_lines = logging.StreamHandler(lines)
    json_lines.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_lines)
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(logging.getLogger().removeHandler, json_lines)
        host = await cleanup.enter_async_context(Host([load_contract(CONTRACTS / "word_counter.yaml")], settings))
        dlt = f"{env}.onex_tests.e2e.dlt.text-submitted.v1"
        sub = await client_bus.subscribe([dlt], group=f"{env}-dlt", handler=dead, policy=DeliveryPolicy())
        bad = OnexEnvelopeV1(
            event_type="text-submitted",
            source_node_id="t",
            source_service="tests",
            source_version="1.0.0",
            payload={"doc_id": "x"},  # no text: violates TextSubmitted
        )
        await client_bus.publish(topic(env, "text-submitted"), bad)
        [message] = await dead.wait_for(1)
        await sub.stop()
        assert message.envelope == bad
        assert dict(message.headers)[DLT_ATTEMPTS] == b"1"
        # Counted once the broker took the dead letter, which the reader above may see before the host hears of it.
        await wait_for(
            lambda: host.metrics.dead_lettered.value(topic=topic(env, "text-submitted"), group="word_counter") == 1,
            "the dead letter counted",
        )
    # The host's log line about it carries the event's ids and what was wrong.
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    [poison] = [entry for entry in logged if entry["msg"] == "poison event: not retried"]
    assert poison["event_id"] == poison["correlation_id"] == str(bad.event_id)
    assert poison["node"] == "word_counter" and poison["event_type"] == "text-submitted" and poison["attempt"] == "1"
    assert "does not match TextSubmitted" in poison["error"]


async def _read_endpoints(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while not path.exists():
            assert proc.poll() is None, "onex up exited before it was ready"
            await asyncio.sleep(0.1)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _start_host(env_name: str, data_dir: Path, kafka: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "ONEX_ENV": env_name,
        "ONEX_DATA_DIR": str(data_dir),
        "SERVICE_PORT": "0",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "E2E_HANDLER_DELAY_S": "0.01",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "framework.cli.main", "up", str(CONTRACTS)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_sigterm_on_a_busy_host_loses_nothing_and_handles_nothing_twice(
    kafka_bootstrap: str, client_bus: KafkaEventBus, env: str, tmp_path: Path
) -> None:
    total = 300
    results = Collector()
    sub = await client_bus.subscribe([topic(env, "count-recorded")], group=f"{env}-check", handler=results)
    await client_bus.ensure_topics([topic(env, "text-submitted")])
    for i in range(total):
        await client_bus.publish(topic(env, "text-submitted"), submitted(f"doc-{i}", "a b c"))

    first = _start_host(env, tmp_path, kafka_bootstrap)
    try:
        await _read_endpoints(tmp_path / "endpoints.json", first)
        await results.wait_for(50)
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err.decode()[-2000:]
    assert b"onex: stopped" in out
    handled_before_restart = len(results.messages)
    assert handled_before_restart < total, "the host finished everything before SIGTERM; the test proves nothing"

    (tmp_path / "endpoints.json").unlink()
    second = _start_host(env, tmp_path, kafka_bootstrap)
    try:
        await _read_endpoints(tmp_path / "endpoints.json", second)
        await results.wait_for(total)
        await results.quiet()  # give any duplicate time to arrive
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    await sub.stop()
    doc_ids = [m.envelope.payload["doc_id"] for m in results.messages]
    assert sorted(set(doc_ids)) == sorted(f"doc-{i}" for i in range(total))  # nothing lost
    assert len(doc_ids) == total  # nothing handled twice


async def test_nodes_announce_themselves_and_send_heartbeats(tmp_path: Path) -> None:
    settings = Settings(service_port=0, data_dir=tmp_path, bus="memory", heartbeat_interval_s=0.02)
    seen: dict[str, Collector] = {"node-introspection": Collector(), "node-heartbeat": Collector()}
    host = Host([load_contract(Path(__file__).parent / "beacon" / "beacon.yaml")], settings)
    await host.start()
    try:
        assert host.bus is not None
        for event, collector in seen.items():
            await host.bus.subscribe([f"dev.omninode_bridge.onex.evt.{event}.v1"], group="check", handler=collector)
        [intro] = await seen["node-introspection"].wait_for(1)
        beats = await seen["node-heartbeat"].wait_for(2)
    finally:
        await host.stop()
    node_id = host.nodes[0].node_id
    assert node_id.startswith("beacon@") and intro.envelope.payload["node_id"] == node_id
    assert intro.envelope.payload["node_type"] == "EFFECT" and intro.envelope.payload["node_version"] == "2.1.0"
    assert intro.envelope.payload["capabilities"]["effects"] == ["hash"]
    assert {b.envelope.payload["node_id"] for b in beats} == {node_id}
    assert beats[0].envelope.payload["health_status"] == "healthy"


def introspection_request(node_type: str | None = None, *, age: timedelta = timedelta(0)) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="registry-introspection-requested",
        source_node_id="registry-under-test",
        source_service="tests",
        source_version="1.0.0",
        partition_key="requests",  # one partition: the requests are handled in the order sent
        event_timestamp=datetime.now(UTC) - age,
        payload={"node_type": node_type},
    )


REQUESTS = "dev.omninode_bridge.onex.cmd.registry-introspection-requested.v1"
INTROSPECTIONS = "dev.omninode_bridge.onex.evt.node-introspection.v1"


async def test_nodes_announce_again_when_the_registry_asks(tmp_path: Path) -> None:
    settings = Settings(service_port=0, data_dir=tmp_path, bus="memory", heartbeat_interval_s=3600)
    seen = Collector()
    async with Host([load_contract(Path(__file__).parent / "beacon" / "beacon.yaml")], settings) as host:
        assert host.bus is not None
        await host.bus.subscribe([INTROSPECTIONS], group="check", handler=seen)
        await seen.wait_for(1)  # the announcement on start
        for request in (
            introspection_request(age=timedelta(hours=2)),  # answered by the announcement on start
            introspection_request("REDUCER"),  # not for an EFFECT
            introspection_request("EFFECT"),
            introspection_request(),
        ):
            await host.bus.publish(REQUESTS, request)
        # The last request is handled after the others (one partition); its answer is the third announcement.
        announced = await seen.wait_for(3)
        await asyncio.sleep(0.2)  # time for a wrongly answered request to show up as a fourth (it cannot pass one)
        assert len(seen.messages) == 3
    assert {m.envelope.payload["node_id"] for m in announced} == {host.nodes[0].node_id}


async def test_every_host_answers_a_request_for_introspection_over_kafka(
    kafka_bootstrap: str, client_bus: KafkaEventBus, env: str, tmp_path: Path
) -> None:
    beacon = load_contract(Path(__file__).parent / "beacon" / "beacon.yaml")
    seen = Collector()
    requests, introspections = REQUESTS.replace("dev.", f"{env}.", 1), INTROSPECTIONS.replace("dev.", f"{env}.", 1)

    def settings(name: str) -> Settings:
        return Settings(
            env=env,
            service_port=0,
            data_dir=tmp_path / name,
            kafka_bootstrap_servers=kafka_bootstrap,
            heartbeat_interval_s=3600,
        )

    await client_bus.ensure_topics([requests, introspections])
    sub = await client_bus.subscribe([introspections], group=f"{env}-check", handler=seen)
    try:
        async with Host([beacon], settings("a")) as first, Host([beacon], settings("b")) as second:
            ids = {first.nodes[0].node_id, second.nodes[0].node_id}
            await seen.wait_until(lambda ms: sorted(m.envelope.payload["node_id"] for m in ms) == sorted(ids))
            await client_bus.publish(requests, introspection_request())
            # Each host listens in a group of its own, so both answer the one request.
            await seen.wait_until(lambda ms: len(ms) >= 4)
    finally:
        await sub.stop()
    counts = {i: sum(m.envelope.payload["node_id"] == i for m in seen.messages) for i in ids}
    assert counts == dict.fromkeys(ids, 2)


async def test_a_contract_that_does_not_fit_the_database_stops_the_start(postgres_dsn: str, tmp_path: Path) -> None:
    contract = tmp_path / "ledger.yaml"
    contract.write_text(
        textwrap.dedent(
            """
            contract_version: "1.0"
            name: ledger
            version: {major: 1, minor: 0, patch: 0}
            node_type: EFFECT
            effects:
              - name: save_stamp
                adapter: postgres
                table: metadata_stamps
                operation: insert
                columns: {file_hash: text, namespace: text, file_size: text}
            """
        ),
        encoding="utf-8",
    )
    async with migrated_database(postgres_dsn) as dsn:
        settings = Settings(service_port=0, data_dir=tmp_path / "data", bus="memory", postgres_dsn=dsn)
        with pytest.raises(PortError, match=r"save_stamp.*metadata_stamps.*file_size is int8, the contract declares"):
            async with Host([load_contract(contract)], settings):
                pass


async def test_an_instance_id_names_the_nodes_across_restarts(tmp_path: Path) -> None:
    settings = Settings(service_port=0, data_dir=tmp_path, bus="memory", heartbeat_interval_s=3600, instance_id="pod-7")
    beacon = load_contract(Path(__file__).parent / "beacon" / "beacon.yaml")
    ids, groups = [], []
    for _ in range(2):
        async with Host([beacon], settings) as host:
            ids.append(host.nodes[0].node_id)
            groups.append(sorted(sub.group for sub in host._subscriptions))
    assert ids == ["beacon@pod-7", "beacon@pod-7"]
    # The group that hears requests for introspection is the instance's own, the same after a restart.
    assert groups == [["onex-introspection-pod-7"], ["onex-introspection-pod-7"]]
