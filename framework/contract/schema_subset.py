"""The subset of JSON Schema 2020-12 that models may use, and the check of a model against it.

Why not ``jsonschema``'s ``check_schema``: validating against the 2020-12 metaschema (``$dynamicRef`` and all) costs
a few milliseconds per model, which was most of a first ``onex validate`` run, and it reports one error per model,
placed at the model. Models may use only the keywords below, so checking each keyword's value against what the
2020-12 metaschema allows for it is the whole check, and needs no safety net: a model passes here exactly when it
uses only these keywords and ``Draft202012Validator.check_schema`` accepts it (``tests/contract/test_schema_subset.py``
checks that claim on random schemas). One deliberate difference: numeric keywords must be finite, as JSON has no NaN
or infinity.

Codes: M002 a keyword's value is not what JSON Schema allows; M003 a keyword outside the subset, or a ``$ref`` that
is not ``#/$defs/<Model>``; M004 a ``$ref`` to a model that is not declared.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

#: The JSON Schema keywords models may use (the ones generators can map to types, and annotations), each with the
#: form of value that JSON Schema 2020-12 allows for it: the name of the :class:`_Checker` method that checks it.
_FORMS = {
    "$schema": "string",
    "$id": "id_",
    "$ref": "ref",
    "$defs": "schema_map",
    "$comment": "string",
    "title": "string",
    "description": "string",
    "default": "anything",
    "examples": "array",
    "deprecated": "boolean",
    "readOnly": "boolean",
    "writeOnly": "boolean",
    "type": "type_",
    "enum": "array",
    "const": "anything",
    "properties": "schema_map",
    "required": "required",
    "additionalProperties": "subschema",
    "items": "subschema",
    "prefixItems": "schema_array",
    "minItems": "count",
    "maxItems": "count",
    "uniqueItems": "boolean",
    "minLength": "count",
    "maxLength": "count",
    "pattern": "pattern",
    "format": "string",
    "minimum": "number",
    "maximum": "number",
    "exclusiveMinimum": "number",
    "exclusiveMaximum": "number",
    "multipleOf": "multiple_of",
    "minProperties": "count",
    "maxProperties": "count",
    "anyOf": "schema_array",
    "oneOf": "schema_array",
    "allOf": "schema_array",
    "not": "subschema",
}
SCHEMA_SUBSET = frozenset(_FORMS)

#: The type names of JSON Schema, as ``type`` allows them.
TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
MODEL_REF = "#/$defs/"

#: A location inside a model: keywords, property names and array indexes from the model's root.
SchemaPath = tuple[str | int, ...]

_ALLOWED_TYPES = ", ".join(TYPES)
_SHOW_MAX = 60


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a model: where in the model, its code, and the whole message."""

    path: SchemaPath
    code: str
    message: str


def check_model(name: str, schema: Any, models: Collection[str]) -> list[Problem]:
    """Every problem of model ``name`` in document order; ``models`` are the names ``$ref`` may point at."""
    checker = _Checker(name, models)
    checker.schema(schema, ())
    return checker.problems


def show(value: Any) -> str:
    """A value as a message shows it: YAML-like (true, null, [a, b]), strings quoted, long ones cut."""
    text = _render(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _render(value: Any, depth: int = 0) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if depth > 3:  # enough to recognise the value; deeper levels would only be cut off
        return "..."
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, depth + 1) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    if isinstance(value, dict):
        items = list(value.items())[:8]
        inner = ", ".join(f"{_render(k, depth + 1)}: {_render(v, depth + 1)}" for k, v in items)
        return "{" + inner + (", ...}" if len(value) > 8 else "}")
    if isinstance(value, str) and len(value) > _SHOW_MAX - 5:
        quoted = repr(value[: _SHOW_MAX - 5])
        return f"{quoted[:-1]}...{quoted[-1]}"  # still quoted, so that it reads as a string
    if isinstance(value, int) and value.bit_length() > 192:  # too long to show; repr refuses over 4300 digits
        return f"<an integer of {value.bit_length()} bits>"
    return repr(value)


def _is_integer(value: Any) -> bool:
    """A JSON integer: 2020-12 counts a number with a zero fractional part (``1.0``) as one."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a regular expression, or None. The dialect is Python's ``re``, which is what the
    runtime's payload validation (jsonschema) compiles patterns with."""
    try:
        with warnings.catch_warnings():  # '[[a]' compiles, with a FutureWarning that sets may nest one day
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, OverflowError) as exc:  # OverflowError: a{99999999999999999999}
        return f"{show(pattern)} is not a valid regular expression: {exc}"
    except RecursionError:  # the parser recurses once per nested group: ((((...)))) deep enough exhausts the stack
        return f"{show(pattern)} nests too deeply to be checked"
    return None


