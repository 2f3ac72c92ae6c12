"""The check of models against the supported subset of JSON Schema 2020-12: every keyword's valid and invalid forms,
each problem at its exact path with a message that names the value and what is allowed, recursion into subschemas,
and, on random schemas, agreement with ``jsonschema``'s metaschema check, which it replaces."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from framework.contract.schema_subset import SCHEMA_SUBSET, TYPES, Problem, check_model, show

TYPE_LIST = "array, boolean, integer, null, number, object, string"
NOT_A_SCHEMA = "is not a schema; a schema is a mapping of keywords, or true or false"


def problems(schema: Any, models: tuple[str, ...] = ("A", "B")) -> list[tuple[str, str, str]]:
    """(path, code, message without the 'model ... at path: ' prefix) of each problem of model 'A'."""
    out = []
    for p in check_model("A", schema, models):
        where = "/".join(map(str, p.path))
        prefix = f"model 'A' is not valid JSON Schema at {where}: " if p.code == "M002" else ""
        assert p.message.startswith(prefix)
        out.append((where, p.code, p.message.removeprefix(prefix)))
    return out


def metaschema_accepts(schema: Any) -> bool:
    try:
        with warnings.catch_warnings():  # compiling some patterns warns; pytest makes warnings errors
            warnings.simplefilter("ignore")
            Draft202012Validator.check_schema(schema)
    except SchemaError:
        return False
    return True


# --- valid forms ------------------------------------------------------------------------------------------------

VALID: list[tuple[str, Any]] = [
    ("$schema", "https://json-schema.org/draft/2020-12/schema"),
    ("$id", "https://example.com/order"),
    ("$id", "order.json#"),
    ("$id", ""),
    ("$ref", "#/$defs/B"),
    ("$defs", {}),
    ("$defs", {"Inner": {"type": "string"}, "Any": True}),
    ("$comment", "why this model exists"),
    ("title", "Order"),
    ("description", ""),
    ("default", None),
    ("default", {"any": ["value", 1]}),
    ("examples", []),
    ("examples", [1, "two", None, {"k": "v"}]),
    ("deprecated", True),
    ("readOnly", False),
    ("writeOnly", True),
    ("type", "string"),
    *[("type", t) for t in TYPES],
    ("type", ["string", "null"]),
    ("type", list(TYPES)),
    ("enum", []),
    ("enum", ["a", "a", 1, None]),
    ("const", {"x": [1]}),
    ("const", None),
    ("properties", {}),
    ("properties", {"a": {"type": "string"}, "b": True, "c": False, "type": {}}),
    ("required", []),
    ("required", ["a", "b"]),
    ("additionalProperties", False),
    ("additionalProperties", {"type": "integer"}),
    ("items", True),
    ("items", {"type": "string"}),
    ("prefixItems", [{"type": "string"}, True]),
    ("minItems", 0),
    ("maxItems", 10),
    ("uniqueItems", True),
    ("minLength", 1),
    ("minLength", 2.0),  # 2020-12: a number with a zero fractional part is an integer
    ("maxLength", 10**30),
    ("pattern", "^[a-z]+(-[a-z]+)*$"),
    ("pattern", ""),
    ("pattern", "[[a]"),  # compiles, with a FutureWarning (sets may nest one day): no warning escapes the check
    ("format", "uuid"),
    ("format", "not-a-known-format"),  # format is an annotation: any string
    ("minimum", 0),
    ("maximum", 1.5),
    ("exclusiveMinimum", -3),
    ("exclusiveMaximum", 1e300),
    ("multipleOf", 0.01),
    ("multipleOf", 3),
    ("minProperties", 0),
    ("maxProperties", 4),
    ("anyOf", [{"type": "string"}]),
    ("oneOf", [True, {"type": "null"}]),
    ("allOf", [{}, {"minimum": 1}]),
    ("not", {"type": "null"}),
    ("not", False),
]


@pytest.mark.parametrize(("keyword", "value"), VALID, ids=lambda v: repr(v)[:40])
def test_valid_forms(keyword: str, value: Any) -> None:
    assert problems({keyword: value}) == []
    assert metaschema_accepts({keyword: value})


def test_every_keyword_has_a_valid_form() -> None:
    assert {k for k, _ in VALID} == SCHEMA_SUBSET


def test_boolean_schemas_and_the_empty_schema() -> None:
    assert problems(True) == problems(False) == problems({}) == []


# --- invalid forms ----------------------------------------------------------------------------------------------

INVALID: list[tuple[str, Any, str, str]] = [
    # keyword, value, path, message
    ("$schema", 5, "$schema", "5 is not a string; $schema takes a string"),
    ("$id", 1, "$id", "1 is not a string; $id takes a URI reference"),
    ("$id", "a#frag", "$id", "'a#frag' has a fragment; an $id may end in '#' but have nothing after it"),
    ("$ref", 5, "$ref", "5 is not a string; $ref takes '#/$defs/<Model>'"),
    ("$defs", [], "$defs", "[] is not a mapping; $defs maps names to schemas"),
    ("$defs", {"X": 1}, "$defs/X", f"1 {NOT_A_SCHEMA}"),
    ("$comment", None, "$comment", "null is not a string; $comment takes a string"),
    ("title", ["x"], "title", "['x'] is not a string; title takes a string"),
    ("description", 1.5, "description", "1.5 is not a string; description takes a string"),
    ("examples", "x", "examples", "'x' is not an array; examples lists example values"),
    ("deprecated", "yes", "deprecated", "'yes' is not a boolean; deprecated takes true or false"),
    ("readOnly", 1, "readOnly", "1 is not a boolean; readOnly takes true or false"),
    ("writeOnly", None, "writeOnly", "null is not a boolean; writeOnly takes true or false"),
    ("type", "strin", "type", f"'strin' is not a type; allowed: {TYPE_LIST}"),
    ("type", "String", "type", f"'String' is not a type; allowed: {TYPE_LIST}"),
    ("type", 5, "type", f"5 is not a type or a non-empty array of types; allowed: {TYPE_LIST}"),
    ("type", [], "type", f"[] is not a type or a non-empty array of types; allowed: {TYPE_LIST}"),
    ("type", {"a": 1}, "type", f"{{'a': 1}} is not a type or a non-empty array of types; allowed: {TYPE_LIST}"),
    ("type", ["string", "strin"], "type/1", f"'strin' is not a type; allowed: {TYPE_LIST}"),
    ("type", ["string", None], "type/1", f"null is not a type; allowed: {TYPE_LIST}"),
    ("type", ["null", "null"], "type/1", "'null' is listed twice; type lists each type once"),
    ("enum", "a", "enum", "'a' is not an array; enum lists the allowed values"),
    ("enum", {"a": 1}, "enum", "{'a': 1} is not an array; enum lists the allowed values"),
    ("properties", ["a"], "properties", "['a'] is not a mapping; properties maps property names to schemas"),
    ("properties", {"a": "string"}, "properties/a", f"'string' {NOT_A_SCHEMA}"),
    ("properties", {"a": None}, "properties/a", f"null {NOT_A_SCHEMA}"),
    ("required", "a", "required", "'a' is not an array; required lists property names: did you mean ['a']?"),
    ("required", True, "required", "true is not an array; required lists property names"),
    ("required", ["a", 1], "required/1", "1 is not a string; required lists property names"),
    ("required", ["a", "b", "a"], "required/2", "'a' is listed twice; required lists each property once"),
    ("additionalProperties", 1, "additionalProperties", f"1 {NOT_A_SCHEMA}"),
    ("additionalProperties", "false", "additionalProperties", f"'false' {NOT_A_SCHEMA}"),
    ("items", [{"type": "string"}], "items", f"[{{'type': 'string'}}] {NOT_A_SCHEMA}"),
    ("prefixItems", [], "prefixItems", "[] is not a non-empty array; prefixItems lists one or more schemas"),
    ("prefixItems", {}, "prefixItems", "{} is not a non-empty array; prefixItems lists one or more schemas"),
    ("prefixItems", [True, 3], "prefixItems/1", f"3 {NOT_A_SCHEMA}"),
    ("minItems", -1, "minItems", "-1 is not a non-negative integer; minItems takes 0, 1, 2, ..."),
    ("maxItems", 1.5, "maxItems", "1.5 is not a non-negative integer; maxItems takes 0, 1, 2, ..."),
    ("uniqueItems", 1, "uniqueItems", "1 is not a boolean; uniqueItems takes true or false"),
    ("minLength", True, "minLength", "true is not a non-negative integer; minLength takes 0, 1, 2, ..."),
    ("maxLength", "3", "maxLength", "'3' is not a non-negative integer; maxLength takes 0, 1, 2, ..."),
    ("pattern", 5, "pattern", "5 is not a string; pattern takes a regular expression"),
    (
        "pattern",
        "(",
        "pattern",
        "'(' is not a valid regular expression: missing ), unterminated subpattern at position 0",
    ),
    (
        "pattern",
        "a{2,1}",
        "pattern",
        "'a{2,1}' is not a valid regular expression: min repeat greater than max repeat at position 2",
    ),
    ("format", 1, "format", "1 is not a string; format takes a string"),
    ("minimum", "0", "minimum", "'0' is not a number; minimum takes a finite number"),
    ("maximum", None, "maximum", "null is not a number; maximum takes a finite number"),
    ("exclusiveMinimum", True, "exclusiveMinimum", "true is not a number; exclusiveMinimum takes a finite number"),
    ("exclusiveMaximum", [1], "exclusiveMaximum", "[1] is not a number; exclusiveMaximum takes a finite number"),
    ("multipleOf", 0, "multipleOf", "0 is not greater than 0; multipleOf takes a number greater than 0"),
    ("multipleOf", -0.5, "multipleOf", "-0.5 is not greater than 0; multipleOf takes a number greater than 0"),
    ("multipleOf", "2", "multipleOf", "'2' is not a number; multipleOf takes a number greater than 0"),
    ("minProperties", -2, "minProperties", "-2 is not a non-negative integer; minProperties takes 0, 1, 2, ..."),
    ("maxProperties", 2.5, "maxProperties", "2.5 is not a non-negative integer; maxProperties takes 0, 1, 2, ..."),
    ("anyOf", [], "anyOf", "[] is not a non-empty array; anyOf lists one or more schemas"),
    (
        "anyOf",
        {"type": "string"},
        "anyOf",
        "{'type': 'string'} is not a non-empty array; anyOf lists one or more schemas",
    ),
    ("oneOf", "x", "oneOf", "'x' is not a non-empty array; oneOf lists one or more schemas"),
    ("allOf", [{}, 0], "allOf/1", f"0 {NOT_A_SCHEMA}"),
    ("not", [], "not", f"[] {NOT_A_SCHEMA}"),
    ("not", None, "not", f"null {NOT_A_SCHEMA}"),
]


@pytest.mark.parametrize(("keyword", "value", "path", "message"), INVALID, ids=lambda v: repr(v)[:40])
def test_invalid_forms(keyword: str, value: Any, path: str, message: str) -> None:
    assert problems({keyword: value}) == [(path, "M002", message)]
    assert not metaschema_accepts({keyword: value})


def test_every_keyword_that_constrains_its_value_has_invalid_forms() -> None:
    assert {k for k, *_ in INVALID} == SCHEMA_SUBSET - {"default", "const"}  # these two take any value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("keyword", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"])
def test_numbers_must_be_finite(keyword: str, value: float) -> None:
    """The one deliberate difference from ``jsonschema``, which takes NaN and infinity for numbers: JSON has
    neither, and a bound of NaN would make every comparison false. YAML's .nan and .inf get here."""
    [(path, code, message)] = problems({keyword: value})
    assert (path, code) == (keyword, "M002")
    assert message.startswith(f"{value} is not a number")


