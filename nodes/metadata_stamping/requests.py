"""Requests to the stamping service, however they arrive (HTTP, the orchestrator, the stamp-requested command):
checked against the contract's models, then the rules a schema cannot say (base64 that decodes, file paths that
stay inside their tree). Every refusal is a :class:`BadRequest`: a :class:`PayloadInvalid`, so a command carrying
one is dead-lettered rather than retried, with the HTTP status an API answers it with.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from framework.errors import PayloadInvalid

NAMESPACE_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
MAX_NAMESPACE = 255
DEFAULT_NAMESPACE = "omninode.services.metadata"


class BadRequest(PayloadInvalid):
    """A request that can never succeed as sent; ``http_status`` is 422 unless said otherwise."""

    def __init__(self, message: str, *, code: str = "invalid_request", http_status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or len(namespace) > MAX_NAMESPACE or not NAMESPACE_RE.fullmatch(namespace):
        raise BadRequest(
            f"namespace {namespace!r} is not valid: expected dot-separated lowercase names of letters, digits and "
            f"'_', each starting with a letter (e.g. {DEFAULT_NAMESPACE}), at most {MAX_NAMESPACE} characters",
            code="invalid_namespace",
        )
    return namespace


def check_file_path(file_path: object) -> str | None:
    """A relative path that cannot leave its tree: no absolute path, drive, ``..`` segment or control character."""
    if file_path is None:
        return None
    if not isinstance(file_path, str):
        raise BadRequest(f"file_path must be a string, got {type(file_path).__name__}", code="invalid_file_path")
    if any(ord(c) < 32 for c in file_path):
        raise BadRequest("file_path must not contain control characters", code="invalid_file_path")
    normal = file_path.replace("\\", "/")
    if normal.startswith("/") or re.match(r"[A-Za-z]:", normal) or ".." in normal.split("/"):
        raise BadRequest(
            f"file_path {file_path!r} is refused: it must be relative and must not contain '..' (path traversal)",
            code="path_traversal",
        )
    return file_path


def decode_content(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"content is not valid base64: {exc}", code="invalid_content") from None
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from JSON escapes
        raise BadRequest(f"content is not valid UTF-8 text: {exc.reason}", code="invalid_content") from None


@dataclass(frozen=True)
class ContentRequest:
    """A request checked and decoded: what hash, stamp and validate work on."""

    data: bytes
    encoding: str
    namespace: str | None
    file_path: str | None
    content_type: str | None
    rich: bool

    @classmethod
    def parse(cls, body: dict[str, Any], *, namespace_required: bool) -> ContentRequest:
        """``body`` already matched its model; check what the model cannot."""
        namespace = body.get("namespace")
        if namespace is not None or namespace_required:
            namespace = check_namespace(namespace)
        encoding = body.get("encoding", "utf-8")
        return cls(
            data=decode_content(body["content"], encoding),
            encoding=encoding,
            namespace=namespace,
            file_path=check_file_path(body.get("file_path")),
            content_type=body.get("content_type"),
            rich=bool(body.get("rich", False)),
        )
