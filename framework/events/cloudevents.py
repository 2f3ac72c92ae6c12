"""CloudEvents 1.0 Kafka protocol binding, so CloudEvents consumers read our topics and we read theirs.

Writing: the message value stays the JSON envelope; :func:`binary_headers` adds binary-mode headers:

=====================  ===================================================================================
``ce_specversion``     ``1.0``
``ce_id``              ``event_id``
``ce_source``          ``/omninode/{source_service}/{source_node_id}`` — a URI-reference; each segment is
                       percent-encoded, and the node segment is left out when ``source_node_id`` is empty
``ce_type``            ``omninode.{event_type}.v{event_version}``
``ce_time``            ``event_timestamp``, RFC 3339 in UTC (``...Z``)
``ce_correlationid``   ``correlation_id``, when set (extension; CloudEvents names are lowercase alphanumerics)
``ce_causationid``     ``causation_id``, when set (extension)
``ce_partitionkey``    ``partition_key``, when set (the CloudEvents *partitioning* extension)
``content-type``       ``application/json``
=====================  ===================================================================================

Reading (:func:`decode_message`): our own messages (the value is an envelope; the headers are not consulted, the
value is authoritative: only ``content-type`` is read, and the CloudEvents attributes are built only when the value
is not an envelope), structured mode (``content-type: application/cloudevents+json``) and foreign binary mode.
A foreign event maps best effort:

- ``type`` ``omninode.X.vN`` → ``event_type`` X, version N; any other type is kept whole, version 1;
- ``source`` in our form → service and node; any other source becomes both ``source_service`` and
  ``source_node_id`` (so foreign events stay ordered per source under the Kafka key rule);
- ``id`` → ``event_id`` when it is a UUID, else a UUIDv5 of source and id — CloudEvents makes (source, id) unique,
  so a redelivered event maps to the same ``event_id`` and idempotent consumers still deduplicate it. The same
  applies to ``correlationid``/``causationid``; the original text is kept in ``metadata["ce_<name>"]``;
- ``time`` absent → the time of decoding; ``source_version`` ``0.0.0`` and ``source_instance`` ``""`` (unknown);
- ``data``: an object is the payload, anything else is wrapped as ``{"data": ...}``, ``data_base64`` (or binary
  data that is neither JSON nor text) as ``{"data_base64": ...}``, no data as ``{}``;
- every other attribute (``subject``, ``dataschema``, extensions, and ``datacontenttype`` when the data was not
  JSON) is kept as ``metadata["ce_<name>"]``.

Anything undecodable raises :class:`EnvelopeError` naming the problem, so the bus can dead-letter the message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, unquote
from uuid import UUID, uuid5

from framework.events.envelope import EnvelopeError, OnexEnvelopeV1

__all__ = ["JSON_CONTENT_TYPE", "STRUCTURED_CONTENT_TYPE", "binary_headers", "ce_source", "ce_type", "decode_message"]

JSON_CONTENT_TYPE: Final = "application/json"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
_SPECVERSION: Final = "1.0"
# Fixed forever: foreign ids map to the same UUIDs in every process and every release.
_FOREIGN_ID_NAMESPACE: Final = UUID("257c1628-ec8e-5ba1-8de6-a12d9498d796")
_TYPE_RE: Final = re.compile(r"omninode\.(.+)\.v([1-9][0-9]*)", re.DOTALL)
_SOURCE_RE: Final = re.compile(r"/omninode/([^/]+)(?:/([^/]+))?")
_REQUIRED: Final = ("specversion", "id", "source", "type")
_MAPPED: Final = frozenset(
    {*_REQUIRED, "time", "correlationid", "causationid", "partitionkey", "datacontenttype", "data_base64"}
)
_MISSING: Final = object()


def ce_source(envelope: OnexEnvelopeV1) -> str:
    """``/omninode/{service}/{node}``; percent-encoding keeps any service or node name a valid URI-reference."""
    return _source(envelope.source_service, envelope.source_node_id).decode()


def ce_type(envelope: OnexEnvelopeV1) -> str:
    """``omninode.{event_type}.v{event_version}``: the version is part of the type, as CloudEvents recommends."""
    return _type(envelope.event_type, envelope.event_version).decode()


# A node publishes few distinct sources and types, and every event carries both: each is built once, not per event
# (percent-encoding two names cost more than the rest of the headers together).
@functools.lru_cache(maxsize=4096)
def _source(service: str, node_id: str) -> bytes:
    source = f"/omninode/{quote(service, safe='')}"
    return (f"{source}/{quote(node_id, safe='')}" if node_id else source).encode()


@functools.lru_cache(maxsize=4096)
def _type(event_type: str, version: int) -> bytes:
    return f"omninode.{event_type}.v{version}".encode()


_SPECVERSION_HEADER: Final = ("ce_specversion", _SPECVERSION.encode())
_CONTENT_TYPE_HEADER: Final = ("content-type", JSON_CONTENT_TYPE.encode())


def binary_headers(envelope: OnexEnvelopeV1) -> list[tuple[str, bytes]]:
    """The CloudEvents binary-mode headers that accompany ``envelope.to_json()`` on Kafka."""
    headers = [
        _SPECVERSION_HEADER,
        ("ce_id", str(envelope.event_id).encode()),
        ("ce_source", _source(envelope.source_service, envelope.source_node_id)),
        ("ce_type", _type(envelope.event_type, envelope.event_version)),
        ("ce_time", envelope.event_timestamp.isoformat(timespec="microseconds").replace("+00:00", "Z").encode()),
        _CONTENT_TYPE_HEADER,
    ]
    if envelope.correlation_id is not None:
        headers.append(("ce_correlationid", str(envelope.correlation_id).encode()))
    if envelope.causation_id is not None:
        headers.append(("ce_causationid", str(envelope.causation_id).encode()))
    if envelope.partition_key is not None:
        headers.append(("ce_partitionkey", envelope.partition_key.encode()))
    return headers


def decode_message(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]], *, environment: str = "dev"
) -> OnexEnvelopeV1:
    """One Kafka message → an envelope. ``environment`` is given to foreign events, which carry none.

    Fast path, for our own messages: only ``content-type`` is read from the headers; unless it names structured
    mode, the value is parsed as an envelope, and only if that fails are the ``ce_*`` headers decoded to tell a
    foreign binary-mode event (mapped) from a broken one of ours (poison). So a value that is an envelope is that
    envelope whatever the other headers say, even undecodable ones.
    """
    content_type = ""
    for name, raw in headers:
        # Most headers are ``ce_*``; the length test spares them the lowercasing.
        if len(name) == 12 and name.lower() == "content-type":
            content_type = _header_text(name, raw)
    if content_type != JSON_CONTENT_TYPE:
        media = _media(content_type)
        if media.startswith("application/cloudevents"):
            if media != STRUCTURED_CONTENT_TYPE:
                raise EnvelopeError(
                    f"content-type {content_type!r} is not supported; expected a single event in structured mode "
                    f"({STRUCTURED_CONTENT_TYPE}) or binary mode"
                )
            return _from_structured(value, environment)
    try:
        return OnexEnvelopeV1.from_json(value or b"")
    except EnvelopeError as exc:
        not_an_envelope = exc
    attrs = _ce_attributes(headers)
    # Only a foreign binary-mode event may fail to be an envelope; one of ours that fails is poison.
    if "specversion" not in attrs or _claims_ours(attrs) or _has_envelope_version(value):
        raise not_an_envelope
    return _from_binary(value, content_type, attrs, environment)


def _ce_attributes(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The CloudEvents attributes of binary-mode ``headers`` (``ce_`` names, lowercased, without the prefix)."""
    attrs: dict[str, str] = {}
    for name, raw in headers:
        key = name.lower()
        if key.startswith("ce_"):
            attrs[key[3:]] = _header_text(name, raw)
    return attrs


