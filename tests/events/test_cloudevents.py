from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.events import cloudevents
from framework.events.cloudevents import binary_headers, ce_source, decode_message
from framework.events.envelope import EnvelopeError, OnexEnvelopeV1

EVENT_ID = UUID("6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
CORRELATION = UUID("11111111-2222-4333-8444-555555555555")
CAUSATION = UUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
WHEN = datetime(2024, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)
Headers = list[tuple[str, bytes]]


def make(**changes: Any) -> OnexEnvelopeV1:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "metadata-stamp-created",
        "event_timestamp": WHEN,
        "source_node_id": "stamper-1",
        "source_service": "metadata-stamping",
        "source_version": "1.0.0",
        "payload": {"file_hash": "ab" * 32},
    }
    fields.update(changes)
    return OnexEnvelopeV1(**fields)


def ce_headers(**attrs: str) -> Headers:
    return [(f"ce_{k}", v.encode()) for k, v in attrs.items()]


def test_binary_headers_exact() -> None:
    env = make(correlation_id=CORRELATION, causation_id=CAUSATION, partition_key="ns-1", event_version=2)
    assert binary_headers(env) == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
        ("ce_source", b"/omninode/metadata-stamping/stamper-1"),
        ("ce_type", b"omninode.metadata-stamp-created.v2"),
        ("ce_time", b"2024-05-17T08:30:15.123456Z"),
        ("content-type", b"application/json"),
        ("ce_correlationid", b"11111111-2222-4333-8444-555555555555"),
        ("ce_causationid", b"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
        ("ce_partitionkey", b"ns-1"),
    ]