def test_values_that_take_anything_are_not_walked() -> None:
    """Keywords inside const, default, enum and examples are data, not schemas."""
    data = {"patternProperties": 1, "type": "strin", "$ref": "#/x"}
    assert problems({"const": data, "default": data, "enum": [data], "examples": [data]}) == []


def test_huge_repetitions_are_a_problem_not_a_crash() -> None:
    """``jsonschema``'s check raised OverflowError here, and ``onex validate`` stopped with an internal error."""
    schema = {"pattern": "a{99999999999999999999}"}
    assert problems(schema) == [
        (
            "pattern",
            "M002",
            "'a{99999999999999999999}' is not a valid regular expression: the repetition number is too large",
        )
    ]
    with pytest.raises(OverflowError):
        Draft202012Validator.check_schema(schema)


def test_deep_patterns_are_a_problem_not_a_crash() -> None:
    pattern = "(" * 5000 + ")" * 5000
    assert problems({"pattern": pattern}) == [("pattern", "M002", f"'{'(' * 55}...' nests too deeply to be checked")]


# --- recursion into subschemas ----------------------------------------------------------------------------------

BAD = {"type": "strin"}
BAD_TYPE = f"'strin' is not a type; allowed: {TYPE_LIST}"


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"properties": {"a": BAD}}, "properties/a/type"),
        ({"$defs": {"D": BAD}}, "$defs/D/type"),
        ({"items": BAD}, "items/type"),
        ({"additionalProperties": BAD}, "additionalProperties/type"),
        ({"not": BAD}, "not/type"),
        ({"anyOf": [True, BAD]}, "anyOf/1/type"),
        ({"oneOf": [BAD]}, "oneOf/0/type"),
        ({"allOf": [{}, {}, BAD]}, "allOf/2/type"),
        ({"prefixItems": [BAD]}, "prefixItems/0/type"),
        (
            {"properties": {"a": {"items": {"anyOf": [{"properties": {"b": BAD}}]}}}},
            "properties/a/items/anyOf/0/properties/b/type",
        ),
    ],
)
def test_problems_inside_subschemas_are_found_at_their_path(schema: dict[str, Any], path: str) -> None:
    assert problems(schema) == [(path, "M002", BAD_TYPE)]


