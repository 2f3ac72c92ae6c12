"""``onex run CONTRACT``: host one node in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from framework.cli.hostflags import add_host_flags, load_contracts, settings_from
from framework.runtime.serve import run as serve


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="host one node", description="Validate a contract, then host its node until Ctrl-C."
    )
    p.add_argument("contract", type=Path, help="the node's contract YAML")
    add_host_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return serve(load_contracts([args.contract]), settings_from(args))