def _header_text(name: str, raw: bytes | None) -> str:
    try:
        return (raw or b"").decode()
    except UnicodeDecodeError:
        raise EnvelopeError(f"header {name!r} is not UTF-8 text: {raw!r:.80}") from None


def _claims_ours(attrs: dict[str, str]) -> bool:
    return _TYPE_RE.fullmatch(attrs.get("type", "")) is not None and attrs.get("source", "").startswith("/omninode/")


def _has_envelope_version(value: bytes | None) -> bool:
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return False
    return isinstance(doc, dict) and "envelope_version" in doc


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media in {"", JSON_CONTENT_TYPE, "text/json"} or media.endswith("+json")


def _from_binary(value: bytes | None, content_type: str, attrs: dict[str, Any], environment: str) -> OnexEnvelopeV1:
    data: Any = _MISSING
    media = _media(content_type)
    if value and _is_json(media):
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise EnvelopeError(f"binary-mode CloudEvent: the value is not valid JSON ({exc})") from None
    elif value:
        with contextlib.suppress(UnicodeDecodeError):  # text that is not UTF-8 travels as base64 below
            data = value.decode() if media.startswith("text/") else _MISSING
        if data is _MISSING:
            attrs["data_base64"] = base64.b64encode(value).decode()
    if content_type:
        attrs["datacontenttype"] = content_type
    return _to_envelope(attrs, data, environment, lambda name: f"header ce_{name}")


