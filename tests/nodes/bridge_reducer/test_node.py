"""The bridge reducer end to end: hosted on the embedded Kafka and PostgreSQL, stamps and workflows in, rows of
bridge_states and bridge-state-updated / aggregation events out."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from framework.adapters.kafka_bus import KafkaEventBus
from framework.contract.spec import Contract
from framework.contract.subcontracts import AggregationStrategy, AggregationType
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import DLT_ATTEMPTS, DeliveryPolicy, dead_letter_topic
from framework.runtime.config import Settings
from framework.runtime.host import Host
from nodes.bridge_reducer.grouping import MAX_SEGMENT, by_directory
from nodes.bridge_reducer.node import NodeBridgeReducer
from tests.collect import Collector

ROOT = Path(__file__).resolve().parents[3]


def reducer_contract(batch_size: int, custom_function: str | None = None) -> Contract:
    """The shipped contract, under a name of its own (its batch FSM instance) and with a small batch; with
    ``custom_function``, its CUSTOM strategy calls that function instead."""
    contract = load_contract(ROOT / "contracts" / "bridge_reducer.yaml")
    subs = contract.subcontracts
    assert subs.aggregation is not None
    strategies = list(subs.aggregation.strategies)
    if custom_function is not None:
        strategies = [
            s.model_copy(update={"function": custom_function}) if s.type is AggregationType.CUSTOM else s
            for s in strategies
        ]
    aggregation = subs.aggregation.model_copy(update={"batch_size": batch_size, "strategies": strategies})
    return contract.model_copy(
        update={
            "name": f"bridge_reducer_{uuid.uuid4().hex[:8]}",
            "subcontracts": subs.model_copy(update={"aggregation": aggregation}),
        }
    )


def stamp(namespace: str, size: int, content_type: str, file_hash: str | None = None, **extra: Any) -> OnexEnvelopeV1:
    """A metadata-stamp-created event; ``extra`` adds payload fields (``file_path``)."""
    return OnexEnvelopeV1(
        event_type="metadata-stamp-created",
        source_node_id="test",
        source_service="tests",
        source_version="1.0.0",
        partition_key=file_hash,
        payload={
            "stamp_id": str(uuid.uuid4()),
            "file_hash": file_hash or hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            "namespace": namespace,
            "file_size": size,
            "content_type": content_type,
            "created_at": datetime(2025, 1, 1, 0, 0, 30, tzinfo=UTC).isoformat(),
            **extra,
        },
    )


async def test_stamps_and_workflows_fold_into_isolated_namespaces_once_each(
    kafka_bootstrap: str, postgres_dsn: str, client_bus: KafkaEventBus, tmp_path: Path
) -> None:
    env = f"t{uuid.uuid4().hex[:10]}"
    ns_a, ns_b = f"a_{uuid.uuid4().hex[:8]}", f"b_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=postgres_dsn
    )

    def topic(event: str) -> str:
        return f"{env}.omninode_bridge.onex.evt.{event}.v1"

    seen = {e: Collector() for e in ("bridge-state-updated", "aggregation-started", "aggregation-completed")}
    workflow_id = str(uuid.uuid4())
    first = stamp(ns_a, 100, "text/plain")
    sent = [
        first,
        stamp(ns_a, 2000, "application/json"),
        stamp(ns_b, 50, "text/plain"),
        first,  # redelivered: the same event id again
        # Same key as the redelivered one, so the same partition, handled after it: when its update is out, the
        # redelivery has been handled too.
        stamp(ns_b, 10, "text/plain", file_hash=first.payload["file_hash"]),
    ]
    async with Host([reducer_contract(batch_size=3)], settings) as host:
        assert isinstance(host.nodes[0], NodeBridgeReducer)
        subs = [await client_bus.subscribe([topic(e)], group=f"{env}-check-{e}", handler=c) for e, c in seen.items()]
        for envelope in sent:
            await client_bus.publish(topic("metadata-stamp-created"), envelope)
        completed = OnexEnvelopeV1(
            event_type="stamp-workflow-completed",
            source_node_id="test",
            source_service="tests",
            source_version="1.0.0",
            payload={"workflow_id": workflow_id, "completed_steps": 3, "namespace": ns_a, "file_size": 100},
        )
        await client_bus.publish(topic("stamp-workflow-completed"), completed)
        # 4 stamps counted, by 4 strategies (namespace, time window, file type, size) + 1 workflow group.
        await seen["bridge-state-updated"].wait_for(17)
        # Batches close at batch_size (3) items or after flush_interval_ms: 5 items counted in all, in 2 or more.
        closed = seen["aggregation-completed"]
        async with asyncio.timeout(60):
            while True:
                closed.arrived.clear()
                if sum(m.envelope.payload["items"] for m in closed.messages) >= 5:
                    break
                await closed.arrived.wait()
        await seen["bridge-state-updated"].quiet()
        for sub in subs:
            await sub.stop()

    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch(
            "SELECT * FROM bridge_states WHERE namespace = ANY($1::text[]) ORDER BY 1, 2, 3", [ns_a, ns_b]
        )
    finally:
        await connection.close()
    table = {(r["namespace"], r["aggregation_type"], r["group_key"]): r for r in rows}
    window = "2025-01-01T00:00:00+00:00"
    assert {k: (r["total_items"], r["total_size_bytes"]) for k, r in table.items()} == {
        (ns_a, "NAMESPACE_GROUPING", ns_a): (2, 2100),
        (ns_a, "TIME_WINDOW", window): (2, 2100),
        (ns_a, "FILE_TYPE_GROUPING", "text/plain"): (1, 100),
        (ns_a, "FILE_TYPE_GROUPING", "application/json"): (1, 2000),
        (ns_a, "SIZE_BUCKETS", "le_1024"): (1, 100),
        (ns_a, "SIZE_BUCKETS", "le_65536"): (1, 2000),
        (ns_a, "WORKFLOW_GROUPING", workflow_id): (1, 100),
        (ns_b, "NAMESPACE_GROUPING", ns_b): (2, 60),
        (ns_b, "TIME_WINDOW", window): (2, 60),
        (ns_b, "FILE_TYPE_GROUPING", "text/plain"): (2, 60),
        (ns_b, "SIZE_BUCKETS", "le_1024"): (2, 60),
    }
    state_a = table[(ns_a, "NAMESPACE_GROUPING", ns_a)]["state"]
    assert json.loads(state_a) == {"content_types": {"text/plain": 1, "application/json": 1}}
    assert table[(ns_a, "TIME_WINDOW", window)]["window_start"] == datetime(2025, 1, 1, tzinfo=UTC)

    updates = [m.envelope for m in seen["bridge-state-updated"].messages]
    assert len(updates) == 17  # nothing for the redelivered event
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for update in updates:
        p = update.payload
        last[(p["namespace"], p["aggregation_type"], p["group_key"])] = p
        assert update.partition_key == p["namespace"]
    assert {k: (p["total_items"], p["total_size"]) for k, p in last.items()} == {
        k: (r["total_items"], r["total_size_bytes"]) for k, r in table.items()
    }
    batches = [m.envelope.payload for m in seen["aggregation-completed"].messages]
    assert sum(b["items"] for b in batches) == 5  # the redelivered event is not counted in a batch either
    assert all(0 < b["items"] <= 3 and b["aggregation_type"] == "NAMESPACE_GROUPING" for b in batches)
    started = {m.envelope.payload["batch_id"] for m in seen["aggregation-started"].messages}
    assert {b["batch_id"] for b in batches} == started


async def rows_of(postgres_dsn: str, namespace: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(aggregation_type, group_key) → (total_items, total_size_bytes) of the rows of ``namespace``."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch("SELECT * FROM bridge_states WHERE namespace = $1", namespace)
    finally:
        await connection.close()
    return {(r["aggregation_type"], r["group_key"]): (r["total_items"], r["total_size_bytes"]) for r in rows}


async def test_stamps_fold_by_the_directory_of_their_path_and_odd_paths_are_stored(
    kafka_bootstrap: str, postgres_dsn: str, client_bus: KafkaEventBus, tmp_path: Path
) -> None:
    env = f"t{uuid.uuid4().hex[:10]}"
    ns = f"d_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=postgres_dsn
    )

    def topic(event: str) -> str:
        return f"{env}.omninode_bridge.onex.evt.{event}.v1"

    # A NUL (which PostgreSQL text refuses) and a 5000-character segment (too big for the primary-key index) would
    # fail the upsert, and with it the event, if they reached the group key as they are.
    odd = "bad\x00dir/" + "x" * 5000 + "/f.bin"
    sent = [
        stamp(ns, 100, "text/x-python", file_path="src/pkg/a.py"),
        stamp(ns, 200, "text/x-python", file_path="src\\pkg\\b.py"),
        stamp(ns, 10, "text/markdown", file_path="docs/guide/../index.md"),
        stamp(ns, 5, "text/markdown", file_path="README.md"),
        stamp(ns, 7, "text/plain"),  # no file_path
        stamp(ns, 8, "text/plain", file_path=None),
        stamp(ns, 1, "application/octet-stream", file_path=odd),
    ]
    contract = reducer_contract(batch_size=100)
    updates, dead = Collector(), Collector()
    async with Host([contract], settings) as host:
        subs = [
            await client_bus.subscribe([topic("bridge-state-updated")], group=f"{env}-check", handler=updates),
            await client_bus.subscribe(
                [dead_letter_topic(topic("metadata-stamp-created"))],
                group=f"{env}-dlt",
                handler=dead,
                policy=DeliveryPolicy(),
            ),
        ]
        for envelope in sent:
            await client_bus.publish(topic("metadata-stamp-created"), envelope)
        # 7 stamps by the 4 built-in strategies, and the 5 with a path by the directory strategy.
        await updates.wait_for(7 * 4 + 5)
        await updates.quiet()
        for sub in subs:
            await sub.stop()
        assert host.metrics.failed.value(topic=topic("metadata-stamp-created"), group=contract.name) == 0
    assert dead.messages == []

    odd_key = "bad\ufffddir/" + "x" * (MAX_SEGMENT - 1) + "…"
    table = await rows_of(postgres_dsn, ns)
    assert {g: t for (kind, g), t in table.items() if kind == "CUSTOM"} == {
        "src/pkg": (2, 300),
        "docs": (1, 10),
        ".": (1, 5),
        odd_key: (1, 1),
    }
    assert table[("NAMESPACE_GROUPING", ns)] == (7, 331)  # the stamps without a path are still counted there
    last: dict[str, tuple[int, int]] = {}
    for message in updates.messages:
        p = message.envelope.payload
        if p["aggregation_type"] == "CUSTOM":
            last[p["group_key"]] = (p["total_items"], p["total_size"])
    assert last == {g: t for (kind, g), t in table.items() if kind == "CUSTOM"}


def explode_on_boom(item: Mapping[str, Any], strategy: AggregationStrategy) -> str | None:
    """A CUSTOM function that raises on one item (what ``by_directory`` is written never to do)."""
    if item.get("file_path") == "boom/x":
        raise ValueError("boom")
    return by_directory(item, strategy)


async def test_a_custom_function_that_raises_dead_letters_its_event_and_the_reducer_goes_on(
    kafka_bootstrap: str, postgres_dsn: str, client_bus: KafkaEventBus, tmp_path: Path
) -> None:
    """What the docs say of a CUSTOM function that raises: aggregation.py does not catch it, so the event fails as a
    whole; the retry subcontract tries it 3 times, then dead-letters it, and the next events are folded."""
    env = f"t{uuid.uuid4().hex[:10]}"
    ns = f"e_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=postgres_dsn
    )

    def topic(event: str) -> str:
        return f"{env}.omninode_bridge.onex.evt.{event}.v1"

    contract = reducer_contract(batch_size=100, custom_function=f"{__name__}:explode_on_boom")
    bad = stamp(ns, 50, "text/plain", file_path="boom/x")
    good = stamp(ns, 9, "text/plain", file_hash=bad.payload["file_hash"], file_path="ok/dir/y")  # same partition
    updates, dead = Collector(), Collector()
    async with Host([contract], settings) as host:
        subs = [
            await client_bus.subscribe([topic("bridge-state-updated")], group=f"{env}-check", handler=updates),
            await client_bus.subscribe(
                [dead_letter_topic(topic("metadata-stamp-created"))],
                group=f"{env}-dlt",
                handler=dead,
                policy=DeliveryPolicy(),
            ),
        ]
        await client_bus.publish(topic("metadata-stamp-created"), bad)
        await client_bus.publish(topic("metadata-stamp-created"), good)
        [message] = await dead.wait_for(1)
        await updates.wait_for(5)
        await updates.quiet()
        for sub in subs:
            await sub.stop()
        assert host.metrics.failed.value(topic=topic("metadata-stamp-created"), group=contract.name) == 3
        assert host.metrics.dead_lettered.value(topic=topic("metadata-stamp-created"), group=contract.name) == 1
    assert message.envelope.event_id == bad.event_id
    assert dict(message.headers)[DLT_ATTEMPTS] == b"3"
    # Nothing of the failed event was folded, by any strategy; the next one was, by all five.
    assert await rows_of(postgres_dsn, ns) == {
        ("NAMESPACE_GROUPING", ns): (1, 9),
        ("TIME_WINDOW", "2025-01-01T00:00:00+00:00"): (1, 9),
        ("FILE_TYPE_GROUPING", "text/plain"): (1, 9),
        ("SIZE_BUCKETS", "le_1024"): (1, 9),
        ("CUSTOM", "ok/dir"): (1, 9),
    }
    assert len(updates.messages) == 5
