"""``onex verify PATH...``: check the ONEX stamps of files; exit code 1 when any is tampered, missing or unreadable."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from framework.cli.progress import Progress
from framework.errors import UsageError

FAILURES = ("tampered", "missing", "error")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="check the stamps of files",
        description="Re-hash each text file without its stamps and check every stamp: valid, tampered or missing "
        "(directories are walked). Binary files carry no stamp and are reported, not failed. Exit code 1 when any "
        "file is tampered, missing its stamp or unreadable.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    p.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nodes.metadata_stamping.files import iter_files, verify_file  # noqa: PLC0415 - loaded only when the command runs
    from nodes.metadata_stamping.filetypes import FileTypes  # noqa: PLC0415 - loaded only when the command runs

    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(map(str, missing))}")
    files = list(iter_files(args.paths))
    types = FileTypes()
    progress = Progress(len(files), "verifying")
    counts: Counter[str] = Counter()
    for path in files:
        result = verify_file(path, types=types)
        progress.step(str(path))
        counts[result.outcome] += 1
        failed = result.outcome in FAILURES
        if failed or not args.quiet:
            progress.close()
            extra = f" ({result.detail})" if result.detail else ""
            print(f"{result.outcome}: {path}{extra}", file=sys.stderr if failed else sys.stdout)
    progress.close()
    bad = sum(counts[k] for k in FAILURES)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no files"
    noun = "file" if len(files) == 1 else "files"
    print(f"{len(files)} {noun}: {summary}; {'FAILED' if bad else 'OK'}")
    return 1 if bad else 0
