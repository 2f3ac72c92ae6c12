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
    "ONEX_INSTANCE_ID": "instance_id",
}


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
    instance_id: str | None = None

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ, **flags: Any) -> Settings:
        """Defaults, overridden by environment variables, overridden by flags that are not None."""
        base = cls()
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if environ.get(var):
                values[name] = _convert(var, name, environ[var])
        for name, value in flags.items():
            if value is not None:
                values[name] = _convert(f"--{name.replace('_', '-')}", name, value)
        return replace(base, **values)


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
    if name == "instance_id":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
            raise UsageError(
                f"{source}={text!r}: expected 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit "
                "(e.g. a pod name such as stamping-0)"
            )
        return text
    return text
