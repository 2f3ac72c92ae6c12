"""Effectively-once consumption at host level: a node whose effects live in PostgreSQL, hosted by
``framework.runtime.host.Host`` over the embedded Kafka, receives the same event (same event id) again and applies
its database effect once.

The bus's own record of processed ids is in memory, per bus: within one host it already skips a repeated id, before
the handler. The host's guarantee is the one that survives a restart: its handler transaction claims the event in
``processed_events`` (``tx.claim_event``) together with the effect. So the event is handled by one host, which
then stops, and sent again to a new host of the same consumer group, whose bus has never seen it: only the
database can tell that host the event was processed."""

from __future__ import annotations

import logging
import textwrap
import uuid
from pathlib import Path

import asyncpg

from framework.adapters.kafka_bus import KafkaEventBus
from framework.contract.spec import Contract
from framework.contract.validate import load_contract
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.config import Settings
from framework.runtime.host import Host
from framework.runtime.kinds import EffectNode
from framework.runtime.logs import log_context
from tests.pg import migrated_database, wait_for

SKIPPED = "event already processed by this group: skipped"


#: The node's table, created by the test: no unique key but the generated id, so a second application of the same
#: event would be a second row.
TABLE = """
CREATE TABLE journal_entries (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid   NOT NULL,
    entry    text   NOT NULL
)
"""


class Journal(EffectNode):
    """Writes one journal_entries row per entry it receives."""

    async def on_entry(self, event: OnexEnvelopeV1) -> None:
        await self.effects.record({"event_id": event.event_id, "entry": event.payload["entry"]})


class ClaimSkips(logging.Handler):
    """The event ids the host's handler skipped because the database held their claim: the host logs the skip
    inside the handler, where the log context names the event."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.host = "first"
        self.event_ids: dict[str, list[uuid.UUID]] = {"first": [], "second": []}

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == SKIPPED:
            self.event_ids[self.host].append(uuid.UUID((log_context.get() or {})["event_id"]))


def write_contract(directory: Path) -> Contract:
    (directory / "catalog.yaml").write_text(
        textwrap.dedent(
            """
            kind: events
            catalog_name: journal
            tenant: onex_tests
            context: journal
            models:
              Entry:
                type: object
                required: [entry]
                properties: {entry: {type: string}}
            events:
              - {name: entry-submitted, payload_model: Entry, external_producers: true}
            """
        ),
        encoding="utf-8",
    )
    path = directory / "journal.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            contract_version: "1.0"
            name: journal
            version: {{major: 1, minor: 0, patch: 0}}
            node_type: EFFECT
            description: Record each submitted entry in journal_entries.
            implementation: {__name__}:Journal
            subscriptions:
              - {{event: entry-submitted, handler: on_entry}}
            effects:
              - name: record
                adapter: postgres
                table: journal_entries
                operation: insert
                columns: {{event_id: uuid, entry: text}}
            subcontracts:
              events: {{$ref: catalog.yaml}}
              retry: {{kind: retry, max_attempts: 2, backoff: {{initial_ms: 10, max_ms: 20}}}}
            """
        ),
        encoding="utf-8",
    )
    return load_contract(path)


def entry(text: str) -> OnexEnvelopeV1:
    # One partition key for every entry: they are consumed in the order published, so an entry applied after
    # another tells that the other was consumed.
    return OnexEnvelopeV1(
        event_type="entry-submitted",
        source_node_id="test",
        source_service="tests",
        source_version="1.0.0",
        partition_key="journal",
        payload={"entry": text},
    )


async def test_the_same_event_sent_again_to_a_restarted_db_backed_host_is_applied_once(
    kafka_bootstrap: str, client_bus: KafkaEventBus, postgres_dsn: str, tmp_path: Path
) -> None:
    env = f"j{uuid.uuid4().hex[:10]}"
    topic = f"{env}.onex_tests.journal.evt.entry-submitted.v1"
    contract = write_contract(tmp_path)
    once, after_first, after_second = entry("once"), entry("after-first"), entry("after-second")
    skips = ClaimSkips()
    host_logger = logging.getLogger("onex.host")
    previous_level = host_logger.level

    async with migrated_database(postgres_dsn) as dsn:
        db = await asyncpg.connect(dsn)
        try:
            await db.execute(TABLE)

            def settings(name: str) -> Settings:
                return Settings(
                    service_port=0,
                    env=env,
                    data_dir=tmp_path / name,
                    kafka_bootstrap_servers=kafka_bootstrap,
                    postgres_dsn=dsn,
                    heartbeat_interval_s=3600,
                )

            async def applied(event: OnexEnvelopeV1) -> bool:
                return bool(
                    await db.fetchval("SELECT count(*) FROM journal_entries WHERE event_id = $1", event.event_id)
                )

            await client_bus.ensure_topics([topic])
            host_logger.addHandler(skips)
            host_logger.setLevel(logging.INFO)
            try:
                async with Host([contract], settings("first")) as first:
                    assert first.endpoints.consumes == {"journal": [topic]}
                    await client_bus.publish(topic, once)
                    await client_bus.publish(topic, once)  # skipped by this bus's in-memory record of processed ids
                    await client_bus.publish(topic, after_first)
                    await wait_for(lambda: applied(after_first), "the first host to apply its entries")
                skips.host = "second"
                async with Host([contract], settings("second")):
                    await client_bus.publish(topic, once)  # the same event id, to a host whose bus never saw it
                    await client_bus.publish(topic, after_second)
                    await wait_for(lambda: applied(after_second), "the second host to apply its entry")
            finally:
                host_logger.removeHandler(skips)
                host_logger.setLevel(previous_level)

            effects = await db.fetch("SELECT event_id, entry FROM journal_entries ORDER BY id")
            claims = await db.fetch("SELECT consumer_group, event_id FROM processed_events")
        finally:
            await db.close()

    # The repeated event's effect was applied once, and so was every other event's.
    assert [(r["event_id"], r["entry"]) for r in effects] == [
        (once.event_id, "once"),
        (after_first.event_id, "after-first"),
        (after_second.event_id, "after-second"),
    ]
    # One claim per event, by the node's consumer group, committed with the effect.
    assert sorted((r["consumer_group"], str(r["event_id"])) for r in claims) == sorted(
        ("journal", str(e.event_id)) for e in (once, after_first, after_second)
    )
    # In the first host, the repeat never reached the handler: its bus skipped the id it had just processed.
    assert skips.event_ids["first"] == []
    # The second host received the repeated event and its handler skipped it on finding the claim. (Kafka may also
    # redeliver what the first host handled but had not committed the offset of when it stopped: those are skipped
    # the same way, and nothing else is.)
    assert once.event_id in skips.event_ids["second"]
    assert set(skips.event_ids["second"]) <= {once.event_id, after_first.event_id}
