"""Where the shipped contracts, subcontracts and migrations are: beside the package in a source checkout, or
inside it (``framework/_shipped/``) when installed from a wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Shipped = Literal["contracts", "subcontracts", "migrations"]

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: Shipped) -> Path:
    packaged = _PACKAGE / "_shipped" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name
