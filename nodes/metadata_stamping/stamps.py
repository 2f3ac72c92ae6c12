"""Stamps in text: rendering, finding, removing, and the O.N.E. v0.1 checks of one stamp.

Two forms, each wrapped in the comment syntax of the file's type (``# …``, ``// …``, ``<!-- … -->``, ``/* … */``,
``-- …``):

- lightweight, one line: ``ONEX:uid=<uuid>,hash=<blake3 hex>,ts=<ISO 8601>[,ns=<namespace>]``;
- rich, a block between ``=== ONEX METADATA BEGIN ===`` and ``=== ONEX METADATA END ===`` with one ``key: <JSON>``
  line per field: uid, hash, timestamp, protocol_version, file_path, file_size, content_type, namespace, integrity.

A stamp always describes the content *without* stamps: :func:`strip` removes every stamp (wherever it is, in any
comment syntax), and the hash is taken over what is left. So stamping stamped content replaces its stamp, and
stamping twice changes nothing but the timestamp.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

PROTOCOL_VERSION = "0.1"
HASH_ALGORITHM = "blake3"
BEGIN = "=== ONEX METADATA BEGIN ==="
END = "=== ONEX METADATA END ==="

_OPEN = r"[ \t]*(?:#|//|--|/\*|<!--)?[ \t]*"
_CLOSE = r"[ \t]*(?:\*/|-->)?[ \t]*(?:\r\n|\n|\Z)"
_LIGHT = re.compile(
    rf"^{_OPEN}ONEX:uid=(?P<uid>[0-9A-Za-z-]+),hash=(?P<hash>[0-9A-Za-z]+),ts=(?P<ts>[0-9A-Za-z:.+-]+)"
    rf"(?P<extra>(?:,[a-z_]+=[A-Za-z0-9_.:/+-]*)*){_CLOSE}",
    re.MULTILINE,
)
_RICH = re.compile(
    rf"^{_OPEN}{re.escape(BEGIN)}{_CLOSE}(?P<body>(?:.*(?:\r\n|\n))*?){_OPEN}{re.escape(END)}{_CLOSE}",
    re.MULTILINE,
)
_FIELD = re.compile(r"^[ \t]*(?:#|//|--|/\*|<!--)?[ \t]*(?P<key>[a-z_]+): (?P<value>.*?)[ \t]*(?:\*/|-->)?[ \t]*$")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Kind = Literal["lightweight", "rich"]
Verdict = Literal["valid", "tampered", "missing"]


@dataclass(frozen=True)
class StampInfo:
    """What a new stamp says."""

    uid: str
    file_hash: str
    timestamp: str
    namespace: str
    file_size: int
    file_path: str | None = None
    content_type: str | None = None

    def rich_fields(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "hash": self.file_hash,
            "timestamp": self.timestamp,
            "protocol_version": PROTOCOL_VERSION,
            "file_path": self.file_path,
            "file_size": self.file_size,
            "content_type": self.content_type,
            "namespace": self.namespace,
            "integrity": {"algorithm": HASH_ALGORITHM, "hash": self.file_hash},
        }


@dataclass(frozen=True)
class FoundStamp:
    """A stamp found in text, as written (nothing is trusted until checked)."""

    kind: Kind
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def file_hash(self) -> str:
        return str(self.fields.get("hash", ""))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.fields}


def _json(value: Any) -> str:
    # Escaped so that no value can close the comment it sits in (``-->``, ``*/``) or start a new line.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("*/", "*\\/")


def render(info: StampInfo, kind: Kind, comment: tuple[str, str], newline: str = "\n") -> str:
    """The stamp text (ending with ``newline``) in the comment syntax ``(prefix, suffix)``."""
    prefix, suffix = comment
    if kind == "lightweight":
        return f"{prefix}ONEX:uid={info.uid},hash={info.file_hash},ts={info.timestamp},ns={info.namespace}{suffix}" + (
            newline
        )
    lines = [BEGIN, *(f"{key}: {_json(value)}" for key, value in info.rich_fields().items()), END]
    return "".join(f"{prefix}{line}{suffix}{newline}" for line in lines)


def _parse_rich(body: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for line in body.splitlines():
        match = _FIELD.match(line)
        if match is None:
            continue
        try:
            fields[match["key"]] = json.loads(match["value"])
        except ValueError:
            fields[match["key"]] = match["value"]
    return fields


def find(text: str) -> list[FoundStamp]:
    """Every stamp in ``text``, in order of appearance."""
    found: list[tuple[int, FoundStamp]] = []
    for match in _RICH.finditer(text):
        found.append((match.start(), FoundStamp("rich", _parse_rich(match["body"]))))
    for match in _LIGHT.finditer(text):
        fields: dict[str, Any] = {"uid": match["uid"], "hash": match["hash"], "timestamp": match["ts"]}
        for pair in filter(None, match["extra"].split(",")):
            key, _, value = pair.partition("=")
            fields["namespace" if key == "ns" else key] = value
        found.append((match.start(), FoundStamp("lightweight", fields)))
    return [stamp for _, stamp in sorted(found, key=lambda item: item[0])]


def strip(text: str) -> str:
    """``text`` with every stamp removed: what the hash of a stamp covers."""
    if "ONEX" not in text:  # the fast path for the common case of unstamped content
        return text
    return _LIGHT.sub("", _RICH.sub("", text))


def apply(text: str, stamp_text: str) -> str:
    """Put ``stamp_text`` at the top of the (already stripped) ``text``: after a ``#!`` line or an XML declaration,
    which must stay first."""
    if text.startswith(("#!", "<?xml")):
        first, newline, rest = text.partition("\n")
        if not newline:
            return first + "\n" + stamp_text
        return first + newline + stamp_text + rest
    return stamp_text + text


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


def protocol_checks(stamp: FoundStamp) -> list[Check]:
    """The O.N.E. v0.1 checks of one stamp: well-formed uid, hash and timestamp; for rich stamps, the protocol
    version, the integrity block agreeing with the hash, and a non-negative size."""
    fields = stamp.fields
    checks: list[Check] = []

    def check(name: str, passed: bool, message: str) -> None:
        checks.append(Check(name, passed, "ok" if passed else message))

    uid = fields.get("uid")
    try:
        uuid.UUID(str(uid))
        uid_ok = True
    except ValueError:
        uid_ok = False
    check("uid", uid_ok, f"uid must be a UUID, got {uid!r}")
    digest = fields.get("hash")
    check(
        "hash",
        isinstance(digest, str) and _HEX64.fullmatch(digest) is not None,
        f"hash must be 64 lowercase hex digits (BLAKE3-256), got {digest!r}",
    )
    ts = fields.get("timestamp")
    try:
        parsed = datetime.fromisoformat(str(ts))
        ts_ok = parsed.tzinfo is not None
    except ValueError:
        ts_ok = False
    check("timestamp", ts_ok, f"timestamp must be ISO 8601 with a time zone, got {ts!r}")
    namespace = fields.get("namespace")
    if namespace is not None:
        from nodes.metadata_stamping.requests import NAMESPACE_RE  # noqa: PLC0415 - one rule, kept with requests

        check(
            "namespace",
            isinstance(namespace, str) and NAMESPACE_RE.fullmatch(namespace) is not None,
            f"namespace {namespace!r} is not a valid namespace",
        )
    if stamp.kind == "rich":
        version = fields.get("protocol_version")
        check(
            "protocol_version",
            version == PROTOCOL_VERSION,
            f"protocol_version must be {PROTOCOL_VERSION!r}, got {version!r}",
        )
        integrity = fields.get("integrity")
        good = (
            isinstance(integrity, dict)
            and integrity.get("algorithm") == HASH_ALGORITHM
            and integrity.get("hash") == digest
        )
        check(
            "integrity", good, f"integrity must be {{algorithm: blake3, hash: <the stamp's hash>}}, got {integrity!r}"
        )
        size = fields.get("file_size")
        check(
            "file_size",
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            f"file_size must be a non-negative integer, got {size!r}",
        )
    return checks


def verdict(stamps: list[FoundStamp], actual_hash: str) -> Verdict:
    """``missing`` without stamps, ``valid`` when every stamp names ``actual_hash``, else ``tampered``."""
    if not stamps:
        return "missing"
    return "valid" if all(s.file_hash == actual_hash for s in stamps) else "tampered"


#: uuid5 namespace of stamp ids: one (namespace, hash) always gets the same id, from the CLI or the service, even
#: from two racing first stamps.
STAMP_ID_NAMESPACE = uuid.UUID("6f6e6578-0000-5000-8000-6d657461646d")


def stamp_id(namespace: str, file_hash: str) -> uuid.UUID:
    return uuid.uuid5(STAMP_ID_NAMESPACE, f"{namespace}\x00{file_hash}")
