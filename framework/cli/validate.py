"""``onex validate PATH...``: schema errors and semantic lint of contracts and subcontracts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from framework.contract.validate import validate_paths
from framework.shipped import shipped_dir


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check contracts and subcontracts",
        description="Check contract and subcontract YAML files (directories are searched recursively for .yaml and "
        ".yml files, skipping hidden folders and not following symbolic links to directories). Prints one finding "
        "per line as 'path:line:col: LEVEL CODE message'; a path that is missing, not a regular file, or a "
        "directory without any YAML file is a finding too. Exit codes: 0 clean (warnings allowed unless --strict), "
        "1 errors, 2 usage, 3 internal error (a bug in onex, please report it). Codes are explained in "
        "docs/validation-codes.md.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or directories (default: the shipped contracts and subcontracts)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument(
        "--no-import",
        dest="import_implementation",
        action="store_false",
        help="do not import implementation modules (skips the I00x checks)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths or [shipped_dir("contracts"), shipped_dir("subcontracts")]
    report = validate_paths(paths, import_implementation=args.import_implementation)
    failed = report.errors > 0 or (args.strict and report.warnings > 0)
    if args.format == "json":
        json.dump(
            {
                "files": report.files,
                "errors": report.errors,
                "warnings": report.warnings,
                "findings": [f.as_dict() for f in report.findings],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        for finding in report.findings:
            print(finding.format())
        print(
            f"{report.files} file{'s' if report.files != 1 else ''} checked: "
            f"{report.errors} error{'s' if report.errors != 1 else ''}, "
            f"{report.warnings} warning{'s' if report.warnings != 1 else ''}"
        )
    return 1 if failed else 0
