"""The embedded servers and ``open_services``, against the real Tansu broker and PostgreSQL: no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from framework.adapters.embedded_kafka import (
    EmbeddedKafka,
    _broker_binary,
    free_loopback_port,
    open_output,
    port_is_open,
    spawn_child,
    stop_child,
)
from framework.adapters.embedded_postgres import (
    APP_USER,
    DATABASE,
    EmbeddedPostgres,
    EmbeddedPostgresError,
)
from framework.adapters.services import (
    NonLoopbackAddressError,
    check_kafka_bootstrap,
    check_postgres_dsn,
    open_services,
    redact_dsn,
)
from framework.errors import RetriablePortError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _process_gone(pid: int) -> bool:
    """True once ``pid`` is neither running nor a zombie waiting to be reaped."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A fresh data dir outside pytest's 0700 temp tree (the server account must traverse its parents)."""
    parent = Path(tempfile.mkdtemp(prefix="onex-test-pg-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def occupied_dir(pg_dir: Path) -> Path:
    pg_dir.mkdir()
    (pg_dir / "notes.txt").write_text("mine")
    return pg_dir


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[EmbeddedKafka]:
    async with EmbeddedKafka() as kafka:
        yield kafka


# --- EmbeddedKafka ------------------------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_keyed_message_with_headers_round_trips(broker: EmbeddedKafka, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic()
    await broker.create_topics([topic], partitions=3)
    headers = [("ce_type", b"metadata-stamp-created"), ("content-type", b"application/json")]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, f"v{i}".encode(), key=b"key-1", headers=headers) for i in range(5)]
    finally:
        await producer.stop()
    # One key, one partition: the ordering guarantee the event bus relies on.
    assert len({metadata.partition for metadata in sent}) == 1

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        received = [await asyncio.wait_for(consumer.getone(), timeout=10) for _ in range(5)]
    finally:
        await consumer.stop()
    assert [record.value for record in received] == [f"v{i}".encode() for i in range(5)]
    assert {record.key for record in received} == {b"key-1"}
    assert {record.partition for record in received} == {sent[0].partition}
    assert list(received[0].headers) == headers


@pytest.mark.kafka
async def test_create_topics_makes_the_partitions_and_skips_existing(
    broker: EmbeddedKafka, unique_topic: Callable[..., str]
) -> None:
    first, second = unique_topic("a"), unique_topic("b")
    assert sorted(await broker.create_topics([first, second], partitions=3)) == sorted([first, second])
    # Already there: nothing created, no error, and the partition count is unchanged.
    assert await broker.create_topics([first], partitions=5) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([first, second])
    finally:
        await admin.close()
    assert {topic["topic"]: len(topic["partitions"]) for topic in described} == {first: 3, second: 3}


@pytest.mark.kafka
async def test_create_topics_rejects_zero_partitions(broker: EmbeddedKafka) -> None:
    with pytest.raises(UsageError, match="partitions must be at least 1, got 0"):
        await broker.create_topics(["never-created"], partitions=0)


@pytest.mark.kafka
async def test_kafka_life_start_twice_stop_twice_port_closed() -> None:
    port = free_loopback_port()
    kafka = EmbeddedKafka(port=port)
    began = time.perf_counter()
    await kafka.start()
    startup = time.perf_counter() - began
    pid = kafka.pid
    assert pid is not None
    assert kafka.bootstrap_servers == f"127.0.0.1:{port}"
    assert port_is_open(port)
    assert startup < 10
    with pytest.raises(UsageError, match="already started"):
        await kafka.start()

    await kafka.stop()
    await kafka.stop()
    assert not port_is_open(port)
    assert _process_gone(pid)
    with pytest.raises(UsageError, match="cannot read bootstrap_servers"):
        _ = kafka.bootstrap_servers
    with pytest.raises(UsageError, match="cannot be restarted"):
        await kafka.start()


def test_kafka_refuses_a_non_loopback_host() -> None:
    with pytest.raises(UsageError, match=r"host must be '127\.0\.0\.1'.*'0\.0\.0\.0'"):
        EmbeddedKafka(host="0.0.0.0")


# --- EmbeddedPostgres ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_data_survives_a_restart_on_the_same_dir(pg_dir: Path) -> None:
    async with EmbeddedPostgres(pg_dir) as first:
        connection = await asyncpg.connect(first.dsn)
        try:
            await connection.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            await connection.execute("INSERT INTO kept VALUES (1, 'survives')")
        finally:
            await connection.close()
        first_pid = first.pid
    assert first_pid is not None and _process_gone(first_pid)
    assert not (pg_dir / "postmaster.pid").exists()

    async with EmbeddedPostgres(pg_dir) as second:
        connection = await asyncpg.connect(second.dsn)
        try:
            assert await connection.fetch("SELECT id, note FROM kept") == [(1, "survives")]
        finally:
            await connection.close()


