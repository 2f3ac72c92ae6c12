"""Findings: every problem the loader and validator report is data, printed as ``path:line:col: LEVEL CODE message``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Level(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a source file; line and column are 1-based, as editors count them."""

    path: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    col: int
    level: Level
    code: str
    message: str

    @classmethod
    def at(cls, pos: Position, level: Level, code: str, message: str) -> Finding:
        return cls(pos.path, pos.line, pos.col, level, code, message)

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.level.value} {self.code} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "level": self.level.value,
            "code": self.code,
            "message": self.message,
        }

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.col, self.code)
