"""``OnexEnvelopeV1``: the one shape every event takes on the bus (ARCHITECTURE §5).

Decisions worth knowing:

- ``correlation_id`` defaults to ``None``: a root event starts a chain and *is* its correlation. ``child_of`` gives
  every follow-up ``correlation_id = parent.correlation_id or parent.event_id`` and ``causation_id =
  parent.event_id``, so a whole chain shares one correlation id without roots inventing a random one — and the
  Kafka key rule can still fall back to ``source_node_id`` for uncorrelated events, keeping them ordered per node.
- ``source_node_id`` may be empty (an event from a CLI, a script or a foreign producer); the key rule then falls
  through to ``event_id``.
- Timestamps must be timezone-aware and are stored in UTC, so a JSON round trip yields an equal envelope.
- ``payload`` must be JSON-compatible (it is checked as a ``dict[str, Any]`` only, for speed).
- Bytes that are not an envelope raise :class:`EnvelopeError`; constructing one in code with bad fields raises
  pydantic's ``ValidationError`` (a ``ValueError``), as any model does — a custom ``__init__`` would cost the typed
  constructor that mypy checks.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from framework.errors import OnexError
from framework.events.topics import NAME_PART_PATTERN

__all__ = ["EnvelopeError", "EnvelopeTemplate", "OnexEnvelopeV1"]

_HOST = socket.gethostname()
_instance = f"{_HOST}-{os.getpid()}"


def _refresh_instance() -> None:
    global _instance  # noqa: PLW0603 - a forked worker is a distinct instance
    _instance = f"{_HOST}-{os.getpid()}"


os.register_at_fork(after_in_child=_refresh_instance)


def _default_instance() -> str:
    return _instance


def _now() -> datetime:
    return datetime.now(UTC)


class EnvelopeError(OnexError):
    """Bytes or fields that do not make a valid envelope. Never retriable: route the message to the dead letters."""


def _describe(exc: ValidationError) -> str:
    def one(err: ErrorDetails) -> str:
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        msg = err["msg"].removeprefix("Value error, ")
        # Whole-document inputs are too big to quote; our own value errors quote the value already.
        if err["type"] in {
            "missing",
            "json_invalid",
            "json_type",
            "model_type",
            "model_attributes_type",
            "value_error",
        }:
            return f"{where}: {msg}"
        shown = repr(err["input"])
        return f"{where}: {msg} (got {shown[:80] + '...' if len(shown) > 80 else shown})"

    errors = exc.errors(include_url=False)
    return f"not a valid OnexEnvelopeV1 ({len(errors)} problem{'s' * (len(errors) > 1)}): " + "; ".join(
        one(e) for e in errors
    )


class OnexEnvelopeV1(BaseModel):
    """Envelope version 1.0. Immutable; unknown fields are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    envelope_version: Literal["1.0"] = "1.0"
    event_id: UUID = Field(default_factory=uuid4)
    event_type: str = Field(min_length=1, description="The catalog event name, e.g. 'metadata-stamp-created'.")
    event_version: int = Field(default=1, ge=1)
    event_timestamp: datetime = Field(default_factory=_now)
    source_node_id: str
    source_service: str = Field(min_length=1)
    source_version: str = Field(pattern=r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
    source_instance: str = Field(default_factory=_default_instance)
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    environment: str = Field(default="dev", pattern=f"^{NAME_PART_PATTERN.pattern}$")
    region: str | None = None
    partition_key: str | None = Field(default=None, min_length=1)
    payload: dict[str, Any]
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("event_timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"must be timezone-aware (it is stored in UTC), got the naive datetime {value.isoformat()!r}; "
                "give an offset, e.g. datetime.now(UTC) or '2024-01-01T00:00:00Z'"
            )
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, the Kafka message value."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, data: bytes | bytearray | str) -> OnexEnvelopeV1:
        """Parse a message value; anything that is not a valid envelope raises :class:`EnvelopeError`."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise EnvelopeError(_describe(exc)) from None

    @classmethod
    def from_dict(cls, data: object) -> OnexEnvelopeV1:
        """Build from already-parsed JSON (e.g. the data of a structured CloudEvent); errors as :meth:`from_json`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EnvelopeError(_describe(exc)) from None

    def kafka_key(self) -> bytes:
        """partition_key, else correlation_id, else source_node_id, else event_id (ARCHITECTURE §5)."""
        if self.partition_key is not None:
            return self.partition_key.encode()
        if self.correlation_id is not None:
            return str(self.correlation_id).encode()
        if self.source_node_id:
            return self.source_node_id.encode()
        return str(self.event_id).encode()

    @classmethod
    def child_of(
        cls,
        parent: OnexEnvelopeV1,
        *,
        event_type: str,
        payload: dict[str, Any],
        source_node_id: str,
        source_service: str,
        source_version: str,
        event_version: int = 1,
        partition_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> OnexEnvelopeV1:
        """A follow-up event caused by ``parent``: same chain (correlation), environment and region.

        The source is the emitting node, which is rarely the parent's source, so it is required.
        """
        return cls(
            event_type=event_type,
            event_version=event_version,
            source_node_id=source_node_id,
            source_service=source_service,
            source_version=source_version,
            environment=parent.environment,
            partition_key=partition_key,
            payload=payload,
            metadata=metadata or {},
            **_chained_to(parent),
        )


def _chained_to(parent: OnexEnvelopeV1) -> dict[str, Any]:
    """The fields that put a follow-up event in ``parent``'s chain (correlation, causation, region)."""
    return {
        "correlation_id": parent.correlation_id or parent.event_id,
        "causation_id": parent.event_id,
        "region": parent.region,
    }


_set_attribute = object.__setattr__


class EnvelopeTemplate:
    """The fields that every event of one type from one publisher shares, checked once; :meth:`new` builds each
    event from it, checking only what varies.

    A node publishes the same event type from the same source many times. Validating a whole envelope each time
    (the constructor) re-checks the source, version and environment that cannot have changed, and is about half the
    cost of building one. :meth:`new` copies the checked fields, adds a fresh id and timestamp and the varying
    fields, and checks those by hand: the payload a dict with string keys, the partition key a non-empty string,
    the metadata strings, the correlation and causation ids UUIDs, the region a string. Anything else goes through
    the constructor, which raises what it raises for it. The result equals what the constructor builds from the same
    fields, payload and metadata copied as it copies them (``tests/events/test_envelope.py`` holds the two to it);
    only ``model_fields_set`` also names the varying fields left at ``None``.
    """

    __slots__ = ("_fields", "_fields_set")

    def __init__(
        self,
        *,
        event_type: str,
        source_node_id: str,
        source_service: str,
        source_version: str,
        event_version: int = 1,
        environment: str = "dev",
    ) -> None:
        sample = OnexEnvelopeV1(
            event_type=event_type,
            event_version=event_version,
            source_node_id=source_node_id,
            source_service=source_service,
            source_version=source_version,
            environment=environment,
            payload={},
        )
        self._fields = dict(sample.__dict__)
        self._fields_set = frozenset(sample.model_fields_set)

    def new(
        self,
        payload: dict[str, Any],
        *,
        partition_key: str | None = None,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        region: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> OnexEnvelopeV1:
        """A new event of this template: a fresh ``event_id`` and ``event_timestamp``, and the fields given."""
        varying: dict[str, Any] = {
            "payload": payload,  # copied below, as the constructor copies it
            "partition_key": partition_key,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "region": region,
            "metadata": metadata if metadata is not None else {},
        }
        if not self._plain(varying):
            fields = {name: self._fields[name] for name in self._fields_set if name not in varying}
            return OnexEnvelopeV1(**fields, **varying)
        fields = dict(self._fields)
        fields.update(varying, event_id=uuid4(), event_timestamp=_now(), source_instance=_instance)
        fields["payload"] = dict(payload)
        fields["metadata"] = dict(varying["metadata"])
        envelope = object.__new__(OnexEnvelopeV1)
        _set_attribute(envelope, "__dict__", fields)
        _set_attribute(envelope, "__pydantic_fields_set__", set(self._fields_set.union(varying)))
        _set_attribute(envelope, "__pydantic_extra__", None)
        _set_attribute(envelope, "__pydantic_private__", None)
        return envelope

    def child_of(
        self,
        parent: OnexEnvelopeV1,
        payload: dict[str, Any],
        *,
        partition_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> OnexEnvelopeV1:
        """A new event of this template in ``parent``'s chain, as :meth:`OnexEnvelopeV1.child_of` chains it (the
        template's environment is kept: it is the publisher's)."""
        return self.new(payload, partition_key=partition_key, metadata=metadata, **_chained_to(parent))

    @staticmethod
    def _plain(varying: dict[str, Any]) -> bool:
        """Whether the varying fields are of the types the constructor would accept as they are."""
        key = varying["partition_key"]
        region = varying["region"]
        metadata = varying["metadata"]
        payload = varying["payload"]
        return (
            type(payload) is dict
            and all(type(name) is str for name in payload)
            and (key is None or (type(key) is str and key != ""))
            and (region is None or type(region) is str)
            and all(
                value is None or type(value) is UUID for value in (varying["correlation_id"], varying["causation_id"])
            )
            and type(metadata) is dict
            and all(type(k) is str and type(v) is str for k, v in metadata.items())
        )
