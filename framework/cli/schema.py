"""``onex schema``: write the JSON Schema of the contract language, or check that the written one is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from framework.contract.schema import language_schemas
from framework.shipped import shipped_dir


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema",
        help="write the JSON Schema of the contract language",
        description="Write contract.schema.json and subcontract.schema.json (editors use them through the "
        "'# yaml-language-server: $schema=...' line of every contract).",
    )
    p.add_argument("--output", type=Path, default=None, help="directory (default: the shipped contracts/)")
    p.add_argument("--check", action="store_true", help="exit 1 if the written schema is missing or stale")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out_dir: Path = args.output or shipped_dir("contracts")
    stale = []
    for name, text in language_schemas().items():
        target = out_dir / name
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            continue
        stale.append(target)
        if not args.check:
            out_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if args.check and stale:
        for target in stale:
            print(f"{target} is stale or missing: run 'onex schema'", file=sys.stderr)
        return 1
    if not stale:
        print(f"schema in {out_dir} is up to date")
    return 0
