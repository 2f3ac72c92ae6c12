"""Host settings: environment variables, with command-line flags to match. Errors name the variable and the
allowed values."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from framework.errors import UsageError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BUSES = ("kafka", "memory")
#: Seconds between runs of the host's database maintenance when ONEX_PARTITION_MAINTENANCE_S is 0 and only the event
#: log retention is on.
RETENTION_ONLY_MAINTENANCE_S = 6 * 3600.0
#: The longest event log retention accepted, 100 years (a longer one is what 0, keep every row, is for).
MAX_EVENT_LOG_RETENTION_S = 100 * 365.25 * 24 * 3600.0

#: Environment variable → setting: the one list that from_env, the CLI flags and the docs share.
ENV_VARS: Mapping[str, str] = {
    "SERVICE_PORT": "service_port",
    "ONEX_ENV": "env",
    "LOG_LEVEL": "log_level",
    "ONEX_DATA_DIR": "data_dir",
    "POSTGRES_DSN": "postgres_dsn",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "ONEX_BUS": "bus",
    "ONEX_DRAIN_TIMEOUT_S": "drain_timeout_s",
    "ONEX_HEARTBEAT_S": "heartbeat_interval_s",
    "ONEX_WORKFLOW_LEASE_S": "workflow_lease_s",
    "ONEX_DB_POOL_MIN": "db_pool_min",
    "ONEX_DB_POOL_MAX": "db_pool_max",
    "ONEX_PARTITION_MAINTENANCE_S": "partition_maintenance_s",
    "ONEX_EVENT_LOG_RETENTION_S": "event_log_retention_s",
    "ONEX_INSTANCE_ID": "instance_id",
    "ONEX_EVENT_LOG": "event_log",
}


#: Settings whose command-line flag is not ``--`` + the setting's name with dashes.
FLAG_NAMES: Mapping[str, str] = {"service_port": "--port"}


def flag_of(name: str) -> str:
    """The command-line flag of setting ``name``."""
    return FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")


@dataclass(frozen=True)
class Settings:
    service_port: int = 8053
    env: str = "dev"
    log_level: str = "INFO"
    data_dir: Path = field(default_factory=lambda: Path(".onex"))
    postgres_dsn: str | None = None
    kafka_bootstrap_servers: str | None = None
    bus: Literal["kafka", "memory"] = "kafka"
    drain_timeout_s: float = 30.0
    heartbeat_interval_s: float = 30.0
    workflow_lease_s: float = 30.0
    #: PostgreSQL pool of the host's store: connections opened on start, and the most it opens.
    db_pool_min: int = 10
    db_pool_max: int = 50
    #: Seconds between runs of the host's database maintenance, which creates the coming months' hash_metrics
    #: partitions (never drops any) and applies the event log retention (0: no partitions are created; the
    #: retention, if on, then runs every RETENTION_ONLY_MAINTENANCE_S).
    partition_maintenance_s: float = 6 * 3600.0
    #: Seconds an event_logs row is kept: the database maintenance deletes older ones (0: keep every row).
    event_log_retention_s: float = 7 * 24 * 3600.0
    instance_id: str | None = None
    #: Write the event log (event_logs: every event consumed and published), when the host has a database.
    event_log: bool = True

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ, **flags: Any) -> Settings:
        """Defaults, overridden by environment variables, overridden by flags that are not None."""
        base = cls()
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for var, name in ENV_VARS.items():
            if environ.get(var):
                values[name] = _convert(var, name, environ[var])
                sources[name] = f"{var}={environ[var].strip()}"
        for name, value in flags.items():
            if value is not None:
                flag = flag_of(name)
                values[name] = _convert(flag, name, value)
                sources[name] = f"{flag}={str(value).strip()}"
        low, high = values.get("db_pool_min", base.db_pool_min), values.get("db_pool_max", base.db_pool_max)
        if high < low:
            raise UsageError(
                f"{sources.get('db_pool_max', f'ONEX_DB_POOL_MAX={high} (the default)')} is below "
                f"{sources.get('db_pool_min', f'ONEX_DB_POOL_MIN={low} (the default)')}: the pool's maximum must be "
                "at least its minimum; set both (e.g. ONEX_DB_POOL_MIN=2 ONEX_DB_POOL_MAX=10)"
            )
        return replace(base, **values)

    def __post_init__(self) -> None:
        # Settings built in code rather than by load() get the same checks on the pool.
        if type(self.db_pool_min) is not int or self.db_pool_min < 1:
            raise UsageError(f"db_pool_min must be an integer >= 1, got {self.db_pool_min!r}")
        if type(self.db_pool_max) is not int or self.db_pool_max < self.db_pool_min:
            raise UsageError(
                f"db_pool_max must be an integer >= db_pool_min ({self.db_pool_min}), got {self.db_pool_max!r}"
            )
        if not 0 <= self.partition_maintenance_s < float("inf"):
            raise UsageError(
                f"partition_maintenance_s must be >= 0 seconds (0 disables it), got {self.partition_maintenance_s!r}"
            )
        if not 0 <= self.event_log_retention_s <= MAX_EVENT_LOG_RETENTION_S:
            raise UsageError(
                f"event_log_retention_s must be from 0 to {MAX_EVENT_LOG_RETENTION_S:.0f} seconds (0 keeps every row), "
                f"got {self.event_log_retention_s!r}"
            )


def _convert(source: str, name: str, value: Any) -> Any:
    text = str(value).strip()
    if name == "service_port":
        if not text.isdigit() or not 0 <= int(text) <= 65535:
            raise UsageError(f"{source}={text!r}: expected a port number from 0 to 65535 (0 picks a free port)")
        return int(text)
    if name in ("drain_timeout_s", "heartbeat_interval_s", "workflow_lease_s"):
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if seconds <= 0:
            raise UsageError(f"{source}={text!r}: expected a positive number of seconds")
        return seconds
    if name in ("db_pool_min", "db_pool_max"):
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise UsageError(f"{source}={text!r}: expected a whole number of connections >= 1")
        return int(text)
    if name == "partition_maintenance_s":
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < float("inf"):
            raise UsageError(
                f"{source}={text!r}: expected a number of seconds >= 0 (0 turns the partition maintenance off)"
            )
        return seconds
    if name == "event_log_retention_s":
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_EVENT_LOG_RETENTION_S:
            raise UsageError(
                f"{source}={text!r}: expected a number of seconds from 0 to {MAX_EVENT_LOG_RETENTION_S:.0f} "
                "(100 years; 0 keeps every event log row)"
            )
        return seconds
    if name == "log_level":
        if text.upper() not in LOG_LEVELS:
            raise UsageError(f"{source}={text!r}: expected one of {', '.join(LOG_LEVELS)}")
        return text.upper()
    if name == "env":
        if not re.fullmatch(r"[a-z][a-z0-9_]*", text):
            raise UsageError(
                f"{source}={text!r}: expected a lowercase name such as dev, staging or prod "
                "(it is the first part of every topic name)"
            )
        return text
    if name == "bus":
        if text not in BUSES:
            raise UsageError(f"{source}={text!r}: expected one of {', '.join(BUSES)}")
        return text
    if name == "data_dir":
        return Path(text)
    if name == "event_log":
        if isinstance(value, bool):
            return value
        if text.lower() not in ("on", "off"):
            raise UsageError(f"{source}={text!r}: expected on or off")
        return text.lower() == "on"
    if name == "instance_id":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
            raise UsageError(
                f"{source}={text!r}: expected 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit "
                "(e.g. a pod name such as stamping-0)"
            )
        return text
    return text
