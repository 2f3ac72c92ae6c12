"""Stamping and verifying files on disk, without the service: what ``onex stamp`` and ``onex verify`` do.

The stamp is the one the service writes (same form, same hash over the content without stamps, same id for the same
namespace and content), so a file stamped here verifies there and the reverse.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from framework.adapters.hashing import hash_bytes
from nodes.metadata_stamping import stamps
from nodes.metadata_stamping.filetypes import FileTypes

_SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules", ".onex"}

Outcome = Literal["stamped", "unchanged", "would-stamp", "binary", "valid", "tampered", "missing", "error"]


@dataclass(frozen=True)
class FileResult:
    path: Path
    outcome: Outcome
    file_hash: str | None = None
    detail: str = ""


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files of ``paths``, directories walked in sorted order (VCS and cache directories skipped)."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def _read_text(path: Path, types: FileTypes) -> tuple[bytes, str | None, tuple[str, str] | None]:
    data = path.read_bytes()
    detection = types.detect(path.name, data[:4096])
    if detection.comment is None:
        return data, None, None
    try:
        return data, data.decode("utf-8"), detection.comment
    except UnicodeDecodeError:
        return data, None, None


def stamp_file(path: Path, *, namespace: str, rich: bool, dry_run: bool, types: FileTypes) -> FileResult:
    """Stamp one file in place (binary files are hashed, never modified)."""
    try:
        data, text, comment = _read_text(path, types)
        if text is None or comment is None:
            return FileResult(path, "binary", hash_bytes(data), "binary: hashed, not modified")
        stripped = stamps.strip(text)
        digest = hash_bytes(stripped.encode("utf-8"))
        found = stamps.find(text)
        kind: stamps.Kind = "rich" if rich else "lightweight"
        if found and all(s.file_hash == digest and s.kind == kind for s in found) and len(found) == 1:
            return FileResult(path, "unchanged", digest, "already stamped")
        detection = types.detect(path.name, data[:4096])
        info = stamps.StampInfo(
            uid=str(stamps.stamp_id(namespace, digest)),
            file_hash=digest,
            timestamp=datetime.now(UTC).isoformat(),
            namespace=namespace,
            file_size=len(stripped.encode("utf-8")),
            file_path=path.name,
            content_type=detection.content_type,
        )
        stamped = stamps.apply(stripped, stamps.render(info, kind, comment, stamps.newline_of(stripped)))
        if dry_run:
            return FileResult(path, "would-stamp", digest)
        # Write beside the file and rename over it, so a crash never leaves a half-written file; keep its mode.
        tmp = path.with_name(f".{path.name}.onex-tmp")
        try:
            tmp.write_bytes(stamped.encode("utf-8"))
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return FileResult(path, "stamped", digest)
    except OSError as exc:
        return FileResult(path, "error", None, f"{type(exc).__name__}: {exc.strerror or exc}")


def verify_file(path: Path, *, types: FileTypes) -> FileResult:
    """Check the stamps in one file: valid, tampered or missing (binary files carry none: reported, not failed)."""
    try:
        data, text, _ = _read_text(path, types)
    except OSError as exc:
        return FileResult(path, "error", None, f"{type(exc).__name__}: {exc.strerror or exc}")
    if text is None:
        return FileResult(path, "binary", hash_bytes(data), "binary: stamps are stored by the service, not embedded")
    found = stamps.find(text)
    digest = hash_bytes(stamps.strip(text).encode("utf-8"))
    verdict = stamps.verdict(found, digest)
    detail = "" if verdict != "tampered" else "content changed since it was stamped"
    return FileResult(path, verdict, digest, detail)
