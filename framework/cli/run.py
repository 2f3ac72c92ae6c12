"""``onex run CONTRACT``: host one node in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from framework.cli.hostflags import add_host_flags, load_contracts, settings_from
from framework.shipped import shipped_dir


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="host one node", description="Validate a contract, then host its node until Ctrl-C."
    )
    p.add_argument("contract", type=Path, help="the node's contract YAML")
    add_host_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from framework.runtime.serve import run as serve  # noqa: PLC0415 - the runtime is heavy; validate starts fast

    return serve(load_contracts([args.contract]), settings_from(args))


def main_for(node: str, argv: list[str] | None = None) -> int:
    """``python -m nodes.<node>``: host the shipped node with the same flags as ``onex run``."""
    from framework.cli.main import main  # noqa: PLC0415 - main imports this module

    return main(["run", str(shipped_dir("contracts") / f"{node}.yaml"), *(sys.argv[1:] if argv is None else argv)])
