"""The node registry end to end on the embedded Kafka and PostgreSQL: introspection, heartbeats, TTL expiry,
discovery and its HTTP route."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from framework.adapters.kafka_bus import KafkaEventBus
from framework.contract.spec import Contract
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.config import Settings
from framework.runtime.host import Host
from nodes.node_registry.node import NodeBridgeRegistry
from tests.collect import Collector

ROOT = Path(__file__).resolve().parents[3]


def registry_contract(ttl_s: int | None = None) -> Contract:
    contract = load_contract(ROOT / "contracts" / "node_registry.yaml")
    if ttl_s is None:
        return contract
    subs = contract.subcontracts
    assert subs.state is not None
    return contract.model_copy(
        update={"subcontracts": subs.model_copy(update={"state": subs.state.model_copy(update={"ttl_s": ttl_s})})}
    )


def envelope(event: str, payload: dict[str, Any]) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type=event, source_node_id="test", source_service="tests", source_version="1.0.0", payload=payload
    )


def introspection(node_id: str, node_type: str = "EFFECT", **extra: Any) -> OnexEnvelopeV1:
    return envelope(
        "node-introspection", {"node_id": node_id, "node_type": node_type, "node_version": "1.2.3", **extra}
    )


async def poll(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    """Wait until ``check`` holds (a database condition: nothing to wait on but polling), bounded."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


def settings(env: str, tmp_path: Path, kafka: str, dsn: str) -> Settings:
    return Settings(service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka, postgres_dsn=dsn)


