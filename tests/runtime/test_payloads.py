"""Payload validators: compiled once, $defs among sibling models, formats enforced, errors name paths."""

from __future__ import annotations

import pytest

from framework.errors import PayloadInvalid, PoisonMessage
from framework.runtime.payloads import PayloadValidator

MODELS = {
    "Item": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "format": "uuid"}}},
    "Order": {
        "type": "object",
        "required": ["items", "total"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}, "total": {"type": "integer"}},
    },
}


def test_valid_payload_passes() -> None:
    v = PayloadValidator("Order", MODELS["Order"], MODELS)
    v.check({"items": [{"id": "6f1c2a7e-6a53-4b8e-9d1e-0a5b2c3d4e5f"}], "total": 1}, what="order")


def test_errors_name_paths_and_model() -> None:
    v = PayloadValidator("Order", MODELS["Order"], MODELS)
    with pytest.raises(PayloadInvalid) as info:
        v.check({"items": [{"id": "not-a-uuid"}], "total": "1"}, what="payload of order-placed")
    text = str(info.value)
    assert text.startswith("payload of order-placed does not match Order: ")
    assert "items.0.id: 'not-a-uuid' is not a 'uuid'" in text
    assert "total: '1' is not of type 'integer'" in text
    assert isinstance(info.value, PoisonMessage)


def test_many_errors_are_summarised() -> None:
    schema = {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(8)}}
    v = PayloadValidator("Wide", schema, {"Wide": schema})
    with pytest.raises(PayloadInvalid, match=r"\(and 3 more\)"):
        v.check({f"f{i}": "x" for i in range(8)}, what="wide")