class _Checker:
    """Walks one model: each keyword's value is checked as the 2020-12 metaschema says, subschemas recursively."""

    def __init__(self, name: str, models: Collection[str]) -> None:
        self.name = name
        self.models = models
        self.problems: list[Problem] = []

    def invalid(self, path: SchemaPath, detail: str) -> None:
        where = f" at {'/'.join(map(str, path))}" if path else ""
        self.problems.append(Problem(path, "M002", f"model '{self.name}' is not valid JSON Schema{where}: {detail}"))

    def schema(self, value: Any, path: SchemaPath) -> None:
        if isinstance(value, bool):
            return
        if not isinstance(value, dict):
            self.invalid(path, f"{show(value)} is not a schema; a schema is a mapping of keywords, or true or false")
            return
        for key, sub in value.items():
            check = _CHECKS.get(key)
            if check is None:
                message = f"model '{self.name}' uses '{key}', which is outside the supported subset"
                self.problems.append(Problem((*path, key), "M003", message))
            else:
                check(self, key, sub, (*path, key))

    # --- one method per form of keyword value; each gets the keyword, its value and its path. Messages say what
    # --- the value is not, then what is allowed; the path ends in the keyword.

    def subschema(self, key: str, value: Any, path: SchemaPath) -> None:
        self.schema(value, path)

    def schema_map(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, dict):
            what = "property names" if key == "properties" else "names"
            self.invalid(path, f"{show(value)} is not a mapping; {key} maps {what} to schemas")
            return
        for name, sub in value.items():
            self.schema(sub, (*path, name))

    def schema_array(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, list) or not value:
            self.invalid(path, f"{show(value)} is not a non-empty array; {key} lists one or more schemas")
            return
        for i, sub in enumerate(value):
            self.schema(sub, (*path, i))

    def type_(self, key: str, value: Any, path: SchemaPath) -> None:
        if isinstance(value, str):
            if value not in TYPES:
                self.invalid(path, f"{show(value)} is not a type; allowed: {_ALLOWED_TYPES}")
            return
        if not isinstance(value, list) or not value:
            self.invalid(
                path,
                f"{show(value)} is not a type or a non-empty array of types; allowed: {_ALLOWED_TYPES}",
            )
            return
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in TYPES:
                self.invalid((*path, i), f"{show(item)} is not a type; allowed: {_ALLOWED_TYPES}")
            elif item in seen:
                self.invalid((*path, i), f"{show(item)} is listed twice; {key} lists each type once")
            else:
                seen.add(item)

    def required(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, list):
            hint = f": did you mean {show([value])}?" if isinstance(value, str) else ""
            self.invalid(path, f"{show(value)} is not an array; {key} lists property names{hint}")
            return
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.invalid((*path, i), f"{show(item)} is not a string; {key} lists property names")
            elif item in seen:
                self.invalid((*path, i), f"{show(item)} is listed twice; {key} lists each property once")
            else:
                seen.add(item)

    def array(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, list):
            what = "the allowed values" if key == "enum" else "example values"
            self.invalid(path, f"{show(value)} is not an array; {key} lists {what}")

    def anything(self, key: str, value: Any, path: SchemaPath) -> None:
        """``default`` and ``const`` take any value."""

    def string(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, str):
            self.invalid(path, f"{show(value)} is not a string; {key} takes a string")

    def boolean(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, bool):
            self.invalid(path, f"{show(value)} is not a boolean; {key} takes true or false")

    def count(self, key: str, value: Any, path: SchemaPath) -> None:
        if not _is_integer(value) or value < 0:
            self.invalid(path, f"{show(value)} is not a non-negative integer; {key} takes 0, 1, 2, ...")

    def number(self, key: str, value: Any, path: SchemaPath) -> None:
        if not _is_number(value):
            self.invalid(path, f"{show(value)} is not a number; {key} takes a finite number")

    def multiple_of(self, key: str, value: Any, path: SchemaPath) -> None:
        if not _is_number(value):
            self.invalid(path, f"{show(value)} is not a number; {key} takes a number greater than 0")
        elif value <= 0:
            self.invalid(path, f"{show(value)} is not greater than 0; {key} takes a number greater than 0")

    def pattern(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, str):
            self.invalid(path, f"{show(value)} is not a string; {key} takes a regular expression")
            return
        problem = _regex_problem(value)
        if problem is not None:
            self.invalid(path, problem)

    def id_(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, str):
            self.invalid(path, f"{show(value)} is not a string; {key} takes a URI reference")
        elif value.partition("#")[2]:
            self.invalid(path, f"{show(value)} has a fragment; an {key} may end in '#' but have nothing after it")

    def ref(self, key: str, value: Any, path: SchemaPath) -> None:
        if not isinstance(value, str):
            self.invalid(path, f"{show(value)} is not a string; {key} takes '{MODEL_REF}<Model>'")
        elif not value.startswith(MODEL_REF):
            message = f"model '{self.name}': $ref '{value}' must be '{MODEL_REF}<Model>'"
            self.problems.append(Problem(path, "M003", message))
        elif value.removeprefix(MODEL_REF) not in self.models:
            declared = f"; declared: {', '.join(sorted(self.models))}" if self.models else " (none are declared)"
            message = f"model '{self.name}': $ref '{value}' names no declared model{declared}"
            self.problems.append(Problem(path, "M004", message))


_CHECKS: dict[str, Callable[[_Checker, str, Any, SchemaPath], None]] = {
    keyword: getattr(_Checker, form) for keyword, form in _FORMS.items()
}
