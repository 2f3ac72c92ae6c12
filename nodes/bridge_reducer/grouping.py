"""The bridge reducer's CUSTOM aggregation strategy: stamps grouped by the directory of their ``file_path``.

``by_directory(item, strategy)`` is the ``function`` of the CUSTOM strategy in ``subcontracts/aggregation/bridge.yaml``
(``framework.runtime.aggregation`` calls it once per item and folds the item into the group it returns). The group
key is the first :data:`DEPTH` directories of the path — ``src/pkg/mod.py`` → ``src/pkg``, ``docs/index.md`` →
``docs``, a top-level ``README.md`` → ``.`` — so the state table answers "how many stamps, how many bytes, of which
content types, under each part of the tree" per namespace.

Normalisation (a pure function of the string, no filesystem access):

- ``\\`` separators are ``/``; surrounding whitespace, a leading ``/`` and a drive (``C:``) are dropped, so an
  absolute path groups like a relative one; empty and ``.`` segments are dropped; ``..`` removes the segment before
  it (never climbing above the top); the text is Unicode NFC (macOS and Linux spellings of ``café`` are one group).
- The last segment is the file name, unless the path ends with ``/`` (or ``.``/``..``): then it is a directory.
- Characters PostgreSQL's ``text`` or UTF-8 cannot hold (NUL and other control characters, lone surrogates) become
  U+FFFD, and a segment longer than :data:`MAX_SEGMENT` characters is cut (ending in ``…``), so the key always
  fits the primary-key index of ``bridge_states``.

A stamp without a path — ``file_path`` absent, null, not a string, empty or only whitespace — is not folded by this
strategy (as a stamp without a workflow id has no WORKFLOW_GROUPING group): CUSTOM totals count stamps with a path.

The function never raises. That matters: ``framework.runtime.aggregation`` does not catch what a CUSTOM function
raises, so an exception would fail the whole event — the host retries it (``subcontracts/retry/default.yaml``: 3
attempts with backoff), then sends it to the dead-letter topic, and none of its strategies would be folded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from framework.contract.subcontracts import AggregationStrategy
from framework.runtime.aggregation import lookup

__all__ = ["DEFAULT_FIELD", "DEPTH", "MAX_SEGMENT", "ROOT", "by_directory", "directory_key"]

#: The payload field read when the strategy has no ``group_by``.
DEFAULT_FIELD = "file_path"
#: How many leading directories name the group.
DEPTH = 2
#: The longest segment kept, in characters (longer ones are cut and end in ``…``).
MAX_SEGMENT = 100
#: The group of a file that is in no directory.
ROOT = "."

_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DRIVE = re.compile(r"[A-Za-z]:")


def _segment(text: str) -> str:
    text = unicodedata.normalize("NFC", _UNSTORABLE.sub("\ufffd", text))
    return text if len(text) <= MAX_SEGMENT else text[: MAX_SEGMENT - 1] + "…"


def directory_key(path: object, depth: int = DEPTH) -> str | None:
    """The group of a file at ``path``: its first ``depth`` directories joined by ``/``, :data:`ROOT` when it is in
    none, None when there is no path (not a string, empty or whitespace)."""
    if not isinstance(path, str):
        return None
    text = path.strip().replace("\\", "/")
    if not text:
        return None
    if _DRIVE.match(text):
        text = text[2:]
    raw = text.split("/")
    is_directory = raw[-1] in ("", ".", "..")
    parts: list[str] = []
    for part in raw:
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    directories = parts if is_directory else parts[:-1]
    if not directories or depth < 1:
        return ROOT
    return "/".join(_segment(d) for d in directories[:depth])


def by_directory(item: Mapping[str, Any], strategy: AggregationStrategy) -> str | None:
    """CUSTOM strategy ``nodes.bridge_reducer.grouping:by_directory``: the directory group of the item's
    ``group_by`` field (default ``file_path``), or None when it has no path."""
    return directory_key(lookup(item, strategy.group_by or DEFAULT_FIELD))