def test_every_problem_is_reported_in_document_order() -> None:
    schema = {"type": "object", "required": "a", "properties": {"a": {"minLength": -1}, "b": {"type": "strin"}}}
    assert [(path, code) for path, code, _ in problems(schema)] == [
        ("required", "M002"),
        ("properties/a/minLength", "M002"),
        ("properties/b/type", "M002"),
    ]


def test_problem_paths_are_tuples_of_keys_and_indexes() -> None:
    [problem] = check_model("A", {"anyOf": [{"properties": {"x": 1}}]}, ["A"])
    assert problem == Problem(
        ("anyOf", 0, "properties", "x"),
        "M002",
        f"model 'A' is not valid JSON Schema at anyOf/0/properties/x: 1 {NOT_A_SCHEMA}",
    )


def test_a_model_that_is_not_a_schema() -> None:
    [problem] = check_model("A", "string", ["A"])
    assert problem == Problem((), "M002", f"model 'A' is not valid JSON Schema: 'string' {NOT_A_SCHEMA}")


# --- M003 and M004 ----------------------------------------------------------------------------------------------


def test_M003_keywords_outside_the_subset_wherever_they_are() -> None:
    schema = {
        "patternProperties": {"^x": {}},
        "properties": {"a": {"items": {"if": {}}}, "b": {"anyOf": [{"dependentRequired": {}}]}},
        "$defs": {"D": {"unevaluatedProperties": False}},
    }
    assert problems(schema) == [
        ("patternProperties", "M003", "model 'A' uses 'patternProperties', which is outside the supported subset"),
        ("properties/a/items/if", "M003", "model 'A' uses 'if', which is outside the supported subset"),
        (
            "properties/b/anyOf/0/dependentRequired",
            "M003",
            "model 'A' uses 'dependentRequired', which is outside the supported subset",
        ),
        (
            "$defs/D/unevaluatedProperties",
            "M003",
            "model 'A' uses 'unevaluatedProperties', which is outside the supported subset",
        ),
    ]


