"""The events layer: the envelope every event travels in, topic naming, and the CloudEvents Kafka binding.

Imports only ``framework.errors`` and third-party libraries; ports and adapters build on it (ARCHITECTURE §2, §5).
"""

from framework.events.cloudevents import (
    JSON_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    binary_headers,
    ce_source,
    ce_type,
    decode_message,
)
from framework.events.envelope import EnvelopeError, OnexEnvelopeV1
from framework.events.topics import (
    EVENT_NAME_PATTERN,
    NAME_PART_PATTERN,
    TopicClass,
    TopicName,
    TopicNameError,
    is_valid_event_name,
)

__all__ = [
    "EVENT_NAME_PATTERN",
    "JSON_CONTENT_TYPE",
    "NAME_PART_PATTERN",
    "STRUCTURED_CONTENT_TYPE",
    "EnvelopeError",
    "OnexEnvelopeV1",
    "TopicClass",
    "TopicName",
    "TopicNameError",
    "binary_headers",
    "ce_source",
    "ce_type",
    "decode_message",
    "is_valid_event_name",
]
