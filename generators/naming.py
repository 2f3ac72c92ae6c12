"""Names in generated code: Python identifiers derived from contract names, never clashing with keywords."""

from __future__ import annotations

import keyword
import re

#: Attributes of pydantic's BaseModel that a field must not shadow (pydantic warns when one does).
_RESERVED_FIELDS = frozenset(
    {"construct", "copy", "dict", "fields", "from_orm", "json", "parse_file", "parse_obj", "parse_raw", "schema"}
    | {"schema_json", "update_forward_refs", "validate"}
)


def pascal(name: str) -> str:
    """``metadata_stamping`` / ``stamp-requested`` → ``MetadataStamping`` / ``StampRequested``."""
    parts = re.split(r"[^A-Za-z0-9]+", name)
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


def snake(name: str) -> str:
    """``stamp-requested`` / ``fileSize`` / ``File Path`` → ``stamp_requested`` / ``file_size`` / ``file_path``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    if not text:
        text = "field"
    if text[0].isdigit():
        text = f"f_{text}"
    return text


def field_name(prop: str) -> str:
    """A Python attribute for a JSON property: snake_case, and never a keyword, ``model_*`` or a BaseModel name."""
    name = snake(prop)
    if keyword.iskeyword(name) or name.startswith("model_") or name in _RESERVED_FIELDS:
        name += "_"
    return name
