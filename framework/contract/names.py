"""The name forms of the language, declared once: the models, the JSON Schema and the messages all use these."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
EVENT_NAME = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
MODEL_NAME = r"^[A-Z][A-Za-z0-9]*$"
PYTHON_REF = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"

#: What each pattern means, for messages that say what was allowed.
PATTERN_MEANING = {
    IDENTIFIER: "snake_case: lowercase letters, digits and '_', starting with a letter",
    EVENT_NAME: "kebab-case: lowercase letters and digits in words joined by '-', e.g. metadata-stamp-created",
    MODEL_NAME: "PascalCase: a capital letter, then letters and digits, e.g. StampRequest",
    PYTHON_REF: "'module.path:Name', e.g. nodes.metadata_stamping.handler:MetadataStampingHandler",
}

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER, max_length=64)]
EventName = Annotated[str, StringConstraints(pattern=EVENT_NAME, max_length=100)]
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME, max_length=100)]
PythonRef = Annotated[str, StringConstraints(pattern=PYTHON_REF, max_length=200)]

is_identifier = re.compile(IDENTIFIER).match
is_event_name = re.compile(EVENT_NAME).match
