"""``onex graph CONTRACT|DIR``: a contract's FSM, or the topology of a directory of contracts, as Mermaid or DOT
text; SVG or PNG through Graphviz when it is installed."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from framework.contract.validate import validate_paths
from framework.errors import ContractError, OnexError, UsageError
from generators import graph

IMAGE_FORMATS = {".svg": "svg", ".png": "png"}


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "graph",
        help="draw a contract's FSM or a directory's topology",
        description="For a contract file: its FSM (or, without one, the events it consumes and publishes). For a "
        "directory: which node publishes and which consumes each event. Text goes to stdout or --output; an "
        "--output ending in .svg or .png is drawn with Graphviz's dot (apt-get install graphviz).",
    )
    p.add_argument("path", type=Path, metavar="CONTRACT|DIR")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="text format (default mermaid)")
    p.add_argument("--output", type=Path, default=None, help="write here instead of stdout (.svg/.png: an image)")
    p.set_defaults(run=run)


def render(path: Path, fmt: str) -> str:
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    report = validate_paths([path], import_implementation=False, cross_check=False)
    errors = [f for f in report.findings if f.level.name == "ERROR"]
    if errors:
        raise ContractError("\n".join(f.format() for f in errors) + "\nfix the contracts first")
    contracts = [c for _, c in report.contracts]
    if not contracts:
        raise UsageError(f"{path}: no contract found")
    if path.is_file() and contracts[0].subcontracts.fsm is not None:
        fsm = contracts[0].subcontracts.fsm
        return graph.fsm_dot(fsm) if fmt == "dot" else graph.fsm_mermaid(fsm)
    return graph.topology_dot(contracts) if fmt == "dot" else graph.topology_mermaid(contracts)


def run(args: argparse.Namespace) -> int:
    output: Path | None = args.output
    image = IMAGE_FORMATS.get(output.suffix.lower()) if output is not None else None
    if image is not None:
        dot = shutil.which("dot")
        if dot is None:
            raise OnexError(
                f"drawing {output} needs Graphviz's 'dot', which is not installed: install it "
                "(apt-get install graphviz, brew install graphviz), or write text with --format dot/mermaid"
            )
        text = render(args.path, "dot")
        done = subprocess.run(
            [dot, f"-T{image}", "-o", str(output)], input=text, text=True, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise OnexError(f"dot failed ({done.returncode}): {done.stderr.strip()}")
        print(f"wrote {output}")
        return 0
    text = render(args.path, args.format)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    return 0