async def test_registration_heartbeats_discovery_and_the_http_route(
    kafka_bootstrap: str, postgres_dsn: str, client_bus: KafkaEventBus, db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = f"t{uuid.uuid4().hex[:10]}"
    tag = uuid.uuid4().hex[:8]
    stamper, reducer = f"stamper-{tag}", f"reducer-{tag}"

    def topic(event: str, cls: str = "evt") -> str:
        return f"{env}.omninode_bridge.onex.{cls}.{event}.v1"

    registered, answers, requests = Collector(), Collector(), Collector()
    # Before the host starts: its request for introspection goes out on start.
    await client_bus.ensure_topics([topic("registry-introspection-requested", "cmd")])
    subs = [
        await client_bus.subscribe(
            [topic("registry-introspection-requested", "cmd")], group=f"{env}-r", handler=requests
        )
    ]
    async with Host([registry_contract()], settings(env, tmp_path, kafka_bootstrap, postgres_dsn)) as host:
        registry = host.nodes[0]
        assert isinstance(registry, NodeBridgeRegistry)
        subs.append(await client_bus.subscribe([topic("node-registered")], group=f"{env}-c", handler=registered))
        subs.append(
            await client_bus.subscribe([topic("node-discovery-responded", "qrs")], group=f"{env}-d", handler=answers)
        )
        caps = {"publishes": ["metadata-stamp-created"], "stamping": True}
        await client_bus.publish(topic("node-introspection"), introspection(stamper, capabilities=caps))
        await client_bus.publish(topic("node-introspection"), introspection(reducer, "REDUCER"))
        # The registry registers itself too, from the host's announcement.
        mine = {stamper, reducer, registry.node_id}
        await registered.wait_until(lambda ms: mine <= {m.envelope.payload["node_id"] for m in ms})
        # Introspecting again refreshes the row but is not a new registration.
        await client_bus.publish(
            topic("node-introspection"), introspection(stamper, capabilities=caps, node_version="2.0.0")
        )
        await client_bus.publish(
            topic("node-heartbeat"), envelope("node-heartbeat", {"node_id": stamper, "health_status": "degraded"})
        )
        await client_bus.publish(
            topic("node-heartbeat"), envelope("node-heartbeat", {"node_id": f"ghost-{tag}", "health_status": "healthy"})
        )

        async def heartbeat_seen() -> bool:
            row = await db.fetchrow("SELECT * FROM node_registrations WHERE node_id = $1", stamper)
            return row is not None and row["health_status"] == "degraded" and row["node_version"] == "2.0.0"

        await poll(heartbeat_seen)
        row = await db.fetchrow("SELECT * FROM node_registrations WHERE node_id = $1", stamper)
        assert row is not None and row["node_type"] == "EFFECT" and row["last_heartbeat"] is not None
        assert await db.fetchval("SELECT count(*) FROM node_registrations WHERE node_id = $1", f"ghost-{tag}") == 0
        state = await db.fetchval(
            "SELECT to_state FROM fsm_transitions WHERE machine = 'registration' AND instance_id = $1 "
            "ORDER BY sequence DESC LIMIT 1",
            stamper,
        )
        assert state == "unhealthy"  # degraded is not healthy

        ask = envelope("node-discovery-requested", {"capability": "metadata-stamp-created"})
        await client_bus.publish(topic("node-discovery-requested", "qrs"), ask)
        await client_bus.publish(
            topic("node-discovery-requested", "qrs"), envelope("node-discovery-requested", {"node_type": "REDUCER"})
        )
        got = await answers.wait_until(lambda ms: len(ms) >= 2)
        by_cause = {m.envelope.correlation_id: m.envelope.payload["nodes"] for m in got}
        assert [n["node_id"] for n in by_cause[ask.event_id]] == [stamper]
        assert by_cause[ask.event_id][0]["health_status"] == "degraded"
        reducers = [n["node_id"] for n in next(v for k, v in by_cause.items() if k != ask.event_id)]
        assert reducer in reducers and stamper not in reducers

        async with aiohttp.ClientSession() as http:
            url = f"{host.endpoints.http}/api/v1/registry/nodes"
            async with http.get(url, params={"capability": "stamping"}) as resp:
                body = await resp.json()
                assert resp.status == 200
        assert body["status"] == "success" and body["metadata"]["request_id"]
        assert [n["node_id"] for n in body["data"]["nodes"] if n["node_id"].endswith(tag)] == [stamper]
        assert body["data"]["count"] == len(body["data"]["nodes"])
        await asyncio.sleep(0.5)  # a late duplicate node-registered would show
        for sub in subs:
            await sub.stop()
    ids = [m.envelope.payload["node_id"] for m in registered.messages]
    assert sorted(i for i in ids if i.endswith(tag)) == sorted([reducer, stamper])  # once each
    assert requests.messages and requests.messages[0].envelope.source_service == "node_registry"


async def test_silent_registrations_expire_after_their_ttl_and_may_register_again(
    kafka_bootstrap: str, postgres_dsn: str, client_bus: KafkaEventBus, db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = f"t{uuid.uuid4().hex[:10]}"
    node_id = f"quiet-{uuid.uuid4().hex[:8]}"
    registered = Collector()

    def topic(event: str) -> str:
        return f"{env}.omninode_bridge.onex.evt.{event}.v1"

    async def row_count() -> int:
        return int(await db.fetchval("SELECT count(*) FROM node_registrations WHERE node_id = $1", node_id))

    async with Host([registry_contract(ttl_s=1)], settings(env, tmp_path, kafka_bootstrap, postgres_dsn)):
        sub = await client_bus.subscribe([topic("node-registered")], group=f"{env}-c", handler=registered)
        await client_bus.publish(topic("node-introspection"), introspection(node_id))
        await registered.wait_until(lambda ms: any(m.envelope.payload["node_id"] == node_id for m in ms))

        async def gone() -> bool:
            return await row_count() == 0

        await poll(gone)
        states = await db.fetch(
            "SELECT to_state FROM fsm_transitions WHERE machine = 'registration' AND instance_id = $1 "
            "ORDER BY sequence",
            node_id,
        )
        assert [r["to_state"] for r in states] == ["healthy", "expired"]

        await client_bus.publish(topic("node-introspection"), introspection(node_id))
        await registered.wait_until(lambda ms: sum(m.envelope.payload["node_id"] == node_id for m in ms) == 2)
        await sub.stop()
    assert await row_count() in (0, 1)  # registered again (and perhaps expired again since: its ttl is 1 s)