def _from_structured(value: bytes | None, environment: str) -> OnexEnvelopeV1:
    try:
        doc = json.loads(value or b"")
    except ValueError as exc:
        raise EnvelopeError(f"structured-mode CloudEvent: the value is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"structured-mode CloudEvent: the value must be a JSON object, got {type(doc).__name__}")
    data = doc.pop("data", _MISSING)
    if isinstance(data, dict) and "envelope_version" in data:
        return OnexEnvelopeV1.from_dict(data)  # one of ours, re-encoded in structured mode by a router
    return _to_envelope(doc, data, environment, lambda name: f"attribute {name!r}")


def _to_envelope(attrs: dict[str, Any], data: Any, environment: str, where: Callable[[str], str]) -> OnexEnvelopeV1:
    for name in _REQUIRED:
        if not isinstance(attrs.get(name), str) or not attrs[name]:
            problem = "is missing" if name not in attrs else f"must be a non-empty string, got {attrs[name]!r}"
            raise EnvelopeError(f"CloudEvent {where(name)} {problem}; required: {', '.join(_REQUIRED)}")
    if attrs["specversion"] != _SPECVERSION:
        raise EnvelopeError(f"CloudEvent {where('specversion')} is {attrs['specversion']!r}; only '1.0' is supported")
    source: str = attrs["source"]
    metadata = {f"ce_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items() if k not in _MAPPED}

    def ident(name: str, scope: str) -> UUID | None:
        text = attrs.get(name)
        if text is None:
            return None
        if not isinstance(text, str) or not text:
            raise EnvelopeError(f"CloudEvent {where(name)} must be a non-empty string, got {text!r}")
        try:
            return UUID(text)
        except ValueError:
            metadata[f"ce_{name}"] = text
            return uuid5(_FOREIGN_ID_NAMESPACE, f"{scope}\n{text}")

    fields: dict[str, Any] = {
        "event_id": ident("id", source),
        "correlation_id": ident("correlationid", ""),
        # A cause usually comes from the same source, so its mapped id matches that event's mapped event_id.
        "causation_id": ident("causationid", source),
        "event_timestamp": _parse_time(attrs.get("time", _MISSING), where),
        "source_version": "0.0.0",
        "source_instance": "",
        "environment": environment,
        "partition_key": attrs.get("partitionkey"),
        "metadata": metadata,
    }
    if match := _TYPE_RE.fullmatch(attrs["type"]):
        fields["event_type"], fields["event_version"] = match.group(1), int(match.group(2))
    else:
        fields["event_type"] = attrs["type"]
    if match := _SOURCE_RE.fullmatch(source):
        fields["source_service"], fields["source_node_id"] = unquote(match.group(1)), unquote(match.group(2) or "")
    else:
        fields["source_service"] = fields["source_node_id"] = source
    encoded = attrs.get("data_base64", _MISSING)
    if encoded is not _MISSING:
        if data is not _MISSING:
            raise EnvelopeError("CloudEvent has both 'data' and 'data_base64'; at most one is allowed")
        try:
            base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise EnvelopeError(f"CloudEvent {where('data_base64')} is not valid base64: {encoded!r:.80}") from None
        fields["payload"] = {"data_base64": encoded}
    else:
        fields["payload"] = {} if data is _MISSING else data if isinstance(data, dict) else {"data": data}
    content_type = attrs.get("datacontenttype")
    if isinstance(content_type, str) and not _is_json(_media(content_type)):
        # The payload holds wrapped non-JSON data; its consumer needs the media type to read it.
        metadata["ce_datacontenttype"] = content_type
    return OnexEnvelopeV1.from_dict(fields)


def _parse_time(text: object, where: Callable[[str], str]) -> datetime:
    if text is _MISSING:
        return datetime.now(UTC)
    try:
        # RFC 3339 allows a lowercase 't'/'z' and more than six fraction digits; fromisoformat takes both this way.
        parsed = datetime.fromisoformat(text.upper()) if isinstance(text, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise EnvelopeError(f"CloudEvent {where('time')} must be an RFC 3339 timestamp with an offset, got {text!r}")
    return parsed
