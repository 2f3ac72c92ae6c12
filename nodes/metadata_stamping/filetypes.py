"""File types: detection by extension and by magic bytes, and whether a type may carry a stamp in its text.

The supported families are the seed rows of ``protocol_handlers`` (migration 002); the node reads those rows at
start (:meth:`FileTypes.load`), so a deactivated or added handler row changes which handler a file gets. Magic
bytes are checked against the extension, and a file whose content is not what its extension says is reported as a
mismatch (never silently trusted: a ``.txt`` that is really a PNG is binary and is not modified).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Binary types: extension → (handler_type, mime type). These are never modified by stamping.
BINARY_TYPES: Mapping[str, tuple[str, str]] = {
    "jpg": ("image", "image/jpeg"),
    "jpeg": ("image", "image/jpeg"),
    "png": ("image", "image/png"),
    "gif": ("image", "image/gif"),
    "bmp": ("image", "image/bmp"),
    "webp": ("image", "image/webp"),
    "pdf": ("document", "application/pdf"),
    "doc": ("document", "application/msword"),
    "docx": ("document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "mp3": ("audio", "audio/mpeg"),
    "wav": ("audio", "audio/wav"),
    "flac": ("audio", "audio/flac"),
    "aac": ("audio", "audio/aac"),
    "ogg": ("audio", "audio/ogg"),
    "mp4": ("video", "video/mp4"),
    "avi": ("video", "video/x-msvideo"),
    "mkv": ("video", "video/x-matroska"),
    "mov": ("video", "video/quicktime"),
    "webm": ("video", "video/webm"),
    "zip": ("archive", "application/zip"),
    "tar": ("archive", "application/x-tar"),
    "gz": ("archive", "application/gzip"),
    "rar": ("archive", "application/vnd.rar"),
    "7z": ("archive", "application/x-7z-compressed"),
}

# Text types and the comment a stamp line is wrapped in: extension → (prefix, suffix).
_HASH = ("# ", "")
_SLASHES = ("// ", "")
_DASHES = ("-- ", "")
_MARKUP = ("<!-- ", " -->")
_BLOCK = ("/* ", " */")
COMMENTS: Mapping[str, tuple[str, str]] = {
    **dict.fromkeys(("txt", "py", "sh", "bash", "yaml", "yml", "toml", "rb", "pl", "r", "cfg", "ini", "conf"), _HASH),
    **dict.fromkeys(("md", "html", "htm", "xml", "svg"), _MARKUP),
    **dict.fromkeys(
        ("js", "ts", "jsx", "tsx", "go", "rs", "c", "h", "cpp", "hpp", "java", "kt", "swift", "cs"), _SLASHES
    ),
    **dict.fromkeys(("sql", "lua", "hs"), _DASHES),
    "css": _BLOCK,
}
DEFAULT_COMMENT = _HASH
TEXT_MIME: Mapping[str, str] = {"txt": "text/plain", "md": "text/markdown", "html": "text/html", "py": "text/x-python"}
# Extensions of one format family whose magic bytes cannot (cheaply) be told apart.
_SAME_MAGIC = [{"jpg", "jpeg"}, {"mp4", "mov"}, {"mkv", "webm"}, {"zip", "docx"}]


def sniff(head: bytes) -> str | None:
    """The type the first bytes of a file say it is (an extension of :data:`BINARY_TYPES`), or ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":  # the reserved fields are zero
        return "bmp"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "doc"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "docx" if b"word/" in head[:4096] else "zip"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] in (0xFB, 0xF3, 0xF2)):
        return "mp3"
    if head.startswith(b"fLaC"):
        return "flac"
    if len(head) >= 2 and head[0] == 0xFF and head[1] in (0xF1, 0xF9):
        return "aac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    return None


def looks_textual(head: bytes) -> bool:
    """No NUL byte and valid UTF-8 (allowing a character cut at the end of ``head``)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def extension_of(file_path: str | None) -> str:
    if not file_path:
        return ""
    name = file_path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name.strip(".") else ""


def _same(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in _SAME_MAGIC)


@dataclass(frozen=True)
class Detection:
    """What a file is: its extension, what its bytes say, the handler row that takes it, and whether they agree."""

    extension: str
    detected: str | None
    handler_type: str | None
    content_type: str
    binary: bool
    mismatch: bool
    comment: tuple[str, str] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "extension": self.extension or None,
            "detected": self.detected,
            "handler_type": self.handler_type,
            "content_type": self.content_type,
            "binary": self.binary,
            "mismatch": self.mismatch,
            "stampable": self.comment is not None,
        }


class FileTypes:
    """Extension → handler_type, from the rows of ``protocol_handlers`` (or the seed rows until loaded)."""

    def __init__(self) -> None:
        self._handlers: dict[str, str] = {ext: handler for ext, (handler, _) in BINARY_TYPES.items()}
        self._handlers.update({"txt": "document", "md": "document"})

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Take the active ``protocol_handlers`` rows as the handler table."""
        handlers: dict[str, str] = {}
        for row in rows:
            if row.get("is_active", True):
                for ext in row["file_extensions"]:
                    handlers[str(ext).lower().lstrip(".")] = str(row["handler_type"])
        self._handlers = handlers

    @property
    def handler_count(self) -> int:
        """Extensions with a handler."""
        return len(self._handlers)

    def handler_of(self, extension: str) -> str | None:
        return self._handlers.get(extension)

    def detect(self, file_path: str | None, head: bytes, content_type: str | None = None) -> Detection:
        """Detect the type of a file from its name and its first bytes (4 KB are plenty)."""
        ext = extension_of(file_path)
        sniffed = sniff(head)
        textual = sniffed is None and looks_textual(head)
        binary = not textual
        if ext in BINARY_TYPES:
            mismatch = sniffed is None or not _same(ext, sniffed)
        elif ext:
            mismatch = binary  # a text extension over binary bytes
        else:
            mismatch = False
        kind = ext if ext in BINARY_TYPES and not mismatch else (sniffed or ext)
        mime = content_type or (
            BINARY_TYPES[kind][1]
            if kind in BINARY_TYPES
            else TEXT_MIME.get(kind, "text/plain" if textual else "application/octet-stream")
        )
        comment = None if binary else COMMENTS.get(ext, DEFAULT_COMMENT)
        if ext in BINARY_TYPES:
            comment = None  # a binary type is never modified, even when its bytes happen to be text
        return Detection(
            extension=ext,
            detected=sniffed if sniffed is not None else ("text" if textual else None),
            handler_type=self.handler_of(ext) or (self.handler_of(sniffed) if sniffed else None),
            content_type=mime,
            binary=binary or ext in BINARY_TYPES,
            mismatch=mismatch,
            comment=comment,
        )
