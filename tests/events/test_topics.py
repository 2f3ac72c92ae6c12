from __future__ import annotations

import pytest

from framework.errors import OnexError
from framework.events.topics import (
    EVENT_NAME_PATTERN,
    MAX_TOPIC_LENGTH,
    TopicClass,
    TopicName,
    TopicNameError,
    is_valid_event_name,
)

EXAMPLE = "dev.omninode_bridge.onex.evt.metadata-stamp-created.v1"


def make(**changes: object) -> TopicName:
    parts: dict[str, object] = {
        "env": "dev",
        "tenant": "omninode_bridge",
        "context": "onex",
        "topic_class": TopicClass.EVT,
        "event_name": "metadata-stamp-created",
        "version": 1,
    }
    parts.update(changes)
    return TopicName(**parts)  # type: ignore[arg-type]


def test_build_and_str() -> None:
    assert str(make()) == EXAMPLE


def test_parse_round_trip() -> None:
    topic = TopicName.parse(EXAMPLE)
    assert topic == make()
    assert topic.topic_class is TopicClass.EVT
    assert topic.version == 1
    assert str(TopicName.parse("prod.t1.ctx_2.qrs.a1-b2.v12")) == "prod.t1.ctx_2.qrs.a1-b2.v12"


@pytest.mark.parametrize("cls", list(TopicClass))
def test_every_class_parses(cls: TopicClass) -> None:
    text = f"dev.omninode_bridge.onex.{cls.value}.x.v3"
    assert TopicName.parse(text) == make(topic_class=cls, event_name="x", version=3)


def test_class_as_plain_string_is_coerced() -> None:
    assert make(topic_class="cmd").topic_class is TopicClass.CMD


def test_dead_letter() -> None:
    dlt = make().dead_letter()
    assert str(dlt) == "dev.omninode_bridge.onex.dlt.metadata-stamp-created.v1"
    assert dlt.dead_letter() is dlt
    assert make().with_class(TopicClass.CMD).topic_class is TopicClass.CMD


def test_error_is_an_onex_error() -> None:
    assert issubclass(TopicNameError, OnexError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Dev.omninode_bridge.onex.evt.x.v1", "bad env 'Dev'"),
        ("dev.omninode-bridge.onex.evt.x.v1", "bad tenant 'omninode-bridge'"),
        ("dev.omninode_bridge.1onex.evt.x.v1", "bad context '1onex'"),
        ("dev.omninode_bridge.onex.event.x.v1", "bad class 'event'"),
        ("dev.omninode_bridge.onex.evt.Stamp_Created.v1", "bad event name 'Stamp_Created'"),
        ("dev.omninode_bridge.onex.evt.stamp--created.v1", "bad event name 'stamp--created'"),
        ("dev.omninode_bridge.onex.evt.stamp-created-.v1", "bad event name 'stamp-created-'"),
        ("dev.omninode_bridge.onex.evt.x.v0", "bad version 'v0'"),
        ("dev.omninode_bridge.onex.evt.x.v01", "bad version 'v01'"),
        ("dev.omninode_bridge.onex.evt.x.1", "bad version '1'"),
        ("dev.omninode_bridge.onex.evt.x.vx", "bad version 'vx'"),
        ("dev..onex.evt.x.v1", "bad tenant ''"),
    ],
)
def test_parse_names_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(TopicNameError) as info:
        TopicName.parse(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message
    assert "{env}.{tenant}.{context}.{class}.{event-name}.v{version}" in message


def test_class_error_lists_allowed_classes() -> None:
    with pytest.raises(TopicNameError, match="must be one of evt, cmd, qrs, dlt"):
        TopicName.parse("dev.t.c.evnt.x.v1")


@pytest.mark.parametrize("text", ["dev.t.c.evt.x", "dev.t.c.evt.x.v1.extra", "", "dev"])
def test_parse_wrong_number_of_parts(text: str) -> None:
    with pytest.raises(TopicNameError, match="dot-separated parts, expected 6"):
        TopicName.parse(text)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"env": "DEV"}, "bad env 'DEV'"),
        ({"tenant": "a.b"}, "bad tenant 'a.b'"),
        ({"context": ""}, "bad context ''"),
        ({"topic_class": "nope"}, "bad class 'nope'"),
        ({"event_name": "stamp created"}, "bad event name 'stamp created'"),
        ({"version": 0}, "bad version 0"),
        ({"version": True}, "bad version True"),
        ({"version": "1"}, "bad version '1'"),
    ],
)
def test_constructor_validates(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(TopicNameError, match="must") as info:
        make(**changes)
    assert fragment in str(info.value)


def test_length_limit() -> None:
    long_name = "a" * (MAX_TOPIC_LENGTH - len("dev.omninode_bridge.onex.evt..v1"))
    assert len(str(make(event_name=long_name))) == MAX_TOPIC_LENGTH
    with pytest.raises(TopicNameError, match="250 characters long; Kafka allows at most 249"):
        make(event_name=long_name + "b")
    with pytest.raises(TopicNameError, match="Kafka allows at most 249"):
        TopicName.parse(str(make(event_name=long_name)).replace(".v1", ".v10"))


def test_kafka_legal_characters_only() -> None:
    # Every validated part is a subset of Kafka's [a-zA-Z0-9._-].
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert set(str(make(env="a_1", event_name="b-2-c"))) <= allowed


@pytest.mark.parametrize("name", ["x", "metadata-stamp-created", "a1-b2-3c", "node-heartbeat"])
def test_valid_event_names(name: str) -> None:
    assert is_valid_event_name(name)
    assert EVENT_NAME_PATTERN.fullmatch(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "a--b", "A", "a_b", "1a", "a.b", "a b", "ä"])
def test_invalid_event_names(name: str) -> None:
    assert not is_valid_event_name(name)
