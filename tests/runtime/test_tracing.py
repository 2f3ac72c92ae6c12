"""The event log (event_logs): what a host writes for each event consumed and published, on the real embedded
PostgreSQL, over the memory bus and Kafka; a database outage; the bound; refusals that pass and refused values;
ONEX_EVENT_LOG=off."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from framework.adapters.embedded_postgres import EmbeddedPostgres
from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.postgres_store import PostgresStore
from framework.contract.validate import load_contract
from framework.errors import QueryError, UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime import tracing
from framework.runtime.config import Settings
from framework.runtime.host import Host
from framework.runtime.tracing import EventTracer, error_text, is_data_error
from tests.collect import Collector
from tests.pg import migrated_database, open_store, wait_for

HERE = Path(__file__).parent
JOB_RUNNER = HERE / "tracing" / "job_runner.yaml"
WORD_COUNTER = HERE / "contracts" / "word_counter.yaml"
COLUMNS = "event_id, topic, event_type, correlation_id, direction, status, started_at, finished_at, duration_ms, error"


def job(job_id: str, mode: str) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="job-submitted",
        source_node_id="test",
        source_service="tests",
        source_version="1.0.0",
        partition_key=job_id,
        payload={"job_id": job_id, "mode": mode},
    )


def text(doc_id: str) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="text-submitted",
        source_node_id="test",
        source_service="tests",
        source_version="1.0.0",
        partition_key=doc_id,
        payload={"doc_id": doc_id, "text": "one two three"},
    )


def topics(host: Host) -> dict[str, str]:
    """Event name → topic, for every event the host's nodes consume or publish."""
    found: dict[str, str] = {}
    for node in host.nodes:
        for event in [s.event for s in node.contract.subscriptions] + node.contract.publishes:
            found[event] = node.routes[event].topic
    return found


async def log_rows(dsn: str, where: str = "TRUE", *args: Any) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(f"SELECT {COLUMNS} FROM event_logs WHERE {where} ORDER BY id", *args)
    finally:
        await connection.close()
    return [dict(row) for row in rows]


