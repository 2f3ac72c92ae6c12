"""Topic naming: ``{env}.{tenant}.{context}.{class}.{event-name}.v{version}``.

Example: ``dev.omninode_bridge.onex.evt.metadata-stamp-created.v1``. Every part is validated on construction and
on parsing, so a :class:`TopicName` that exists is always a legal Kafka topic and ``parse(str(t)) == t``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from framework.errors import OnexError

__all__ = [
    "EVENT_NAME_PATTERN",
    "MAX_TOPIC_LENGTH",
    "NAME_PART_PATTERN",
    "TOPIC_FORM",
    "TopicClass",
    "TopicName",
    "TopicNameError",
    "is_valid_event_name",
]

#: env, tenant and context: snake_case, starting with a letter.
NAME_PART_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
#: Event names as the event catalogs declare them: kebab-case, starting with a letter.
EVENT_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_VERSION_PATTERN = re.compile(r"v([1-9][0-9]*)")
TOPIC_FORM = "{env}.{tenant}.{context}.{class}.{event-name}.v{version}"
_EXAMPLE = "dev.omninode_bridge.onex.evt.metadata-stamp-created.v1"
# Kafka's own limit; topic names are also file names on the broker.
MAX_TOPIC_LENGTH = 249


class TopicNameError(OnexError):
    """A topic name, or one of its parts, does not follow the naming rule."""


class TopicClass(StrEnum):
    """What a topic carries."""

    EVT = "evt"  # facts that happened
    CMD = "cmd"  # requests for a node to act
    QRS = "qrs"  # queries and their replies
    DLT = "dlt"  # dead letters: messages that could not be handled


def is_valid_event_name(name: str) -> bool:
    """Whether ``name`` is a legal kebab-case event name (shared with the contract validator)."""
    return EVENT_NAME_PATTERN.fullmatch(name) is not None


def _part_error(what: str, value: object, rule: str, topic: str | None) -> TopicNameError:
    where = f" in topic {topic!r}" if topic is not None else ""
    return TopicNameError(f"bad {what} {value!r}{where}: {rule}; topics have the form {TOPIC_FORM}, e.g. {_EXAMPLE}")


_SNAKE_RULE = "must match [a-z][a-z0-9_]* (a lowercase letter, then lowercase letters, digits or '_')"
_KEBAB_RULE = "must be kebab-case, matching [a-z][a-z0-9]*(-[a-z0-9]+)*"
_CLASS_RULE = "must be one of " + ", ".join(c.value for c in TopicClass)


@dataclass(frozen=True, slots=True)
class TopicName:
    """One topic name, validated part by part."""

    env: str
    tenant: str
    context: str
    topic_class: TopicClass
    event_name: str
    version: int

    def __post_init__(self) -> None:
        self._validate(None)

    def _validate(self, topic: str | None) -> None:
        for what in ("env", "tenant", "context"):
            value = getattr(self, what)
            if not isinstance(value, str) or NAME_PART_PATTERN.fullmatch(value) is None:
                raise _part_error(what, value, _SNAKE_RULE, topic)
        if not isinstance(self.topic_class, TopicClass):
            try:
                # Accepting the plain string keeps call sites short; the stored value is always the enum.
                object.__setattr__(self, "topic_class", TopicClass(self.topic_class))
            except ValueError:
                raise _part_error("class", self.topic_class, _CLASS_RULE, topic) from None
        if not isinstance(self.event_name, str) or not is_valid_event_name(self.event_name):
            raise _part_error("event name", self.event_name, _KEBAB_RULE, topic)
        if type(self.version) is not int or self.version < 1:
            raise _part_error("version", self.version, "must be an integer >= 1", topic)
        if len(text := str(self)) > MAX_TOPIC_LENGTH:
            raise TopicNameError(
                f"topic {text!r} is {len(text)} characters long; Kafka allows at most {MAX_TOPIC_LENGTH}"
            )

    def __str__(self) -> str:
        return f"{self.env}.{self.tenant}.{self.context}.{self.topic_class.value}.{self.event_name}.v{self.version}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``text``; raises :class:`TopicNameError` naming the first bad part."""
        parts = text.split(".")
        if len(parts) != 6:
            raise TopicNameError(
                f"topic {text!r} has {len(parts)} dot-separated parts, expected 6: {TOPIC_FORM}, e.g. {_EXAMPLE}"
            )
        env, tenant, context, topic_class, event_name, version_text = parts
        if (match := _VERSION_PATTERN.fullmatch(version_text)) is None:
            rule = "must be 'v' followed by an integer >= 1 without leading zeros, e.g. v1"
            raise _part_error("version", version_text, rule, text)
        try:
            parsed_class = TopicClass(topic_class)
        except ValueError:
            raise _part_error("class", topic_class, _CLASS_RULE, text) from None
        # Build without __post_init__ so that errors quote the whole topic being parsed.
        topic = object.__new__(cls)
        for name, value in zip(
            ("env", "tenant", "context", "topic_class", "event_name", "version"),
            (env, tenant, context, parsed_class, event_name, int(match.group(1))),
            strict=True,
        ):
            object.__setattr__(topic, name, value)
        topic._validate(text)
        return topic

    def with_class(self, topic_class: TopicClass) -> TopicName:
        """The same event's topic of another class (e.g. the ``cmd`` topic next to an ``evt`` one)."""
        return dataclasses.replace(self, topic_class=topic_class)

    def dead_letter(self) -> TopicName:
        """Where messages from this topic go when they cannot be handled; a ``dlt`` topic is its own."""
        return self if self.topic_class is TopicClass.DLT else self.with_class(TopicClass.DLT)