@pytest.mark.postgres
async def test_postgres_dsns_and_loopback_only(pg_dir: Path) -> None:
    async with EmbeddedPostgres(pg_dir) as postgres:
        dsn, bare = urlsplit(postgres.dsn), urlsplit(postgres.dsn_without_password)
        assert (dsn.hostname, dsn.port, dsn.path, dsn.username) == (
            "127.0.0.1",
            postgres.port,
            f"/{DATABASE}",
            APP_USER,
        )
        assert dsn.password
        assert bare.password is None and dsn.password not in postgres.dsn_without_password
        assert postgres.dsn_without_password == f"postgresql://{APP_USER}@127.0.0.1:{postgres.port}/{DATABASE}"

        connection = await asyncpg.connect(postgres.dsn)
        try:
            assert await connection.fetchval("SELECT current_database()") == DATABASE
            assert await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
            assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
            assert str(await connection.fetchval("SELECT inet_server_addr()")) == "127.0.0.1"
        finally:
            await connection.close()
        admin = await asyncpg.connect(postgres.superuser_dsn)
        try:
            assert await admin.fetchval("SHOW unix_socket_directories") == ""
        finally:
            await admin.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(postgres.dsn.replace(dsn.password, "wrong"))


@pytest.mark.postgres
async def test_postgres_recovers_from_a_stale_pid_file_and_refuses_a_live_server(pg_dir: Path) -> None:
    async with EmbeddedPostgres(pg_dir):
        pass
    # A pid file left by a killed run whose pid now belongs to another program (this test process).
    (pg_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg_dir}\n0\n5432\n\n127.0.0.1\n0 0\nready\n")
    async with EmbeddedPostgres(pg_dir) as live:
        other = EmbeddedPostgres(pg_dir)
        with pytest.raises(
            EmbeddedPostgresError, match=rf"\(pid {live.pid}, port \d+\) is already running on data dir"
        ):
            await other.start()
        # The failed attempt must not have disturbed the live server.
        connection = await asyncpg.connect(live.dsn)
        await connection.close()


@pytest.mark.postgres
async def test_postgres_refuses_a_non_empty_dir_that_is_no_cluster(occupied_dir: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match="is not empty and holds no cluster"):
        await EmbeddedPostgres(occupied_dir).start()
    assert _entries(occupied_dir) == ["notes.txt"]


async def test_postgres_dsn_before_start_is_a_usage_error(pg_dir: Path) -> None:
    with pytest.raises(UsageError, match="cannot read dsn: embedded PostgreSQL server is new"):
        _ = EmbeddedPostgres(pg_dir).dsn


# --- open_services --------------------------------------------------------------------------------------------------


