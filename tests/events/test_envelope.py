from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from framework.errors import OnexError
from framework.events.envelope import EnvelopeError, EnvelopeTemplate, OnexEnvelopeV1


def make(**changes: Any) -> OnexEnvelopeV1:
    fields: dict[str, Any] = {
        "event_type": "metadata-stamp-created",
        "source_node_id": "metadata-stamping-1",
        "source_service": "metadata-stamping",
        "source_version": "1.2.3",
        "payload": {"file_hash": "ab" * 32, "size": 1024},
    }
    fields.update(changes)
    return OnexEnvelopeV1(**fields)


def test_defaults() -> None:
    before = datetime.now(UTC)
    env = make()
    assert env.envelope_version == "1.0"
    assert isinstance(env.event_id, UUID)
    assert env.event_id.version == 4
    assert env.event_version == 1
    assert env.event_timestamp.tzinfo is UTC
    assert before <= env.event_timestamp <= datetime.now(UTC)
    assert env.source_instance == f"{socket.gethostname()}-{os.getpid()}"
    assert env.correlation_id is None
    assert env.causation_id is None
    assert env.environment == "dev"
    assert env.region is None
    assert env.partition_key is None
    assert env.metadata == {}
    assert make().event_id != env.event_id


def test_frozen_and_extra_forbidden() -> None:
    env = make()
    with pytest.raises(ValidationError, match="frozen"):
        env.event_type = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make(surprise=1)


def test_naive_timestamp_rejected() -> None:
    with pytest.raises(ValidationError, match="event_timestamp") as info:
        make(event_timestamp=datetime(2024, 1, 1, 12, 0))
    assert "must be timezone-aware" in str(info.value)
    assert "2024-01-01T12:00:00" in str(info.value)


