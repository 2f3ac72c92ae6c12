"""The flags that ``onex run`` and ``onex up`` share; each matches an environment variable of the settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from framework.contract.spec import Contract
from framework.contract.validate import validate_paths
from framework.errors import ContractError
from framework.runtime.config import BUSES, LOG_LEVELS, Settings, flag_of

#: Each host flag: the setting it sets (its name is derived, ``flag_of``) and its argparse options.
HOST_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("service_port", {"help": "HTTP port of the host (SERVICE_PORT, default 8053; 0 = any)"}),
    ("env", {"help": "environment, the first part of topic names (ONEX_ENV, default dev)"}),
    ("log_level", {"choices": LOG_LEVELS, "type": str.upper, "help": "LOG_LEVEL (default INFO)"}),
    ("data_dir", {"help": "where embedded servers keep data and endpoints.json (ONEX_DATA_DIR, .onex)"}),
    ("postgres_dsn", {"help": "external PostgreSQL (POSTGRES_DSN); default: embedded"}),
    ("kafka_bootstrap_servers", {"help": "external Kafka (KAFKA_BOOTSTRAP_SERVERS); default: embedded"}),
    ("bus", {"choices": BUSES, "help": "event bus (ONEX_BUS, default kafka)"}),
    (
        "event_log",
        {
            "choices": ("on", "off"),
            "type": str.lower,
            "help": "write event_logs (every event consumed and published) when the host has a database "
            "(ONEX_EVENT_LOG, default on)",
        },
    ),
    ("db_pool_min", {"metavar": "N", "help": "PostgreSQL connections opened on start (ONEX_DB_POOL_MIN, default 10)"}),
    ("db_pool_max", {"metavar": "N", "help": "most PostgreSQL connections to open (ONEX_DB_POOL_MAX, default 50)"}),
)


def add_host_flags(p: argparse.ArgumentParser) -> None:
    for setting, options in HOST_FLAGS:
        p.add_argument(flag_of(setting), dest=setting, **options)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.load(**{setting: getattr(args, setting) for setting, _ in HOST_FLAGS})


def load_contracts(paths: list[Path]) -> list[Contract]:
    """Validate, print any findings, and return the contracts; errors stop here, before anything starts."""
    report = validate_paths(paths, import_implementation=True, cross_check=len(paths) > 0)
    for finding in report.findings:
        print(finding.format(), file=sys.stderr)
    if report.errors:
        raise ContractError(
            f"{report.errors} error{'s' if report.errors != 1 else ''} in the contracts: "
            "fix them first (onex validate shows the same findings)"
        )
    contracts = [c for _, c in report.contracts]
    if not contracts:
        raise ContractError(f"no contract found in {', '.join(map(str, paths))}")
    return contracts
