"""``onex new NAME --kind KIND``: scaffold a node — its contract, handler package, generated code and a test —
that validates, generates cleanly, passes its test and runs, straight away."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from framework.contract.validate import load_contract
from framework.errors import UsageError
from generators import node_module, scaffold


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "new",
        help="scaffold a new node",
        description="Write contracts/NAME.yaml, nodes/NAME/ (handler, __main__, generated code) and "
        "tests/nodes/test_NAME.py under --dir. Then: onex validate contracts/NAME.yaml, onex test "
        "contracts/NAME.yaml, onex run contracts/NAME.yaml.",
    )
    p.add_argument("name", help="the node's name, snake_case (e.g. order_pricer)")
    p.add_argument("--kind", required=True, type=str.upper, choices=scaffold.KINDS, help="the node's kind")
    p.add_argument("--dir", type=Path, default=Path("."), help="project root to write into (default: .)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name: str = args.name
    root: Path = args.dir
    problem = scaffold.name_problem(name)
    if problem:
        raise UsageError(problem)
    taken = [p for p in scaffold.files(name) if (root / p).exists()]
    if taken:
        raise UsageError(f"node name {name!r} is taken: {', '.join(str(root / p) for p in taken)} already exist(s)")
    texts = scaffold.render(name, args.kind)
    for rel, text in texts.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    # nodes/ stays a namespace package (no __init__.py), so a project's nodes and the shipped ones can both import.
    for package in ("tests", "tests/nodes"):
        init = root / package / "__init__.py"
        if not init.exists():
            init.write_text("", encoding="utf-8")
            print(f"wrote {init}")
    contract_path = root / f"contracts/{name}.yaml"
    contract = load_contract(contract_path)
    sha = hashlib.sha256(contract_path.read_bytes()).hexdigest()
    for rel, text in node_module.render(contract, source=f"contracts/{name}.yaml", sha256=sha).items():
        (root / rel).write_text(text, encoding="utf-8")
        print(f"wrote {root / rel}")
    print(
        f"next: onex validate contracts/{name}.yaml && onex test contracts/{name}.yaml && "
        f"onex run contracts/{name}.yaml --bus memory"
    )
    return 0