async def wait_rows(
    dsn: str, count: int, where: str = "TRUE", *args: Any, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The rows matching ``where``, once there are at least ``count``."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await log_rows(dsn, where, *args)
        return len(found) >= count

    await wait_for(enough, f"{count} event_logs rows where {where} {args}", timeout)
    return found


async def sql(store: PostgresStore, statement: str) -> list[dict[str, Any]]:
    async with store.transaction() as tx:
        return await tx.fetch(statement)


def check_timings(row: dict[str, Any]) -> None:
    assert row["finished_at"] >= row["started_at"]
    assert row["duration_ms"] >= 0
    spent = (row["finished_at"] - row["started_at"]).total_seconds() * 1000
    assert abs(spent - row["duration_ms"]) < 1.0


def brief(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["event_id"], row["topic"], row["event_type"], row["correlation_id"], row["direction"], row["status"])


@pytest.fixture
def env() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


# --- over the memory bus --------------------------------------------------------------------------------------------


async def test_every_consumed_and_published_event_is_logged_with_its_outcome(postgres_dsn: str, tmp_path: Path) -> None:
    contracts = [load_contract(JOB_RUNNER), load_contract(WORD_COUNTER)]
    async with migrated_database(postgres_dsn) as dsn:
        settings = Settings(
            service_port=0, data_dir=tmp_path, bus="memory", postgres_dsn=dsn, heartbeat_interval_s=3600
        )
        ok, failing, invalid, doc = job("j1", "ok"), job("j2", "fail"), job("j3", "bad"), text("d1")
        async with Host(contracts, settings) as host:
            assert host.bus is not None and host.tracer is not None
            t = topics(host)
            done, counted = Collector(), Collector()
            await host.bus.subscribe([t["job-done"]], group="check-done", handler=done)
            await host.bus.subscribe([t["words-counted"]], group="check-counted", handler=counted)
            for topic, envelope in (
                (t["job-submitted"], ok),
                (t["job-submitted"], failing),
                (t["job-submitted"], invalid),
                (t["text-submitted"], doc),
                (t["job-submitted"], ok),  # again: the group processed it already
            ):
                await host.bus.publish(topic, envelope)
            [job_done] = [m.envelope for m in await done.wait_for(1)]
            [words_counted] = [m.envelope for m in await counted.wait_for(1)]
            inbound = await wait_rows(dsn, 6, "direction = 'in'")
            outbound = await wait_rows(dsn, 2, "direction = 'out'")
            tracer = host.tracer
            await wait_for(lambda: tracer.written == 8, "the written count")
            metrics = host.metrics.render()

        jobs, texts = t["job-submitted"], t["text-submitted"]
        by_event: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
        for row in inbound:
            by_event.setdefault(row["event_id"], []).append(brief(row))
            check_timings(row)
        assert by_event[ok.event_id] == [
            (ok.event_id, jobs, "job-submitted", ok.event_id, "in", "handled"),
            (ok.event_id, jobs, "job-submitted", ok.event_id, "in", "duplicate"),
        ]
        # One row per attempt: the retry subcontract allows two, then the event goes to the dead-letter topic.
        assert by_event[failing.event_id] == [
            (failing.event_id, jobs, "job-submitted", failing.event_id, "in", "retrying"),
            (failing.event_id, jobs, "job-submitted", failing.event_id, "in", "dead_lettered"),
        ]
        assert by_event[invalid.event_id] == [
            (invalid.event_id, jobs, "job-submitted", invalid.event_id, "in", "dead_lettered")
        ]
        assert by_event[doc.event_id] == [(doc.event_id, texts, "text-submitted", doc.event_id, "in", "handled")]
        errors = {(row["event_id"], row["status"]): row["error"] for row in inbound}
        assert errors[failing.event_id, "retrying"] == "RuntimeError: job j2 failed on purpose"
        assert errors[failing.event_id, "dead_lettered"] == "RuntimeError: job j2 failed on purpose"
        assert errors[invalid.event_id, "dead_lettered"].startswith("PayloadInvalid: ")
        assert "'bad' is not one of" in errors[invalid.event_id, "dead_lettered"]
        assert errors[ok.event_id, "handled"] is None and errors[doc.event_id, "handled"] is None

        # job-done went through the outbox (the handler ran in a transaction) and was logged by the relay once the
        # broker took it; words-counted was published directly by the compute node. Both carry their chain's id.
        assert sorted(map(brief, outbound), key=lambda b: b[2]) == [
            (job_done.event_id, t["job-done"], "job-done", ok.event_id, "out", "published"),
            (words_counted.event_id, t["words-counted"], "words-counted", doc.event_id, "out", "published"),
        ]
        for row in outbound:
            check_timings(row)
            assert row["error"] is None
        assert "onex_event_log_written_total 8" in metrics
        assert "onex_event_log_dropped_total 0" in metrics

        # A restarted host has a new bus that remembers nothing: the duplicate is found by the host's claim in
        # processed_events instead, and logged the same way.
        async with Host(contracts, settings) as host:
            assert host.bus is not None
            await host.bus.publish(topics(host)["job-submitted"], ok)
            await wait_rows(dsn, 3, "event_id = $1", ok.event_id)
            # Exits at once: the last rows are written by the stop's flush if not before.
            second = text("d2")
            await host.bus.publish(topics(host)["text-submitted"], second)
            await wait_for(lambda: host.metrics.consumed.value(topic=texts, group="word_counter") == 1, "d2 handled")
        assert [r["status"] for r in await log_rows(dsn, "event_id = $1", ok.event_id)] == [
            "handled",
            "duplicate",
            "duplicate",
        ]
        rows = await log_rows(dsn, "correlation_id = $1", second.event_id)
        assert sorted((r["direction"], r["event_type"], r["status"]) for r in rows) == [
            ("in", "text-submitted", "handled"),
            ("out", "words-counted", "published"),
        ]


async def test_a_subscription_without_dead_letters_logs_its_last_attempt_as_dropped(
    postgres_dsn: str, tmp_path: Path
) -> None:
    contract = load_contract(JOB_RUNNER)
    retry = contract.subcontracts.retry
    assert retry is not None and retry.dead_letter
    no_dead_letters = contract.model_copy(
        update={
            "subcontracts": contract.subcontracts.model_copy(
                update={"retry": retry.model_copy(update={"dead_letter": False})}
            )
        }
    )
    async with migrated_database(postgres_dsn) as dsn:
        settings = Settings(service_port=0, data_dir=tmp_path, bus="memory", postgres_dsn=dsn)
        failing, ok = job("j1", "fail"), job("j2", "ok")
        async with Host([no_dead_letters], settings) as host:
            assert host.bus is not None
            jobs = topics(host)["job-submitted"]
            await host.bus.publish(jobs, failing)
            await host.bus.publish(jobs, ok)
            rows = await wait_rows(dsn, 3, "direction = 'in'")
            dead_lettered = host.metrics.dead_lettered.value(topic=jobs, group="job_runner")
            failed = host.metrics.failed.value(topic=jobs, group="job_runner")
        assert [r["status"] for r in rows if r["event_id"] == failing.event_id] == ["retrying", "dropped"]
        assert [r["status"] for r in rows if r["event_id"] == ok.event_id] == ["handled"]
        assert (dead_lettered, failed) == (0, 2)


async def test_event_log_off_writes_nothing(postgres_dsn: str, tmp_path: Path) -> None:
    async with migrated_database(postgres_dsn) as dsn:
        settings = Settings.load(
            {"ONEX_EVENT_LOG": "off"}, service_port=0, data_dir=tmp_path, bus="memory", postgres_dsn=dsn
        )
        assert settings.event_log is False
        async with Host([load_contract(JOB_RUNNER), load_contract(WORD_COUNTER)], settings) as host:
            assert host.bus is not None and host.tracer is None
            t = topics(host)
            done = Collector()
            await host.bus.subscribe([t["job-done"]], group="check-done", handler=done)
            await host.bus.publish(t["job-submitted"], job("j1", "ok"))
            await host.bus.publish(t["job-submitted"], job("j2", "fail"))
            await host.bus.publish(t["text-submitted"], text("d1"))
            await done.wait_for(1)
            await wait_for(
                lambda: host.metrics.dead_lettered.value(topic=t["job-submitted"], group="job_runner") == 1, "j2"
            )
            await asyncio.sleep(0.3)  # three flush intervals of an event log that should not exist
            assert not re.search(r"^onex_event_log_\w+ ", host.metrics.render(), re.MULTILINE)
        assert await log_rows(dsn) == []


def test_the_event_log_setting_takes_on_or_off() -> None:
    assert Settings().event_log is True
    assert Settings.load({}).event_log is True
    assert Settings.load({"ONEX_EVENT_LOG": "OFF"}).event_log is False
    assert Settings.load({"ONEX_EVENT_LOG": "off"}, event_log="on").event_log is True  # the flag wins
    with pytest.raises(UsageError, match=r"ONEX_EVENT_LOG='maybe': expected on or off"):
        Settings.load({"ONEX_EVENT_LOG": "maybe"})


# --- over Kafka -----------------------------------------------------------------------------------------------------


async def test_over_kafka_handled_dead_lettered_and_relayed_events_are_logged(
    postgres_dsn: str, kafka_bootstrap: str, client_bus: KafkaEventBus, env: str, tmp_path: Path
) -> None:
    async with migrated_database(postgres_dsn) as dsn:
        settings = Settings(
            service_port=0, env=env, data_dir=tmp_path, kafka_bootstrap_servers=kafka_bootstrap, postgres_dsn=dsn
        )
        ok, failing = job("k1", "ok"), job("k2", "fail")
        async with Host([load_contract(JOB_RUNNER)], settings) as host:
            t = topics(host)
            done = Collector()
            sub = await client_bus.subscribe([t["job-done"]], group=f"{env}-check", handler=done)
            await client_bus.publish(t["job-submitted"], ok)
            await client_bus.publish(t["job-submitted"], failing)
            [job_done] = [m.envelope for m in await done.wait_for(1)]
            await sub.stop()
            rows = await wait_rows(dsn, 4, "correlation_id = ANY($1::uuid[])", [ok.event_id, failing.event_id])
            assert host.tracer is not None and host.tracer.dropped == 0

    jobs = t["job-submitted"]
    assert sorted(map(brief, rows), key=lambda b: (b[4], str(b[0]), b[5])) == sorted(
        [
            (ok.event_id, jobs, "job-submitted", ok.event_id, "in", "handled"),
            (failing.event_id, jobs, "job-submitted", failing.event_id, "in", "dead_lettered"),
            (failing.event_id, jobs, "job-submitted", failing.event_id, "in", "retrying"),
            (job_done.event_id, t["job-done"], "job-done", ok.event_id, "out", "published"),
        ],
        key=lambda b: (b[4], str(b[0]), b[5]),
    )
    handled = next(r for r in rows if r["status"] == "handled")
    published = next(r for r in rows if r["direction"] == "out")
    assert published["started_at"] >= handled["started_at"]  # the relay publishes after the handler committed
    for row in rows:
        check_timings(row)


# --- a database outage ----------------------------------------------------------------------------------------------


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A data dir outside pytest's 0700 temp tree (as root, the server account must traverse its parents)."""
    parent = Path(tempfile.mkdtemp(prefix="onex-test-tracing-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.postgres
async def test_a_database_outage_does_not_block_handling_and_the_rows_arrive_after_recovery(
    pg_dir: Path, tmp_path: Path
) -> None:
    servers = [EmbeddedPostgres(pg_dir)]
    await servers[0].start()
    port, dsn = servers[0].port, servers[0].dsn
    settings = Settings(service_port=0, data_dir=tmp_path, bus="memory", postgres_dsn=dsn, heartbeat_interval_s=3600)
    host = Host([load_contract(JOB_RUNNER), load_contract(WORD_COUNTER)], settings)
    try:
        await host.start()
        assert host.bus is not None and host.tracer is not None
        t = topics(host)
        counted = Collector()
        await host.bus.subscribe([t["words-counted"]], group="check", handler=counted)

        await servers[0].stop()
        docs = [text(f"d{n}") for n in range(20)]
        for envelope in docs:
            await host.bus.publish(t["text-submitted"], envelope)
        await counted.wait_for(len(docs))  # handled while the database is away
        tracer = host.tracer
        # An 'in' and an 'out' row per event, kept while the database is away.
        await wait_for(lambda: tracer.pending == 2 * len(docs), "the rows to be queued")
        failures = tracer.stats()["failures"]
        await wait_for(lambda: tracer.stats()["failures"] >= failures + 2, "more failed writes")
        assert tracer.dropped == 0 and tracer.written == 0 and tracer.pending == 2 * len(docs)  # kept, not dropped

        servers.append(EmbeddedPostgres(pg_dir, port=port))
        await servers[1].start()
        ids = [d.event_id for d in docs]
        rows = await wait_rows(dsn, 2 * len(docs), "correlation_id = ANY($1::uuid[])", ids, timeout=60)
    finally:
        await host.stop()
        for server in reversed(servers):
            await server.stop()

    inbound = {r["event_id"]: r for r in rows if r["direction"] == "in"}
    outbound = {r["correlation_id"]: r for r in rows if r["direction"] == "out"}
    assert len(rows) == 2 * len(docs)
    assert set(inbound) == set(outbound) == set(ids)
    assert {r["status"] for r in inbound.values()} == {"handled"}
    assert {r["status"] for r in outbound.values()} == {"published"}
    assert {m.envelope.event_id for m in counted.messages} == {r["event_id"] for r in outbound.values()}


@pytest.mark.postgres
async def test_beyond_its_bound_the_event_log_drops_and_counts_and_keeps_the_rest_for_after_the_outage(
    pg_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    servers = [EmbeddedPostgres(pg_dir)]
    await servers[0].start()
    port, dsn = servers[0].port, servers[0].dsn
    store = PostgresStore(dsn, min_size=1, max_size=2, connect_timeout_s=1.0, reset_timeout_s=0.2)
    tracer = EventTracer(store, max_queued=5, flush_interval_s=0.02, max_backoff_s=0.3)
    try:
        await store.start()
        await store.migrate()
        tracer.start()
        await servers[0].stop()
        events = [job(f"b{n}", "ok") for n in range(8)]
        now = time.time()
        for envelope in events:
            tracer.consumed("jobs", envelope, "handled", now, now + 0.001)
        assert (tracer.pending, tracer.dropped) == (5, 3)
        assert sum("dropping items" in r.getMessage() for r in caplog.records) == 1  # once per period
        await wait_for(lambda: tracer.stats()["failures"] >= 2, "failed writes")  # the five are kept meanwhile
        assert (tracer.pending, tracer.dropped, tracer.written) == (5, 3, 0)

        servers.append(EmbeddedPostgres(pg_dir, port=port))
        await servers[1].start()
        rows = await wait_rows(dsn, 5, "topic = 'jobs'", timeout=60)
        assert [r["event_id"] for r in rows] == [e.event_id for e in events[:5]]
        assert {r["status"] for r in rows} == {"handled"}
        assert (tracer.pending, tracer.dropped, tracer.written) == (0, 3, 5)
    finally:
        await tracer.stop(5.0)
        await store.stop()
        for server in reversed(servers):
            await server.stop()


# --- what the database refuses --------------------------------------------------------------------------------------


def test_only_refused_values_count_as_data_errors() -> None:
    for state in ("22001", "22P02", "23505", "23514"):
        assert is_data_error(QueryError("refused", sqlstate=state)), state
    # Read-only after a failover, disk full, a missing privilege, a missing table, no code at all: may pass.
    for maybe in ("25006", "53100", "42501", "42P01", "", None):
        assert not is_data_error(QueryError("refused", sqlstate=maybe)), maybe


def test_error_texts_can_always_be_sent() -> None:
    # A file name decoded with surrogateescape holds a lone surrogate, which UTF-8 cannot carry.
    text = error_text(OSError(b"caf\xe9\x00.txt".decode("utf-8", "surrogateescape")))
    assert text.encode("utf-8") and "\x00" not in text
    assert text == "OSError: caf\\udce9\ufffd.txt"


async def test_a_refusal_that_may_pass_keeps_the_rows_until_it_does(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(postgres_dsn) as store:
        if (await sql(store, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))[0]["rolsuper"]:
            pytest.skip("the test role is a superuser, whom privileges do not stop")
        # A real refusal that is not about the values: the role loses its right to insert (SQLSTATE 42501).
        await sql(store, "REVOKE INSERT ON event_logs FROM CURRENT_USER")
        tracer = EventTracer(store, flush_interval_s=0.01, initial_backoff_s=0.01, max_backoff_s=0.05)
        events = [job(f"p{n}", "ok") for n in range(3)]
        now = time.time()
        tracer.start()
        try:
            for envelope in events:
                tracer.consumed("jobs", envelope, "handled", now, now + 0.001)
            await wait_for(lambda: tracer.stats()["failures"] >= 2, "failed writes")
            assert (tracer.pending, tracer.written, tracer.dropped) == (3, 0, 0)  # kept
            assert await sql(store, "SELECT event_id FROM event_logs") == []
            await sql(store, "GRANT INSERT ON event_logs TO CURRENT_USER")
            await wait_for(lambda: tracer.pending == 0, "the write once the privilege is back")
        finally:
            await tracer.stop(5.0)
        rows = await sql(store, "SELECT event_id FROM event_logs ORDER BY id")
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert (tracer.written, tracer.dropped) == (3, 0)
    assert any("SQLSTATE 42501" in getattr(r, "error", "") for r in caplog.records)  # retried for that cause
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_batch_whose_values_are_refused_is_dropped_alone_and_reported_once_a_minute(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(tracing, "time", SimpleNamespace(monotonic=lambda: clock.now))
    good = [job(f"g{n}", "ok") for n in range(6)]
    bad = [job(f"x{n}", "ok") for n in range(3)]
    now = time.time()

    def handled(envelope: OnexEnvelopeV1) -> None:
        tracer.consumed("jobs", envelope, "handled", now, now + 0.001)

    def refused(envelope: OnexEnvelopeV1) -> None:
        tracer.consumed("jobs", envelope, "", now, now + 0.001)  # status '' breaks a CHECK: SQLSTATE 23514

    def reports() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "onex.event_log" and r.levelno == logging.ERROR]

    async with open_store(postgres_dsn) as store:
        tracer = EventTracer(store, max_batch=2)
        # Batches of two: the second is refused whole (COPY writes all its rows or none), the others are written.
        for record, envelope in ((handled, good[0]), (handled, good[1]), (refused, bad[0]), (handled, good[2])):
            record(envelope)
        handled(good[3])
        await tracer.flush()  # does not raise: nothing to retry
        assert (tracer.pending, tracer.written, tracer.dropped, tracer.stats()["failures"]) == (0, 3, 2, 0)
        [report] = reports()
        assert report.exc_info is not None and "SQLSTATE 23514" in report.getMessage()
        assert (report.sqlstate, report.batches_refused, report.rows_refused) == ("23514", 1, 2)  # type: ignore[attr-defined]

        clock.now += 30  # within the minute: counted, not logged
        refused(bad[1])
        handled(good[4])
        await tracer.flush()
        assert len(reports()) == 1
        clock.now += 31  # a minute after the report: the next one counts what was refused since
        refused(bad[2])
        await tracer.flush()
        assert len(reports()) == 2
        last = reports()[1]
        assert (last.batches_refused, last.rows_refused) == (2, 3)  # type: ignore[attr-defined]
        handled(good[5])
        await tracer.flush()
        rows = await sql(store, "SELECT event_id FROM event_logs ORDER BY id")
    assert [r["event_id"] for r in rows] == [good[n].event_id for n in (0, 1, 3, 5)]
    assert (tracer.pending, tracer.written, tracer.dropped) == (0, 4, 5)