def test_aware_timestamp_normalised_to_utc() -> None:
    plus_two = datetime(2024, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    env = make(event_timestamp=plus_two)
    assert env.event_timestamp.tzinfo is UTC
    assert env.event_timestamp == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_version": 0}, "event_version"),
        ({"envelope_version": "2.0"}, "envelope_version"),
        ({"source_version": "1.2"}, "source_version"),
        ({"source_version": "v1.2.3"}, "source_version"),
        ({"event_type": ""}, "event_type"),
        ({"source_service": ""}, "source_service"),
        ({"environment": "Prod"}, "environment"),
        ({"partition_key": ""}, "partition_key"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"payload": [1, 2]}, "payload"),
        ({"correlation_id": "not-a-uuid"}, "correlation_id"),
    ],
)
def test_field_validation(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(**changes)
    assert {".".join(map(str, e["loc"])) for e in info.value.errors()} == {field}


def test_semver_forms_accepted() -> None:
    for version in ("0.0.0", "1.2.3-rc.1", "1.2.3+build.5", "10.20.30-alpha+001"):
        assert make(source_version=version).source_version == version


def test_json_round_trip() -> None:
    env = make(
        correlation_id=uuid4(),
        causation_id=uuid4(),
        region="eu-west-1",
        partition_key="ns-1",
        environment="prod",
        metadata={"trace": "abc"},
        payload={"nested": {"list": [1, 2.5, None, True, "ü"]}, "empty": {}},
    )
    raw = env.to_json()
    assert isinstance(raw, bytes)
    assert OnexEnvelopeV1.from_json(raw) == env
    assert OnexEnvelopeV1.from_json(raw.decode()) == env


def test_json_is_compact_utf8() -> None:
    raw = make(payload={"text": "grüße", "n": [1, 2]}).to_json()
    doc = json.loads(raw)
    assert raw == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert next(iter(doc)) == "envelope_version"
    assert doc["event_timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00\xffgarbage", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (b'"text"', "Input should be an object"),
        (b'{"event_type": "x"}', "source_node_id: Field required"),
        (b'{"event_type": "x"}', "payload: Field required"),
    ],
)
def test_from_json_poison(data: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        OnexEnvelopeV1.from_json(data)
    assert fragment in str(info.value)
    assert str(info.value).startswith("not a valid OnexEnvelopeV1")
    assert info.value.__cause__ is None
    assert not isinstance(info.value, ValidationError)


def test_from_json_names_bad_field_and_value() -> None:
    doc = json.loads(make().to_json())
    doc["event_version"] = 0
    with pytest.raises(EnvelopeError, match=r"event_version: Input should be greater than or equal to 1 \(got 0\)"):
        OnexEnvelopeV1.from_json(json.dumps(doc).encode())
    doc["event_version"] = 1
    doc["event_timestamp"] = "2024-01-01T00:00:00"
    with pytest.raises(EnvelopeError, match="event_timestamp: must be timezone-aware"):
        OnexEnvelopeV1.from_json(json.dumps(doc).encode())


def test_from_dict() -> None:
    env = make()
    assert OnexEnvelopeV1.from_dict(json.loads(env.to_json())) == env
    with pytest.raises(EnvelopeError, match="payload: Field required"):
        OnexEnvelopeV1.from_dict({"event_type": "x", "source_node_id": "", "source_service": "s"})


def test_envelope_error_is_an_onex_error() -> None:
    assert issubclass(EnvelopeError, OnexError)


def test_kafka_key_partition_key_first() -> None:
    assert make(partition_key="ns-1", correlation_id=uuid4()).kafka_key() == b"ns-1"


def test_kafka_key_correlation_second() -> None:
    correlation = uuid4()
    assert make(correlation_id=correlation).kafka_key() == str(correlation).encode()


def test_kafka_key_source_node_third() -> None:
    assert make().kafka_key() == b"metadata-stamping-1"


def test_kafka_key_event_id_last() -> None:
    env = make(source_node_id="")
    assert env.kafka_key() == str(env.event_id).encode()


def test_kafka_key_is_utf8() -> None:
    assert make(partition_key="straße").kafka_key() == "straße".encode()


def test_child_of_chain() -> None:
    root = make(environment="prod", region="eu", partition_key="root-key")
    child = OnexEnvelopeV1.child_of(
        root,
        event_type="workflow-step-completed",
        payload={"step": 1},
        source_node_id="orchestrator-1",
        source_service="bridge-orchestrator",
        source_version="0.1.0",
    )
    # A root has no correlation id: its own event id starts the chain.
    assert child.correlation_id == root.event_id
    assert child.causation_id == root.event_id
    assert (child.environment, child.region) == ("prod", "eu")
    assert child.partition_key is None
    assert child.kafka_key() == str(root.event_id).encode()
    assert child.event_id != root.event_id
    assert child.source_node_id == "orchestrator-1"

    grandchild = OnexEnvelopeV1.child_of(
        child,
        event_type="workflow-completed",
        event_version=2,
        payload={},
        source_node_id="orchestrator-1",
        source_service="bridge-orchestrator",
        source_version="0.1.0",
        partition_key="wf-9",
        metadata={"k": "v"},
    )
    assert grandchild.correlation_id == root.event_id
    assert grandchild.causation_id == child.event_id
    assert (grandchild.event_version, grandchild.partition_key, grandchild.metadata) == (2, "wf-9", {"k": "v"})


def test_child_of_keeps_existing_correlation() -> None:
    correlation = uuid4()
    parent = make(correlation_id=correlation)
    child = OnexEnvelopeV1.child_of(
        parent, event_type="x", payload={}, source_node_id="n", source_service="s", source_version="1.0.0"
    )
    assert child.correlation_id == correlation
    assert child.causation_id == parent.event_id


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(st.text(), json_values, max_size=8),
    metadata=st.dictionaries(st.text(), st.text(), max_size=3),
    partition_key=st.none() | st.text(min_size=1),
    timestamp=st.datetimes(timezones=st.just(UTC)),
)
def test_round_trip_arbitrary_payloads(
    payload: dict[str, Any], metadata: dict[str, str], partition_key: str | None, timestamp: datetime
) -> None:
    env = make(payload=payload, metadata=metadata, partition_key=partition_key, event_timestamp=timestamp)
    assert OnexEnvelopeV1.from_json(env.to_json()) == env


# --- EnvelopeTemplate ---------------------------------------------------------------------------------------------

