"""``onex up [DIR]``: host every contract of a directory (default: the shipped bridge) in one process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from framework.cli.hostflags import add_host_flags, load_contracts, settings_from
from framework.shipped import shipped_dir


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "up",
        help="host every node of a directory",
        description="Validate every contract of DIR (default: the shipped bridge nodes), then host them all in "
        "one process on embedded PostgreSQL and Kafka (or external ones, see --postgres-dsn and "
        "--kafka-bootstrap-servers) until Ctrl-C.",
    )
    p.add_argument("directory", type=Path, nargs="?", help="directory of contracts (default: the shipped ones)")
    add_host_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from framework.runtime.serve import run as serve  # noqa: PLC0415 - the runtime is heavy; validate starts fast

    return serve(load_contracts([args.directory or shipped_dir("contracts")]), settings_from(args))
