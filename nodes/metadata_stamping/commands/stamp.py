"""``onex stamp PATH... [--namespace N] [--rich] [--dry-run]``: stamp files in place, as the service stamps content."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from framework.cli.progress import Progress
from framework.errors import UsageError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "stamp",
        help="stamp files with their BLAKE3 hash",
        description="Put an ONEX stamp at the top of each text file (directories are walked): the BLAKE3 hash of "
        "the content without stamps, so stamping again changes only the timestamp. Binary files are hashed, never "
        "modified. Exit code 1 when a file could not be stamped.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    p.add_argument("--namespace", default="omninode.services.metadata", help="namespace of the stamps")
    p.add_argument("--rich", action="store_true", help="a rich metadata block instead of one line")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    from nodes.metadata_stamping.files import iter_files, stamp_file  # noqa: PLC0415 - loaded only when the command runs
    from nodes.metadata_stamping.filetypes import FileTypes  # noqa: PLC0415 - loaded only when the command runs
    from nodes.metadata_stamping.requests import BadRequest, check_namespace  # noqa: PLC0415 - loaded only when the command runs

    try:
        check_namespace(args.namespace)
    except BadRequest as exc:
        raise UsageError(str(exc)) from None
    files = list(iter_files(args.paths))
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(map(str, missing))}")
    types = FileTypes()
    progress = Progress(len(files), "stamping")
    counts: Counter[str] = Counter()
    for path in files:
        result = stamp_file(path, namespace=args.namespace, rich=args.rich, dry_run=args.dry_run, types=types)
        progress.step(str(path))
        counts[result.outcome] += 1
        if result.outcome in ("stamped", "would-stamp", "error"):
            progress.close()
            extra = f" ({result.detail})" if result.detail else ""
            print(f"{result.outcome}: {path}{extra}", file=sys.stderr if result.outcome == "error" else sys.stdout)
    progress.close()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no files"
    noun = "file" if len(files) == 1 else "files"
    print(f"{len(files)} {noun}: {summary}" + (" (dry run: nothing written)" if args.dry_run else ""))
    return 1 if counts["error"] else 0