async def test_open_services_refuses_a_non_loopback_kafka(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(NonLoopbackAddressError, match=r"KAFKA_BOOTSTRAP_SERVERS points at '10\.1\.2\.3'.*loopback"):
            await open_services(stack, data_dir=tmp_path, env={"KAFKA_BOOTSTRAP_SERVERS": "10.1.2.3:9092"})
    # Refused before anything started: no broker log, no postgres data dir.
    assert _entries(tmp_path) == []


async def test_open_services_refuses_a_non_loopback_postgres(tmp_path: Path) -> None:
    env = {"POSTGRES_DSN": "postgresql://u:secret@db.example.com:5432/x", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(NonLoopbackAddressError, match=r"POSTGRES_DSN points at 'db\.example\.com'") as caught:
            await open_services(stack, data_dir=tmp_path, env=env)
    assert "secret" not in str(caught.value)


async def test_open_services_uses_a_given_loopback_kafka_without_starting_one(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    port = kafka_bootstrap.rpartition(":")[2]
    env = {"KAFKA_BOOTSTRAP_SERVERS": f" 127.0.0.1:{free_loopback_port()} , localhost:{port} "}
    async with contextlib.AsyncExitStack() as stack:
        endpoints = await open_services(stack, data_dir=tmp_path, env=env, need_postgres=False)
    assert endpoints.kafka_bootstrap.endswith(f",localhost:{port}")  # the first server is down; the second answers
    assert (endpoints.kafka_embedded, endpoints.postgres_embedded, endpoints.postgres_dsn) == (False, False, "")
    assert _entries(tmp_path) == []


async def test_open_services_refuses_a_kafka_that_nobody_answers(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_loopback_port()}"}
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(RetriablePortError, match=r"no Kafka broker answered a metadata request at KAFKA_BOOT"):
            await open_services(stack, data_dir=tmp_path, env=env, need_postgres=False)


async def test_open_services_refuses_a_kafka_that_advertises_another_host(tmp_path: Path) -> None:
    """Clients connect where the cluster's metadata says; a loopback bootstrap address is not enough. The broker
    listens on loopback and advertises a documentation address (TEST-NET-1) that nothing connects to."""
    port = free_loopback_port()
    argv = [
        _broker_binary(),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://192.0.2.1:{port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    with open_output(tmp_path / "tansu.log") as output:
        process = await spawn_child(argv, output=output, env={"PATH": os.environ["PATH"]}, death_signal=signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                while not port_is_open(port):  # noqa: ASYNC110 - another process's port: no event to wait on
                    await asyncio.sleep(0.05)
            env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
            async with contextlib.AsyncExitStack() as stack:
                with pytest.raises(NonLoopbackAddressError, match=r"advertises broker \S+ at 192\.0\.2\.1:\d+"):
                    await open_services(stack, data_dir=tmp_path / "data", env=env, need_postgres=False)
        finally:
            await stop_child(process, signal.SIGTERM, 10.0, name="tansu")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("PLAINTEXT://localhost:9092", "localhost:9092"),
        ("[::1]:9092,127.0.0.1:9093", "[::1]:9092,127.0.0.1:9093"),
    ],
)
def test_check_kafka_bootstrap_accepts_loopback(value: str, expected: str) -> None:
    assert check_kafka_bootstrap(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("127.0.0.1:9092,kafka:9092", NonLoopbackAddressError),
        ("0.0.0.0:9092", NonLoopbackAddressError),
        ("127.0.0.2:9092", NonLoopbackAddressError),
        ("127.0.0.1", UsageError),
        (",", UsageError),
    ],
)
def test_check_kafka_bootstrap_refuses(value: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_kafka_bootstrap(value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@127.0.0.1:5432/db",
        "postgres://u@localhost/db",
        "postgresql://u:p@[::1]:5432/db",
        "postgresql://u:p@127.0.0.1:5432,localhost:5433/db",
    ],
)
def test_check_postgres_dsn_accepts_loopback(dsn: str) -> None:
    check_postgres_dsn(dsn)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://u:p@127.0.0.1/db?host=10.0.0.1", "'10.0.0.1'"),
        ("postgresql://u:p@127.0.0.1,db.internal/db", "'db.internal'"),
        ("postgresql:///db", "names no host"),
        ("postgresql://u:p@/db?host=/var/run/postgresql", "'/var/run/postgresql'"),
        ("host=127.0.0.1 dbname=x", "must be a postgresql:// URI"),
    ],
)
def test_check_postgres_dsn_refuses(dsn: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        check_postgres_dsn(dsn)


def test_redact_dsn_drops_only_the_password() -> None:
    assert redact_dsn("postgresql://u:s3cret@127.0.0.1:5432/db?x=1") == "postgresql://u@127.0.0.1:5432/db?x=1"
    assert redact_dsn("postgresql://u@127.0.0.1/db") == "postgresql://u@127.0.0.1/db"


# --- the session fixtures and a host that dies ---------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.postgres
async def test_session_fixtures_reach_real_servers(kafka_bootstrap: str, postgres_dsn: str) -> None:
    check_kafka_bootstrap(kafka_bootstrap)
    check_postgres_dsn(postgres_dsn)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await connection.fetchval("SELECT 41 + 1") == 42
    finally:
        await connection.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()


_HOST_SCRIPT = textwrap.dedent(
    """
    import asyncio, contextlib, json, sys
    from pathlib import Path
    from framework.adapters.services import open_services

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            endpoints = await open_services(stack, data_dir=Path(sys.argv[1]), env={})
            print(json.dumps({"kafka": endpoints.kafka_bootstrap, "postgres": endpoints.postgres_dsn}), flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_servers_die_with_a_killed_host(pg_dir: Path) -> None:
    data_dir = pg_dir.parent / "host"
    host = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOST_SCRIPT,
        str(data_dir),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert host.stdout is not None
        line = await asyncio.wait_for(host.stdout.readline(), timeout=60)
        endpoints = json.loads(line)
    finally:
        host.send_signal(signal.SIGKILL)
        await host.wait()
    kafka_port = int(endpoints["kafka"].rpartition(":")[2])
    postgres_port = urlsplit(endpoints["postgres"]).port
    assert postgres_port is not None

    for _ in range(200):  # up to 20 s: the broker takes about 2 s to stop
        if not (port_is_open(kafka_port) or port_is_open(postgres_port)):
            break
        await asyncio.sleep(0.1)
    assert not port_is_open(kafka_port), "the broker outlived its host"
    assert not port_is_open(postgres_port), "PostgreSQL outlived its host"

    # PostgreSQL got a fast shutdown, so its data dir is clean and the next host starts on it as usual.
    async with EmbeddedPostgres(data_dir / "postgres") as postgres:
        connection = await asyncpg.connect(postgres.dsn)
        await connection.close()