def test_M003_property_and_def_names_are_not_keywords() -> None:
    assert problems({"properties": {"if": {}, "patternProperties": {"type": "string"}}, "$defs": {"then": {}}}) == []


def test_M003_M004_refs() -> None:
    schema = {"properties": {"a": {"$ref": "#/$defs/B"}, "b": {"$ref": "#/definitions/B"}, "c": {"$ref": "#/$defs/C"}}}
    assert problems(schema) == [
        ("properties/b/$ref", "M003", "model 'A': $ref '#/definitions/B' must be '#/$defs/<Model>'"),
        ("properties/c/$ref", "M004", "model 'A': $ref '#/$defs/C' names no declared model; declared: A, B"),
    ]
    assert problems({"$ref": "#/$defs/B"}, models=()) == [
        ("$ref", "M004", "model 'A': $ref '#/$defs/B' names no declared model (none are declared)")
    ]


# --- how values are shown ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("strin", "'strin'"),
        (True, "true"),
        (None, "null"),
        (1.5, "1.5"),
        (["a", 1, None, False], "['a', 1, null, false]"),
        ({"k": [True]}, "{'k': [true]}"),
        ("x" * 100, "'" + "x" * 55 + "...'"),
        (list(range(20)), "[0, 1, 2, 3, 4, 5, 6, 7, ...]"),
        pytest.param(10**5000, "<an integer of 16610 bits>", id="too-many-digits-to-print"),
    ],
)
def test_show(value: Any, shown: str) -> None:
    assert show(value) == shown
    assert len(show(value)) <= 60


# --- agreement with jsonschema's metaschema check ---------------------------------------------------------------