TEMPLATE_FIELDS: dict[str, Any] = {
    "event_type": "metadata-stamp-created",
    "event_version": 2,
    "source_node_id": "metadata-stamping@host-1",
    "source_service": "metadata-stamping",
    "source_version": "1.2.3",
    "environment": "prod",
}


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(st.text(), json_values, max_size=8),
    metadata=st.none() | st.dictionaries(st.text(), st.text(), max_size=3),
    partition_key=st.none() | st.text(min_size=1),
    chained=st.booleans(),
    region=st.none() | st.text(max_size=5),
)
def test_template_builds_what_the_constructor_builds(
    payload: dict[str, Any],
    metadata: dict[str, str] | None,
    partition_key: str | None,
    chained: bool,
    region: str | None,
) -> None:
    ids: dict[str, Any] = {"correlation_id": uuid4(), "causation_id": uuid4()} if chained else {}
    before = datetime.now(UTC)
    envelope = EnvelopeTemplate(**TEMPLATE_FIELDS).new(
        payload, partition_key=partition_key, metadata=metadata, region=region, **ids
    )
    constructed = OnexEnvelopeV1(
        **TEMPLATE_FIELDS,
        payload=payload,
        partition_key=partition_key,
        metadata=metadata or {},
        region=region,
        **ids,
        event_id=envelope.event_id,  # the two fields that are new for every event
        event_timestamp=envelope.event_timestamp,
    )
    assert envelope == constructed
    assert envelope.to_json() == constructed.to_json()
    assert envelope.source_instance == f"{socket.gethostname()}-{os.getpid()}"
    assert envelope.event_id.version == 4
    assert before <= envelope.event_timestamp <= datetime.now(UTC)
    assert envelope.event_timestamp.tzinfo is UTC
    assert OnexEnvelopeV1.from_json(envelope.to_json()) == envelope


def test_a_forked_process_is_another_instance_for_templates_too() -> None:
    template = EnvelopeTemplate(**TEMPLATE_FIELDS)  # built before the fork, as a pre-forking server would
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits at once
        try:
            instances = [template.new({}).source_instance, make().source_instance, str(os.getpid())]
            os.write(write, json.dumps(instances).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        from_template, from_constructor, pid = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert from_template == from_constructor == f"{socket.gethostname()}-{pid}"
    assert pid != str(os.getpid())
    assert template.new({}).source_instance == f"{socket.gethostname()}-{os.getpid()}"


def test_template_events_are_distinct_frozen_and_copy_their_payload() -> None:
    template = EnvelopeTemplate(**TEMPLATE_FIELDS)
    payload = {"file_hash": "ab" * 32}
    first, second = template.new(payload), template.new(payload)
    assert first.event_id != second.event_id
    payload["file_hash"] = "changed"  # the caller's dict, changed afterwards
    assert first.payload == {"file_hash": "ab" * 32}
    with pytest.raises(ValidationError):
        first.payload = {}  # type: ignore[misc]
    assert first.model_copy(update={"region": "eu"}).region == "eu"


@pytest.mark.parametrize(
    ("varying", "field"),
    [
        ({"partition_key": ""}, "partition_key"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"correlation_id": "not-a-uuid"}, "correlation_id"),
        ({"region": 5}, "region"),
    ],
)
def test_template_refuses_what_the_constructor_refuses(varying: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        EnvelopeTemplate(**TEMPLATE_FIELDS).new({"a": 1}, **varying)
    assert field in str(refused.value)


def test_template_checks_its_fields_once() -> None:
    with pytest.raises(ValidationError, match="source_version"):
        EnvelopeTemplate(**{**TEMPLATE_FIELDS, "source_version": "one"})


def test_template_accepts_what_the_constructor_coerces() -> None:
    correlation = uuid4()
    envelope = EnvelopeTemplate(**TEMPLATE_FIELDS).new(
        {"a": 1},
        correlation_id=str(correlation),  # type: ignore[arg-type]
    )
    assert envelope.correlation_id == correlation


def test_template_child_of_chains_as_the_envelope_does() -> None:
    parent = make(correlation_id=uuid4(), region="eu-west", environment="staging")
    child = EnvelopeTemplate(**TEMPLATE_FIELDS).child_of(parent, {"a": 1}, partition_key="k")
    fields = {k: v for k, v in TEMPLATE_FIELDS.items() if k != "environment"}
    expected = OnexEnvelopeV1.child_of(parent, payload={"a": 1}, partition_key="k", **fields)
    assert (
        (child.correlation_id, child.causation_id, child.region)
        == (
            expected.correlation_id,
            expected.causation_id,
            expected.region,
        )
        == (parent.correlation_id, parent.event_id, "eu-west")
    )
    assert child.environment == "prod"  # the publisher's, where child_of keeps the parent's
    assert expected.environment == "staging"
