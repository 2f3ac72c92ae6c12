"""``onex test [PATH...]``: run the ``tests:`` blocks of contracts, effects recorded instead of executed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from framework.shipped import shipped_dir


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "test",
        help="run the tests: blocks of contracts",
        description="Run every test case of the contracts' 'tests:' blocks against their nodes, in process, on an "
        "in-memory bus with effects recorded instead of executed. Each failure names the line of its case and "
        "shows a diff of expected and actual. Exit codes: 0 all passed, 1 failures, 2 usage.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="contract files or directories (default: the shipped contracts)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from framework.runtime.testing import run_paths  # noqa: PLC0415 - the runtime is heavy; --help starts fast

    results = run_paths(args.paths or [shipped_dir("contracts")])
    failed = [r for r in results if not r.passed]
    for result in results:
        if not result.passed or not args.quiet:
            print(result.format())
    print(
        f"{len(results)} test case{'s' if len(results) != 1 else ''}: {len(results) - len(failed)} passed, "
        f"{len(failed)} failed"
    )
    return 1 if failed else 0
