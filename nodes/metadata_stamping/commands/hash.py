"""``onex hash PATH...``: BLAKE3 digests in ``b3sum``'s output format, so ``b3sum --check`` accepts the output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from framework.adapters.hashing import hash_file, hash_stream


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "hash",
        help="print BLAKE3 digests (b3sum format)",
        description="Print '<hex>  <path>' for each file, as b3sum does (directories are walked; '-' is stdin). "
        "Exit code 1 when a file cannot be read.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories, or - for standard input")
    p.set_defaults(run=run)


def b3sum_line(digest: str, name: str) -> str:
    """b3sum escapes a name holding a backslash or a newline, and marks the line with a leading backslash."""
    if "\\" in name or "\n" in name:
        return "\\" + digest + "  " + name.replace("\\", "\\\\").replace("\n", "\\n")
    return f"{digest}  {name}"


def run(args: argparse.Namespace) -> int:
    from nodes.metadata_stamping.files import iter_files  # noqa: PLC0415 - loaded only when the command runs

    failed = 0
    for arg in args.paths:
        if arg == "-":
            print(b3sum_line(hash_stream(sys.stdin.buffer), "-"))
            continue
        for path in iter_files([Path(arg)]):
            try:
                digest = hash_file(path)
            except OSError as exc:
                print(f"onex hash: {path}: {exc.strerror or exc}", file=sys.stderr)
                failed += 1
                continue
            print(b3sum_line(digest, str(path)))
    return 1 if failed else 0
