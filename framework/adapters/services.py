"""Where Kafka and PostgreSQL are: external servers named in the environment, or embedded ones started here.

``KAFKA_BOOTSTRAP_SERVERS`` and ``POSTGRES_DSN`` point at external servers; when one is unset (or empty) the
embedded server is started and its stop is pushed onto the caller's ``AsyncExitStack``. Machines running this
project may only talk to loopback, so an external address other than 127.0.0.1, localhost or ::1 is refused, and
so is a Kafka cluster that advertises brokers elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiokafka.errors import KafkaError

from framework.adapters.embedded_kafka import EmbeddedKafka
from framework.adapters.embedded_postgres import EmbeddedPostgres
from framework.errors import RetriablePortError, UsageError

logger = logging.getLogger(__name__)

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
POSTGRES_ENV = "POSTGRES_DSN"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Subdirectories of ``data_dir`` used by the embedded servers.
POSTGRES_SUBDIR = "postgres"
KAFKA_LOG = "kafka.log"


class NonLoopbackAddressError(UsageError):
    """An external service address names a host other than loopback."""


@dataclass(frozen=True)
class ServiceEndpoints:
    """How to reach the services; empty strings for the ones that were not asked for."""

    kafka_bootstrap: str
    postgres_dsn: str
    kafka_embedded: bool
    postgres_embedded: bool


async def open_services(
    stack: contextlib.AsyncExitStack,
    *,
    data_dir: Path,
    env: Mapping[str, str] = os.environ,
    need_kafka: bool = True,
    need_postgres: bool = True,
) -> ServiceEndpoints:
    """Resolve (and start, if embedded) the services asked for; the embedded ones stop when ``stack`` closes.

    Both addresses are checked before anything starts, so a bad one costs no server start-up.
    """
    external_kafka = _setting(env, KAFKA_ENV) if need_kafka else None
    external_postgres = _setting(env, POSTGRES_ENV) if need_postgres else None
    if external_kafka is not None:
        external_kafka = check_kafka_bootstrap(external_kafka)
    if external_postgres is not None:
        check_postgres_dsn(external_postgres)

    kafka_bootstrap = ""
    if need_kafka:
        if external_kafka is not None:
            await check_kafka_advertised(external_kafka)
            kafka_bootstrap = external_kafka
            logger.info("using external kafka", extra={"bootstrap_servers": kafka_bootstrap})
        else:
            kafka = EmbeddedKafka(log_path=Path(data_dir) / KAFKA_LOG)
            await kafka.start()
            stack.push_async_callback(kafka.stop)
            kafka_bootstrap = kafka.bootstrap_servers

    postgres_dsn = ""
    if need_postgres:
        if external_postgres is not None:
            postgres_dsn = external_postgres
            logger.info("using external postgres", extra={"dsn": redact_dsn(postgres_dsn)})
        else:
            postgres = EmbeddedPostgres(Path(data_dir) / POSTGRES_SUBDIR)
            await postgres.start()
            stack.push_async_callback(postgres.stop)
            postgres_dsn = postgres.dsn

    return ServiceEndpoints(
        kafka_bootstrap=kafka_bootstrap,
        postgres_dsn=postgres_dsn,
        kafka_embedded=need_kafka and external_kafka is None,
        postgres_embedded=need_postgres and external_postgres is None,
    )


def _setting(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def check_kafka_bootstrap(value: str) -> str:
    """Validate a comma-separated ``host:port`` list; return it normalised (no spaces). Loopback hosts only."""
    servers: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        # Some tools write listener URLs (PLAINTEXT://host:port); aiokafka wants host:port.
        address = entry.split("://", 1)[1] if "://" in entry else entry
        host, port = _split_host_port(address)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{KAFKA_ENV} entry {entry!r} has no valid port; expected host:port, e.g. 127.0.0.1:9092")
        _require_loopback(KAFKA_ENV, host, entry)
        servers.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not servers:
        raise UsageError(f"{KAFKA_ENV}={value!r} names no server; expected host:port, e.g. 127.0.0.1:9092")
    return ",".join(servers)


async def check_kafka_advertised(bootstrap: str, *, timeout_s: float = 10.0) -> None:
    """Refuse a cluster that advertises a broker other than loopback.

    Kafka clients connect to the brokers a cluster advertises, not to the bootstrap address: a broker reached on
    loopback may still send every later connection elsewhere. So one connection to a bootstrap server (nothing
    else) asks for the cluster's metadata first, and every advertised broker must be loopback too.
    """
    from aiokafka.cluster import ClusterMetadata  # noqa: PLC0415 - keep importing this module cheap
    from aiokafka.conn import create_conn  # noqa: PLC0415
    from aiokafka.protocol.metadata import MetadataRequest  # noqa: PLC0415

    errors: list[str] = []
    for server in bootstrap.split(","):
        host, port = _split_host_port(server)
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000)), timeout_s
            )
        except (OSError, TimeoutError, KafkaError) as exc:
            errors.append(f"{server}: {exc!r}")
            continue
        try:
            metadata = await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
        except (OSError, TimeoutError, KafkaError) as exc:
            errors.append(f"{server}: {exc!r}")
            continue
        finally:
            conn.close()
        cluster = ClusterMetadata()
        cluster.update_metadata(metadata)
        for broker in cluster.brokers():
            if str(broker.host).lower() not in LOOPBACK_HOSTS:
                raise NonLoopbackAddressError(
                    f"{KAFKA_ENV}={bootstrap!r} reaches a cluster that advertises broker {broker.nodeId} at "
                    f"{broker.host}:{broker.port}; clients would connect there, and this project only talks to "
                    f"loopback ({', '.join(sorted(LOOPBACK_HOSTS))}): set the broker's advertised listener to "
                    "127.0.0.1, or unset the variable to use the embedded broker"
                )
        return
    raise RetriablePortError(
        f"no Kafka broker answered a metadata request at {KAFKA_ENV}={bootstrap!r}: {'; '.join(errors)}"
    )


def check_postgres_dsn(dsn: str) -> None:
    """Validate a ``postgresql://`` URI whose every host (in the authority or a ``host=`` parameter) is loopback."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UsageError(
            f"{POSTGRES_ENV} must be a postgresql:// URI, e.g. postgresql://user:password@127.0.0.1:5432/db; "
            f"got {redact_dsn(dsn)!r}"
        )
    netloc = parts.netloc.rpartition("@")[2]
    hosts = [_split_host_port(item)[0] for item in netloc.split(",") if item]
    query = parse_qs(parts.query)
    for key in ("host", "hostaddr"):
        for value in query.get(key, []):
            hosts += [item.strip() for item in value.split(",") if item.strip()]
    if not hosts:
        # libpq would fall back to PGHOST or a Unix socket: neither is checked here, so neither is allowed.
        raise NonLoopbackAddressError(
            f"{POSTGRES_ENV}={redact_dsn(dsn)!r} names no host; write it explicitly, one of "
            f"{', '.join(sorted(LOOPBACK_HOSTS))}"
        )
    for host in hosts:
        _require_loopback(POSTGRES_ENV, host, redact_dsn(dsn))


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password, if any, left out: safe for logs and messages."""
    parts = urlsplit(dsn)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    netloc = f"{userinfo.split(':', 1)[0]}@{hostinfo}"
    return parts._replace(netloc=netloc).geturl()


def _split_host_port(address: str) -> tuple[str, str]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest.removeprefix(":")
    if address.count(":") > 1:  # a bare IPv6 address, no port
        return address, ""
    host, _, port = address.partition(":")
    return host, port


def _require_loopback(variable: str, host: str, shown: str) -> None:
    if host.lower() not in LOOPBACK_HOSTS:
        raise NonLoopbackAddressError(
            f"{variable} points at {host or '(no host)'!r} in {shown!r}: this project only talks to loopback, so "
            f"the host must be one of {', '.join(sorted(LOOPBACK_HOSTS))}; unset {variable} to use the embedded "
            "server"
        )
