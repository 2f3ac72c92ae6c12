"""The flags that ``onex run`` and ``onex up`` share; each matches an environment variable of the settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework.contract.spec import Contract
from framework.contract.validate import validate_paths
from framework.errors import ContractError
from framework.runtime.config import BUSES, LOG_LEVELS, Settings, flag_of


def add_host_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        flag_of("service_port"), dest="service_port", help="HTTP port of the host (SERVICE_PORT, default 8053; 0 = any)"
    )
    p.add_argument("--env", help="environment, the first part of topic names (ONEX_ENV, default dev)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, help="LOG_LEVEL (default INFO)")
    p.add_argument("--data-dir", help="where embedded servers keep data and endpoints.json (ONEX_DATA_DIR, .onex)")
    p.add_argument("--postgres-dsn", help="external PostgreSQL (POSTGRES_DSN); default: embedded")
    p.add_argument("--kafka-bootstrap-servers", help="external Kafka (KAFKA_BOOTSTRAP_SERVERS); default: embedded")
    p.add_argument("--bus", choices=BUSES, help="event bus (ONEX_BUS, default kafka)")
    p.add_argument(
        "--event-log",
        choices=("on", "off"),
        type=str.lower,
        help="write event_logs (every event consumed and published) when the host has a database "
        "(ONEX_EVENT_LOG, default on)",
    )
    p.add_argument(
        "--db-pool-min", metavar="N", help="PostgreSQL connections opened on start (ONEX_DB_POOL_MIN, default 10)"
    )
    p.add_argument(
        "--db-pool-max", metavar="N", help="most PostgreSQL connections to open (ONEX_DB_POOL_MAX, default 50)"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.load(
        service_port=args.service_port,
        env=args.env,
        log_level=args.log_level,
        data_dir=args.data_dir,
        postgres_dsn=args.postgres_dsn,
        kafka_bootstrap_servers=args.kafka_bootstrap_servers,
        bus=args.bus,
        event_log=args.event_log,
        db_pool_min=args.db_pool_min,
        db_pool_max=args.db_pool_max,
    )


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
