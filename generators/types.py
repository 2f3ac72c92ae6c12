"""The type mapping: the contract language's JSON Schema subset → pydantic model classes (as source text).

Kept apart from the templates: this module knows JSON Schema, the templates know the shape of a module.

=====================================  =======================================
JSON Schema                            Python
=====================================  =======================================
``string`` / ``integer`` / ``number``  ``str`` / ``int`` / ``float``
``boolean`` / ``null``                 ``bool`` / ``None``
``type: [a, b]``, ``anyOf``, ``oneOf`` ``A | B``
``enum``, ``const``                    ``Literal[...]``
``array`` (``items``)                  ``list[T]`` (``list[Any]`` without ``items``)
``object`` with ``properties``         a model class (nested ones are named ``<Parent><Property>``)
``object`` without ``properties``      ``dict[str, T]`` (``additionalProperties``), else ``dict[str, Any]``
``$ref: "#/$defs/Name"``               the model class of ``Name``
anything else (``allOf``, ``not``…)    ``Any``
=====================================  =======================================

Values are not constrained beyond their types (lengths, patterns, bounds): the runtime checks every payload against
the contract's schema itself, so the generated models are for typing, not a second validator. Objects accept extra
properties unless ``additionalProperties: false`` (then ``extra="forbid"``).

Columns of postgres effects (``columns: {name: type}``) map as asyncpg decodes them:

==============================================  =========================
PostgreSQL                                      Python
==============================================  =========================
``text`` / ``varchar``                          ``str``
``smallint`` / ``integer`` / ``bigint``         ``int``
``real`` / ``double precision`` / ``numeric``   ``float`` / ``Decimal``
``boolean`` / ``bytea`` / ``uuid``              ``bool`` / ``bytes`` / ``UUID``
``date`` / ``timestamp`` / ``timestamptz``      ``date`` / ``datetime``
``json`` / ``jsonb``                            ``Any`` (the JSON value)
``T[]`` / ``T?``                                ``list[T]`` / ``T | None``
a column declared without a type                ``Any``
==============================================  =========================
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from generators.naming import field_name, pascal
from generators.pyliteral import py_literal

JsonSchema = dict[str, Any]
Resolver = Callable[[str], str]

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
REF_PREFIX = "#/$defs/"

_COLUMN_TYPES = {
    "text": "str",
    "varchar": "str",
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "real": "float",
    "double precision": "float",
    "numeric": "Decimal",
    "boolean": "bool",
    "bytea": "bytes",
    "uuid": "UUID",
    "date": "date",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "json": "Any",
    "jsonb": "Any",
}
#: Python names of column types → the module they are imported from.
COLUMN_TYPE_MODULES = {
    "Decimal": "decimal",
    "UUID": "uuid",
    "date": "datetime",
    "datetime": "datetime",
    "Any": "typing",
}


def column_annotation(column_type: str | None) -> str:
    """The Python type of a declared column type (``bigint?`` → ``int | None``); ``Any`` when it has none."""
    if column_type is None:
        return "Any"
    base = column_type.removesuffix("?")
    array = base.endswith("[]")
    python = _COLUMN_TYPES[base.removesuffix("[]")]
    if array:
        python = f"list[{python}]"
    if column_type.endswith("?") and python != "Any":
        python += " | None"
    return python


@dataclass
class ModelWriter:
    """Collects model classes in definition order and the typing names they need."""

    classes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    typing: set[str] = field(default_factory=set)
    uses_field: bool = False
    uses_root: bool = False

    def annotation(self, schema: Any, hint: str, resolve: Resolver) -> str:
        """The Python type of ``schema``; object schemas with properties become classes named ``hint``."""
        if not isinstance(schema, dict):
            return self._any()
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            return resolve(ref[len(REF_PREFIX) :])
        if "const" in schema:
            return self._literal([schema["const"]])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._literal(schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                return _union(
                    self.annotation(o, f"{hint}Option{i + 1}" if len(options) > 1 else hint, resolve)
                    for i, o in enumerate(options)
                )
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self.annotation(all_of[0], hint, resolve)
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        if isinstance(kind, list):
            return _union(self._typed(schema, str(k), hint, resolve) for k in kind)
        if isinstance(kind, str):
            return self._typed(schema, kind, hint, resolve)
        return self._any()

    def _typed(self, schema: JsonSchema, kind: str, hint: str, resolve: Resolver) -> str:
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.annotation(items, hint + 'Item', resolve) if isinstance(items, dict) else self._any()}]"
        if kind == "object":
            props = schema.get("properties")
            if isinstance(props, dict) and props:
                return self.model_class(hint, schema, resolve)
            extra = schema.get("additionalProperties")
            value = self.annotation(extra, hint + "Value", resolve) if isinstance(extra, dict) else self._any()
            return f"dict[str, {value}]"
        return self._any()

    def _any(self) -> str:
        self.typing.add("Any")
        return "Any"

    def _literal(self, values: list[Any]) -> str:
        self.typing.add("Literal")
        plain = [v for v in values if v is not None and not isinstance(v, list | dict)]
        parts = [f"Literal[{', '.join(py_literal(v) for v in dict.fromkeys(plain))}]"] if plain else []
        if any(isinstance(v, list | dict) for v in values):
            parts.append(self._any())
        if None in values:
            parts.append("None")
        return " | ".join(parts) or "None"

    def model_class(self, name: str, schema: JsonSchema, resolve: Resolver) -> str:
        """Write the class of an object schema (or a RootModel for any other schema); return its name."""
        if name in self.names:
            return name
        self.names.append(name)  # reserved before the body, so that a self-reference resolves
        description = schema.get("description") or schema.get("title") or ""
        doc = _docstring(str(description) or f"The {name} model.")
        props = schema.get("properties")
        if not (isinstance(props, dict) and props) and schema.get("type") not in (None, "object"):
            self.uses_root = True
            root = self.annotation(schema, name + "Value", resolve)
            self.classes.append(f"class {name}(RootModel[{root}]):\n{doc}")
            return name
        required = set(schema.get("required") or [])
        extra = "forbid" if schema.get("additionalProperties") is False else "allow"
        lines = [
            f"class {name}(BaseModel):",
            doc,
            "",
            f'    model_config = ConfigDict(extra="{extra}", populate_by_name=True)',
        ]
        if isinstance(props, dict) and props:
            lines.append("")
        for prop, sub in (props or {}).items():
            lines.extend(self._field(name, str(prop), sub, prop in required, resolve))
        self.classes.append("\n".join(lines))
        return name

    def _field(self, owner: str, prop: str, schema: Any, required: bool, resolve: Resolver) -> list[str]:
        attr = field_name(prop)
        ann = self.annotation(schema, owner + pascal(prop), resolve)
        has_default = isinstance(schema, dict) and "default" in schema
        comment: list[str] = []
        if isinstance(schema, dict) and schema.get("description"):
            comment = [f"    #: {line}" for line in textwrap.wrap(str(schema["description"]), 110)]
        if not required and not has_default and "None" not in ann.split(" | "):
            ann = f"{ann} | None"
        default: str | None = None
        if has_default:
            default = py_literal(schema["default"])
        elif not required:
            default = "None"
        if attr != prop:
            self.uses_field = True
            args = ([f"default={default}"] if default is not None else []) + [f"alias={py_literal(prop)}"]
            value = f" = Field({', '.join(args)})"
        else:
            value = f" = {default}" if default is not None else ""
        line = f"    {attr}: {ann}{value}"
        if len(line) > 120:
            self.typing.add("TypeAlias")
            alias = owner + pascal(prop) + "Type"
            self.classes.append(f"{alias}: TypeAlias = {ann}")
            line = f"    {attr}: {alias}{value}"
        return [*comment, line]


def _union(parts: Any) -> str:
    seen: list[str] = []
    for part in parts:
        for piece in part.split(" | "):
            if piece not in seen:
                seen.append(piece)
    if "Any" in seen:
        return "Any"
    if "None" in seen:
        seen = [p for p in seen if p != "None"] + ["None"]
    return " | ".join(seen)


def _docstring(text: str) -> str:
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += " "
    if len(text) + 10 <= 120:
        return f'    """{text}"""'
    body = "\n".join(f"    {line}" for line in textwrap.wrap(text, 112))
    return f'    """\n{body}\n    """'
