"""``onex generate [CONTRACT...]``: write each contract's generated code; ``--check`` diffs instead and fails when
anything is stale (CI runs it)."""

from __future__ import annotations

import argparse
import difflib
import hashlib
import sys
from pathlib import Path
from typing import Any

from framework.contract.spec import Contract
from framework.contract.validate import validate_paths
from framework.errors import ContractError
from framework.shipped import shipped_dir
from generators import node_module


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="generate typed code from contracts",
        description="Render nodes/<name>/_generated.py (models, typed effects, handler base) from each contract. "
        "Paths are relative to the project root: the parent of the contract's 'contracts/' directory, else "
        "--root, else the working directory. Hand-written files are never touched.",
    )
    p.add_argument(
        "contracts",
        nargs="*",
        type=Path,
        metavar="CONTRACT",
        help="contract files or directories (default: the shipped contracts)",
    )
    p.add_argument("--check", action="store_true", help="write nothing; print a diff and exit 1 if anything is stale")
    p.add_argument("--root", type=Path, default=None, help="project root the generated paths are relative to")
    p.set_defaults(run=run)


def project_root(contract_path: Path, root: Path | None) -> Path:
    if root is not None:
        return root
    parent = contract_path.resolve().parent
    if parent.name == "contracts":
        return parent.parent
    return Path.cwd()


def rendered(path: Path, contract: Contract, root: Path) -> dict[Path, str]:
    """What the generators make of one contract, as absolute paths → text."""
    source = path.as_posix()
    for base in (root, Path.cwd()):
        try:
            source = path.resolve().relative_to(base.resolve()).as_posix()
            break
        except ValueError:
            continue
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return {root / rel: text for rel, text in node_module.render(contract, source=source, sha256=sha).items()}


def load(paths: list[Path]) -> list[tuple[Path, Contract]]:
    report = validate_paths(paths, import_implementation=False, cross_check=False)
    errors = [f for f in report.findings if f.level.name == "ERROR"]
    for finding in errors:
        print(finding.format(), file=sys.stderr)
    if errors:
        raise ContractError(f"{len(errors)} error(s) in the contracts: fix them first (onex validate shows them)")
    return [(Path(doc.path), contract) for doc, contract in report.contracts]


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = args.contracts or [shipped_dir("contracts")]
    contracts = load(paths)
    if not contracts:
        raise ContractError(f"no contract found in {', '.join(map(str, paths))}")
    stale = 0
    for path, contract in contracts:
        for target, text in rendered(path, contract, project_root(path, args.root)).items():
            current = target.read_text(encoding="utf-8") if target.is_file() else None
            if current == text:
                continue
            stale += 1
            if args.check:
                diff = difflib.unified_diff(
                    (current or "").splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{target} (on disk)" if current is not None else f"{target} (missing)",
                    tofile=f"{target} (from {path})",
                )
                sys.stdout.writelines(diff)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                print(f"wrote {target}")
    if args.check and stale:
        print(f"{stale} generated file(s) stale or missing: run 'onex generate'", file=sys.stderr)
        return 1
    if not stale:
        print(f"generated code of {len(contracts)} contract(s) is up to date")
    return 0
