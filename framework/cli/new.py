"""``onex new NAME --kind KIND``: scaffold a node — its contract, handler package, generated code and a test —
that validates, generates cleanly, passes its test and runs, straight away."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import tempfile
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
    for written in create(name, args.kind, root):
        print(f"wrote {written}")
    print(
        f"next: onex validate contracts/{name}.yaml && onex test contracts/{name}.yaml && "
        f"onex run contracts/{name}.yaml --bus memory"
    )
    return 0


def render_all(name: str, kind: str, staging: Path) -> dict[str, str]:
    """Every file of the scaffold, the generated module included, rendered in ``staging`` (a directory of its own,
    laid out like the project root): ``{relative path: text}``."""
    texts = scaffold.render(name, kind)
    # nodes/ stays a namespace package (no __init__.py), so a project's nodes and the shipped ones can both import.
    texts.setdefault("tests/__init__.py", "")
    texts.setdefault("tests/nodes/__init__.py", "")
    for rel, text in texts.items():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    contract_path = staging / f"contracts/{name}.yaml"
    contract = load_contract(contract_path)
    sha = hashlib.sha256(contract_path.read_bytes()).hexdigest()
    generated = node_module.render(contract, source=f"contracts/{name}.yaml", sha256=sha)
    for rel, text in generated.items():
        (staging / rel).write_text(text, encoding="utf-8")
    return {**texts, **generated}


def create(name: str, kind: str, root: Path) -> list[Path]:
    """Scaffold node ``name`` under ``root``, all or nothing: every file is rendered into a staging directory
    first (under ``root``, so that moving is a rename), then moved into place; when anything fails, what was
    already moved and the directories made for it are removed again. Returns the paths written."""
    made: list[Path] = []  # directories created here, outermost first
    placed: list[Path] = []
    staging: Path | None = None
    try:
        for directory in reversed([root, *root.parents]):
            if not directory.exists():
                directory.mkdir()
                made.append(directory)
        staging = Path(tempfile.mkdtemp(prefix=f".onex-new-{name}-", dir=root))
        texts = render_all(name, kind, staging)
        # One move per unit: the node's package as a whole, the other files one by one. Files that exist already
        # (tests/__init__.py of an existing project) are left as they are.
        units = sorted({f"nodes/{name}" if rel.startswith(f"nodes/{name}/") else rel for rel in texts})
        for rel in units:
            target = root / rel
            if target.exists():
                continue
            for directory in reversed(target.parents):
                if not directory.exists():
                    directory.mkdir()
                    made.append(directory)
            _place(staging / rel, target)
            placed.append(target)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for target in reversed(placed):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(p for target in placed for p in ([target] if target.is_file() else sorted(target.rglob("*.py"))))


def _place(source: Path, target: Path) -> None:
    """Move one staged file or directory into place (a rename: the staging directory is on the same file system)."""
    os.replace(source, target)