def test_binary_headers_minimal() -> None:
    headers = dict(binary_headers(make(event_timestamp=datetime(2024, 1, 1, tzinfo=UTC))))
    assert set(headers) == {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"}
    assert headers["ce_time"] == b"2024-01-01T00:00:00.000000Z"


def test_ce_source_forms() -> None:
    assert ce_source(make(source_node_id="")) == "/omninode/metadata-stamping"
    assert ce_source(make(source_service="a/b c", source_node_id="n:1")) == "/omninode/a%2Fb%20c/n%3A1"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"correlation_id": CORRELATION, "causation_id": CAUSATION, "partition_key": "ns-1", "region": "eu"},
        {"source_node_id": "", "metadata": {"k": "v"}, "environment": "prod"},
    ],
)
def test_own_message_round_trip(changes: dict[str, Any]) -> None:
    env = make(**changes)
    assert decode_message(env.to_json(), binary_headers(env)) == env
    assert decode_message(env.to_json(), []) == env  # the value alone is authoritative


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"correlation_id": CORRELATION, "causation_id": CAUSATION, "partition_key": "ns-1", "region": "eu"},
        {"source_node_id": "", "metadata": {"k": "v"}, "environment": "prod"},
    ],
)
def test_own_message_decodes_via_the_fast_path(changes: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own message is the envelope of its value, exactly as before the fast path (``from_json`` of the value),
    without building the CloudEvents attributes: only content-type is read."""
    env = make(**changes)
    value, headers = env.to_json(), binary_headers(env)
    before = OnexEnvelopeV1.from_json(value)

    def not_on_the_fast_path(*args: Any) -> Any:
        raise AssertionError("the CloudEvents headers were decoded for our own message")

    monkeypatch.setattr(cloudevents, "_ce_attributes", not_on_the_fast_path)
    monkeypatch.setattr(cloudevents, "_from_binary", not_on_the_fast_path)
    monkeypatch.setattr(cloudevents, "_from_structured", not_on_the_fast_path)
    for variant in (
        headers,
        [(name.upper(), raw) for name, raw in headers],
        [],
        [("content-type", b"application/json; charset=utf-8")],
        # the value is authoritative: headers that contradict it, or cannot even be read, change nothing
        [*headers, ("ce_id", b"something-else"), ("ce_subject", b"\xff")],
    ):
        decoded = decode_message(value, variant)
        assert decoded == before == env
        assert decoded.to_json() == value


def test_header_names_are_case_insensitive() -> None:
    env = make()
    headers = [(name.upper(), value) for name, value in binary_headers(env)]
    assert decode_message(env.to_json(), headers) == env


# A structured-mode event as a foreign producer (a storage service) might send it.
STORAGE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "type": "com.example.storage.object.created",
    "source": "https://storage.example.com/buckets/photos",
    "id": "evt-7f3c-2b",
    "time": "2024-05-17T10:30:15.123456789+02:00",
    "subject": "photos/cat.jpg",
    "datacontenttype": "application/json",
    "dataschema": "https://storage.example.com/schemas/object-created.json",
    "correlationid": "11111111-2222-4333-8444-555555555555",
    "exampleretries": 3,
    "data": {"bucket": "photos", "key": "cat.jpg", "size": 48213},
}


def structured(doc: dict[str, Any]) -> tuple[bytes, Headers]:
    return json.dumps(doc).encode(), [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def test_structured_mode_foreign_event() -> None:
    env = decode_message(*structured(STORAGE_EVENT))
    assert env.event_type == "com.example.storage.object.created"
    assert env.event_version == 1
    assert env.source_service == env.source_node_id == "https://storage.example.com/buckets/photos"
    assert env.source_version == "0.0.0"
    assert env.event_timestamp == datetime(2024, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)
    assert env.correlation_id == CORRELATION
    assert env.causation_id is None
    assert env.payload == {"bucket": "photos", "key": "cat.jpg", "size": 48213}
    assert env.metadata == {
        "ce_id": "evt-7f3c-2b",
        "ce_subject": "photos/cat.jpg",
        "ce_dataschema": "https://storage.example.com/schemas/object-created.json",
        "ce_exampleretries": "3",
    }
    assert env.environment == "dev"


def test_foreign_ids_are_deterministic() -> None:
    first = decode_message(*structured(STORAGE_EVENT))
    again = decode_message(*structured(STORAGE_EVENT))
    other_source = decode_message(*structured({**STORAGE_EVENT, "source": "https://elsewhere.example"}))
    assert first.event_id == again.event_id
    assert first.event_id.version == 5
    assert other_source.event_id != first.event_id
    non_uuid = decode_message(*structured({**STORAGE_EVENT, "correlationid": "req-42"}))
    assert non_uuid.correlation_id is not None
    assert (
        non_uuid.correlation_id
        == decode_message(*structured({**STORAGE_EVENT, "correlationid": "req-42"})).correlation_id
    )
    assert non_uuid.metadata["ce_correlationid"] == "req-42"


def test_structured_uuid_id_is_kept() -> None:
    env = decode_message(*structured({**STORAGE_EVENT, "id": str(EVENT_ID)}))
    assert env.event_id == EVENT_ID
    assert "ce_id" not in env.metadata


def test_structured_our_type_and_source_are_mapped() -> None:
    doc = {
        **STORAGE_EVENT,
        "type": "omninode.metadata-stamp-created.v3",
        "source": "/omninode/metadata-stamping/stamper-1",
        "partitionkey": "ns-1",
        "causationid": str(CAUSATION),
    }
    env = decode_message(*structured(doc), environment="prod")
    assert (env.event_type, env.event_version) == ("metadata-stamp-created", 3)
    assert (env.source_service, env.source_node_id) == ("metadata-stamping", "stamper-1")
    assert env.partition_key == "ns-1"
    assert env.causation_id == CAUSATION
    assert env.environment == "prod"


def test_structured_wrapping_our_envelope() -> None:
    env = make(correlation_id=CORRELATION)
    doc = {"specversion": "1.0", "id": str(EVENT_ID), "source": ce_source(env), "type": "omninode.x.v1"}
    assert decode_message(*structured({**doc, "data": json.loads(env.to_json())})) == env


@pytest.mark.parametrize(
    ("changes", "payload", "metadata"),
    [
        ({"data": [1, 2]}, {"data": [1, 2]}, {}),
        ({"data": None}, {"data": None}, {}),
        ({"data": "<obj/>", "datacontenttype": "text/xml"}, {"data": "<obj/>"}, {"ce_datacontenttype": "text/xml"}),
        (
            {"data_base64": "AAEC", "datacontenttype": "image/png"},
            {"data_base64": "AAEC"},
            {"ce_datacontenttype": "image/png"},
        ),
        ({}, {}, {}),
    ],
)
def test_structured_data_forms(changes: dict[str, Any], payload: dict[str, Any], metadata: dict[str, str]) -> None:
    doc = {k: v for k, v in STORAGE_EVENT.items() if k not in {"data", "datacontenttype", "subject", "dataschema"}}
    doc.pop("exampleretries")
    env = decode_message(*structured({**doc, **changes}))
    assert env.payload == payload
    assert env.metadata == {"ce_id": "evt-7f3c-2b", **metadata}


def test_structured_without_time_uses_now() -> None:
    doc = {k: v for k, v in STORAGE_EVENT.items() if k != "time"}
    before = datetime.now(UTC)
    assert before <= decode_message(*structured(doc)).event_timestamp <= datetime.now(UTC)


def foreign_binary_headers(**extra: str) -> Headers:
    return [
        *ce_headers(
            specversion="1.0",
            id="order-991",
            source="urn:shop:orders",
            type="com.example.order.placed",
            time="2024-05-17T08:30:15Z",
            **extra,
        ),
        ("content-type", b"application/json"),
    ]


def test_foreign_binary_mode() -> None:
    headers = foreign_binary_headers(subject="order/991", partitionkey="customer-7")
    env = decode_message(b'{"order": 991, "total": 12.5}', headers, environment="staging")
    assert env.event_type == "com.example.order.placed"
    assert env.source_service == env.source_node_id == "urn:shop:orders"
    assert env.event_timestamp == datetime(2024, 5, 17, 8, 30, 15, tzinfo=UTC)
    assert env.payload == {"order": 991, "total": 12.5}
    assert env.partition_key == "customer-7"
    assert env.kafka_key() == b"customer-7"
    assert env.environment == "staging"
    assert env.metadata == {"ce_id": "order-991", "ce_subject": "order/991"}


@pytest.mark.parametrize(
    ("value", "content_type", "payload", "metadata"),
    [
        (b"[1, 2]", b"application/json", {"data": [1, 2]}, {}),
        (b'{"a": 1}', b"application/vnd.example+json", {"a": 1}, {}),
        (
            b"hello",
            b"text/plain; charset=utf-8",
            {"data": "hello"},
            {"ce_datacontenttype": "text/plain; charset=utf-8"},
        ),
        (
            b"\x00\xff",
            b"application/octet-stream",
            {"data_base64": "AP8="},
            {"ce_datacontenttype": "application/octet-stream"},
        ),
        (b"\xff\xfe", b"text/plain", {"data_base64": "//4="}, {"ce_datacontenttype": "text/plain"}),
        (b"", b"application/json", {}, {}),
    ],
)
def test_foreign_binary_data_forms(
    value: bytes, content_type: bytes, payload: dict[str, Any], metadata: dict[str, str]
) -> None:
    headers = [*foreign_binary_headers()[:-1], ("content-type", content_type)]
    env = decode_message(value, headers)
    assert env.payload == payload
    assert env.metadata == {"ce_id": "order-991", **metadata}
    if "data_base64" in payload:
        assert base64.b64decode(payload["data_base64"]) == value


def test_foreign_binary_null_value() -> None:
    assert decode_message(None, foreign_binary_headers()).payload == {}


POISON: list[tuple[bytes | None, Headers, str]] = [
    (random.Random(7).randbytes(64) + b"\xff", [], "Invalid JSON"),
    (b"[1, 2, 3]", [], "Input should be an object"),
    (b"", [], "Invalid JSON"),
    (None, [], "Invalid JSON"),
    (b'{"event_type": "x", "payload": {}}', [], "source_node_id: Field required"),
    (b'{"hello": "world"}', [], "Extra inputs are not permitted"),
    # our headers promise an envelope, so a value that is not one is poison, not a foreign event
    (b'{"hello": "world"}', binary_headers(make()), "not a valid OnexEnvelopeV1"),
    (b"", binary_headers(make()), "Invalid JSON"),
    # an envelope with a defect stays an envelope error even under foreign headers
    (b'{"envelope_version": "1.0"}', foreign_binary_headers(), "event_type: Field required"),
    (b"{not json", foreign_binary_headers(), "binary-mode CloudEvent: the value is not valid JSON"),
    (b"{}", [h for h in foreign_binary_headers() if h[0] != "ce_type"], "header ce_type is missing"),
    (b"{}", [*foreign_binary_headers()[1:], ("ce_specversion", b"0.3")], "header ce_specversion is '0.3'"),
    (b"{}", [*foreign_binary_headers(), ("ce_time", b"yesterday")], "header ce_time must be an RFC 3339"),
    (b"{}", [*foreign_binary_headers(), ("ce_time", b"2024-05-17T08:30:15")], "with an offset"),
    (b"{}", [*foreign_binary_headers(), ("ce_subject", b"\xff")], "header 'ce_subject' is not UTF-8"),
    (b"{}", [("content-type", b"application/cloudevents-batch+json")], "is not supported"),
]


@pytest.mark.parametrize(("value", "headers", "fragment"), POISON)
def test_poison_messages(value: bytes | None, headers: Headers, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_message(value, headers)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([STORAGE_EVENT], "must be a JSON object, got list"),
        ({k: v for k, v in STORAGE_EVENT.items() if k != "id"}, "attribute 'id' is missing"),
        ({k: v for k, v in STORAGE_EVENT.items() if k != "specversion"}, "attribute 'specversion' is missing"),
        ({**STORAGE_EVENT, "source": ""}, "attribute 'source' must be a non-empty string"),
        ({**STORAGE_EVENT, "type": 7}, "attribute 'type' must be a non-empty string, got 7"),
        ({**STORAGE_EVENT, "specversion": "0.3"}, "only '1.0' is supported"),
        ({**STORAGE_EVENT, "time": 1715934615}, "attribute 'time' must be an RFC 3339 timestamp"),
        ({**STORAGE_EVENT, "data_base64": "AAEC"}, "both 'data' and 'data_base64'"),
        ({**STORAGE_EVENT, "data": {"envelope_version": "1.0"}}, "not a valid OnexEnvelopeV1"),
        ({**STORAGE_EVENT, "partitionkey": ""}, "partition_key"),
    ],
)
def test_structured_poison(doc: Any, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_message(*structured(doc))
    assert fragment in str(info.value)


def test_structured_poison_bytes() -> None:
    with pytest.raises(EnvelopeError, match="structured-mode CloudEvent: the value is not valid JSON"):
        decode_message(b"\x00garbage", [("content-type", b"application/cloudevents+json")])
    doc = {k: v for k, v in STORAGE_EVENT.items() if k != "data"}
    with pytest.raises(EnvelopeError, match="'data_base64' is not valid base64"):
        decode_message(*structured({**doc, "data_base64": "***"}))


def test_rfc3339_variants() -> None:
    for text, expected in [
        ("2024-05-17t08:30:15z", datetime(2024, 5, 17, 8, 30, 15, tzinfo=UTC)),
        ("2024-05-17T03:30:15-05:00", datetime(2024, 5, 17, 8, 30, 15, tzinfo=UTC)),
    ]:
        env = decode_message(*structured({**STORAGE_EVENT, "time": text}))
        assert env.event_timestamp == expected
        assert env.event_timestamp.utcoffset() == timedelta(0)


@settings(max_examples=100, deadline=None)
@given(
    service=st.text(min_size=1),
    node=st.text(),
    event_type=st.text(min_size=1),
    version=st.integers(min_value=1, max_value=10**6),
    timestamp=st.datetimes(timezones=st.just(UTC)),
    correlation=st.none() | st.uuids(),
    causation=st.none() | st.uuids(),
    partition_key=st.none() | st.text(min_size=1),
)
def test_headers_alone_describe_the_event(
    service: str,
    node: str,
    event_type: str,
    version: int,
    timestamp: datetime,
    correlation: UUID | None,
    causation: UUID | None,
    partition_key: str | None,
) -> None:
    env = make(
        source_service=service,
        source_node_id=node,
        event_type=event_type,
        event_version=version,
        event_timestamp=timestamp,
        correlation_id=correlation,
        causation_id=causation,
        partition_key=partition_key,
    )
    # As a CloudEvents router would restate our binary-mode message in structured mode, data being the payload.
    doc: dict[str, Any] = {k.removeprefix("ce_"): v.decode() for k, v in binary_headers(env) if k.startswith("ce_")}
    back = decode_message(*structured({**doc, "data": env.payload}))
    for field in ("event_id", "event_type", "event_version", "event_timestamp", "source_service", "source_node_id"):
        assert getattr(back, field) == getattr(env, field)
    assert (back.correlation_id, back.causation_id, back.partition_key) == (correlation, causation, partition_key)
    assert back.payload == env.payload
    assert back.metadata == {}
