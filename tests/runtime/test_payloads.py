"""Payload validators: compiled once, $defs among sibling models, formats enforced, errors name paths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

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


# --- the fast path never accepts what the reference validator refuses ----------------------------------------------

NAMES = ("a", "b", "c")
STRINGS = st.sampled_from(
    [
        *("", "a", "ab", "abc", "a\n", "0f", "٣", "not-a-uuid", "user@example.com", "2026-11-28"),
        *("2026-11-28T01:02:03Z", "2026-13-40T99:00:00", "6f1c2a7e-6a53-4b8e-9d1e-0a5b2c3d4e5f"),
    ]
)
SCALARS = st.none() | st.booleans() | st.integers(-3, 300) | st.sampled_from([0.5, 1.0, -2.0, 10**20]) | STRINGS
INSTANCES = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(NAMES), c, max_size=3), max_leaves=8
)
LEAF_SCHEMAS = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "object"])}),
    st.fixed_dictionaries({"type": st.just(["string", "null"])}),
    st.fixed_dictionaries(
        {"type": st.just("string"), "format": st.sampled_from(["uuid", "date-time", "date", "email"])}
    ),
    st.fixed_dictionaries(
        {"type": st.just("string"), "pattern": st.sampled_from(["^[0-9a-f]+$", "^a", "b$", r"^\d$"])}
    ),
    st.fixed_dictionaries({"type": st.just("string"), "minLength": st.integers(0, 2), "maxLength": st.integers(1, 3)}),
    st.fixed_dictionaries({"type": st.just("integer"), "minimum": st.integers(0, 5), "maximum": st.integers(5, 100)}),
    st.fixed_dictionaries({"type": st.just("number"), "exclusiveMinimum": st.integers(-1, 1)}),
    st.fixed_dictionaries({"enum": st.lists(SCALARS, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"const": SCALARS}),
    st.just({"$ref": "#/$defs/Leaf"}),
)
SCHEMAS = st.recursive(
    LEAF_SCHEMAS,
    lambda c: st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.sampled_from(NAMES), c, max_size=3),
                "required": st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
                "additionalProperties": st.booleans() | c,
            }
        ),
        st.fixed_dictionaries({"type": st.just("array"), "items": c, "maxItems": st.integers(0, 3)}),
        st.fixed_dictionaries({"anyOf": st.lists(c, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"oneOf": st.lists(c, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"allOf": st.lists(c, min_size=1, max_size=2)}),
        st.fixed_dictionaries({"not": c}),
    ),
    max_leaves=6,
)
LEAF = {"type": "string", "format": "uuid"}


@settings(max_examples=300, deadline=None)
@given(LEAF_SCHEMAS, st.lists(SCALARS, min_size=1, max_size=8))
def test_a_value_is_refused_exactly_when_the_reference_validator_refuses_it(
    schema: dict[str, Any], instances: list[Any]
) -> None:
    assert_agrees(schema, instances)


@settings(max_examples=300, deadline=None)
@given(SCHEMAS, st.lists(INSTANCES, min_size=1, max_size=8))
def test_a_payload_is_refused_exactly_when_the_reference_validator_refuses_it(
    schema: dict[str, Any], instances: list[Any]
) -> None:
    assert_agrees(schema, instances)


def assert_agrees(schema: dict[str, Any], instances: list[Any]) -> None:
    models = {"Model": schema, "Leaf": LEAF}
    validator = PayloadValidator("Model", schema, models)
    reference = Draft202012Validator({"$defs": models, **schema}, format_checker=FormatChecker())
    for instance in instances:
        refused = not reference.is_valid(instance)
        try:
            validator.check(instance, what="payload")
        except PayloadInvalid:
            assert refused, f"refused {instance!r}, which the reference accepts"
        else:
            assert not refused, f"accepted {instance!r}, which the reference refuses"


@pytest.mark.parametrize("value", [datetime.now(UTC), uuid.uuid4(), b"bytes", {1, 2}])
def test_a_value_json_has_no_type_for_is_refused_with_the_reference_message(value: object) -> None:
    v = PayloadValidator("Item", MODELS["Item"], MODELS)
    with pytest.raises(PayloadInvalid, match=r"id: .* is not of type 'string'"):
        v.check({"id": value}, what="item")
