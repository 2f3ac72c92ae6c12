"""Findings: every problem the loader and validator report is data, printed as ``path:line:col: LEVEL CODE message``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

#: Control characters and line breaks, shown escaped: a finding is one line, and contract text must not drive the
#: terminal. Tabs stay.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 0x7F, 0x85] if c != 9} | {
    10: "\\n",
    13: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


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
        text = f"{self.path}:{self.line}:{self.col}: {self.level.value} {self.code} {self.message}"
        return text.translate(_ESCAPES)

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
