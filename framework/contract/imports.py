"""Importing what a contract names (``implementation``, a CUSTOM aggregation's ``function``): the working directory
is importable, as with ``python -m``, so a project's own ``nodes/`` package is found."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def import_module(module_name: str) -> ModuleType:
    """Import ``module_name``; a module that calls ``sys.exit`` while importing raises ImportError instead."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except SystemExit as exc:
        raise ImportError(f"the module called sys.exit({exc.code}) while importing") from None