# Text that makes interesting patterns, $ids and names; no newline, as the metaschema's own check of $id
# ('^[^#]*#?$', with re.search) lets 'x#\n' through, where a fragment of '\n' is still a fragment.
TEXT = st.text(alphabet="ab#/:.()[]{}*+?^$\\-,1", max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-5, 5, allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, 1.0, 2.5, -1.0, 10**20])
    | TEXT
)
# Any JSON, with mappings keyed by subset keywords only: where a mapping stands for a schema, it is one of the subset
# with arbitrary values, a near miss; where it is data (const, enum, ...), its keys do not matter.
KEYWORDS = st.sampled_from(sorted(SCHEMA_SUBSET))
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYWORDS, c, max_size=3), max_leaves=6)
PATTERNS = st.sampled_from(["(", "a{2,1}", "[z-a]", "a**", "[[a]", "(?P<x>a)(?P<x>b)", "\\p{L}"]) | TEXT
TYPE_NAMES = st.sampled_from([*TYPES, "strin", "Integer", ""])


def _value(keyword: str, schemas: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of ``keyword``: mostly valid forms (so that many whole schemas are valid, deep ones too), then near
    misses, then any JSON at all."""
    valid: dict[str, st.SearchStrategy[Any]] = {
        "type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
        "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True),
        "properties": st.dictionaries(TEXT, schemas, max_size=3),
        "$defs": st.dictionaries(TEXT, schemas, max_size=3),
        "pattern": st.sampled_from(["", "^a+$", "\\d{2,3}", "(?P<x>a)|b", "[^#]*"]),
        "$id": st.sampled_from(["", "#", "a#", "http://x/y#"]),
        "$ref": st.sampled_from(["#/$defs/A", "#/$defs/B"]),
        "enum": st.lists(JSON, max_size=3),
        "examples": st.lists(JSON, max_size=3),
    }
    near: dict[str, st.SearchStrategy[Any]] = {
        "type": TYPE_NAMES | st.lists(TYPE_NAMES | JSON, max_size=3),
        "required": st.lists(st.sampled_from(["a", "b"]) | JSON, max_size=3),
        "properties": st.dictionaries(TEXT, schemas | JSON, max_size=3),
        "$defs": st.dictionaries(TEXT, schemas | JSON, max_size=3),
        "pattern": PATTERNS,
        "$id": st.sampled_from(["a#b", "#/x", "a##"]) | TEXT,
        "$ref": st.sampled_from(["#/definitions/A", "#"]) | TEXT,
    }
    for k in ("items", "additionalProperties", "not"):
        valid[k] = schemas
    for k in ("anyOf", "oneOf", "allOf", "prefixItems"):
        valid[k] = st.lists(schemas, min_size=1, max_size=3)
        near[k] = st.lists(schemas | JSON, max_size=3)
    for k in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"):
        valid[k] = st.integers(0, 3) | st.sampled_from([0.0, 1.0, 10**30])
        near[k] = st.integers(-2, -1) | st.sampled_from([1.5, -1.0, True])
    for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        near[k] = st.integers(-2, 3) | st.floats(-3, 3, allow_nan=False, allow_infinity=False)
        valid[k] = near[k].filter(lambda v: v > 0) if k == "multipleOf" else near[k]
    for k in ("deprecated", "readOnly", "writeOnly", "uniqueItems"):
        valid[k] = st.booleans()
    for k in ("$schema", "$comment", "title", "description", "format"):
        valid[k] = TEXT
    good = valid.get(keyword, JSON)
    return st.one_of(good, good, good, near.get(keyword, JSON), JSON)


def _schema_of(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.lists(KEYWORDS, unique=True, max_size=4)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: _value(k, children) for k in ks}))


SCHEMAS: st.SearchStrategy[Any] = st.recursive(st.booleans() | st.just({}), _schema_of, max_leaves=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS | JSON)
def test_accepts_exactly_what_the_metaschema_accepts(schema: Any) -> None:
    found = check_model("A", schema, ["A"])
    assert all(p.code in ("M002", "M004", "M003") for p in found)
    assert all(p.code == "M002" or "$ref" in p.path for p in found)  # only subset keywords here
    invalid = [p.message for p in found if p.code == "M002"]
    assert (not invalid) == metaschema_accepts(schema), invalid


def test_validation_does_not_import_jsonschema() -> None:
    """The metaschema check is gone from validation, and with it jsonschema's import from ``onex validate``."""
    code = "import sys, framework.contract.validate; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
