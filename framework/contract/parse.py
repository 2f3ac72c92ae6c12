"""From a loaded document to a typed contract or subcontract, with schema errors as positioned findings."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from framework.contract.findings import Finding, Level
from framework.contract.loader import Document, Loc
from framework.contract.names import PATTERN_MEANING
from framework.contract.spec import Contract
from framework.contract.subcontracts import SUBCONTRACT_MODELS, Spec

M = TypeVar("M", bound=BaseModel)

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(model: type[M]) -> TypeAdapter[M]:
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


def document_kind(doc: Document) -> type[Spec] | Finding:
    """A contract (it has ``node_type``) or a subcontract (it has ``kind``); anything else is a finding."""
    data = doc.data
    if not isinstance(data, dict):
        shown = type(data).__name__ if data is not None else "null"
        return Finding.at(
            doc.position(()),
            Level.ERROR,
            "S005",
            f"expected a mapping (a contract or a subcontract) at the top level, found a {shown}",
        )
    if "node_type" in data:
        return Contract
    kind = data.get("kind")
    if isinstance(kind, str) and kind in SUBCONTRACT_MODELS:
        return SUBCONTRACT_MODELS[kind]
    if "kind" in data:
        allowed = ", ".join(SUBCONTRACT_MODELS)
        return Finding.at(
            doc.position(("kind",)),
            Level.ERROR,
            "S004",
            f"kind: '{kind}' is not a subcontract kind; allowed: {allowed}",
        )
    return Finding.at(
        doc.position(()),
        Level.ERROR,
        "S005",
        "cannot tell what this file is: a contract has 'node_type', a subcontract has 'kind' "
        f"({', '.join(SUBCONTRACT_MODELS)})",
    )


def parse_model(doc: Document, model: type[M]) -> tuple[M | None, list[Finding]]:
    """Validate ``doc`` as ``model``. On failure, every schema error is a finding at the offending key."""
    try:
        return _adapter(model).validate_python(doc.data), []
    except ValidationError as exc:
        findings = [_finding(doc, model, err) for err in exc.errors(include_url=False)]
        unique = {(f.path, f.line, f.col, f.code, f.message): f for f in findings}
        return None, sorted(unique.values(), key=Finding.sort_key)


def _finding(doc: Document, model: type[BaseModel], err: Any) -> Finding:
    loc: Loc = tuple(err["loc"])
    data_loc = _data_loc(doc.data, loc, model)
    kind = err["type"]
    where = ".".join(str(p) for p in data_loc) or "document"
    ctx = err.get("ctx") or {}
    if kind == "missing":
        field = loc[-1]
        parent = _data_loc(doc.data, loc[:-1], model)
        return Finding.at(
            doc.position(parent),
            Level.ERROR,
            "S002",
            f"missing required field '{field}' in {'.'.join(map(str, parent)) or 'document'}",
        )
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(model, loc[:-1])
        hint = ""
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        allowed_text = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return Finding.at(doc.position(data_loc), Level.ERROR, "S001", f"unknown field '{key}'{hint}{allowed_text}")
    value = _value_at(doc.data, data_loc)
    if loc[-1:] == ("[key]",) and data_loc:
        value = data_loc[-1]  # the offending key itself, not the value it names
    if kind in ("union_tag_invalid", "union_tag_not_found") and "effects" in loc[:1]:
        return Finding.at(
            doc.position((*data_loc, "adapter")),
            Level.ERROR,
            "X001",
            f"{where}: unknown or missing adapter {_show(ctx.get('tag'))}; allowed: postgres, kafka, blake3, http",
        )
    if kind in ("literal_error", "enum", "union_tag_invalid", "invalid_action", "invalid_target"):
        return Finding.at(
            doc.position(data_loc),
            Level.ERROR,
            "S004",
            f"{where}: {_show(value)} is not allowed; {err['msg'][0].lower()}{err['msg'][1:]}",
        )
    if kind == "string_pattern_mismatch":
        meaning = PATTERN_MEANING.get(str(ctx.get("pattern")), f"matching {ctx.get('pattern')}")
        return Finding.at(
            doc.position(data_loc),
            Level.ERROR,
            "S003",
            f"{where}: {_show(value)} is not a valid name; expected {meaning}",
        )
    return Finding.at(doc.position(data_loc), Level.ERROR, "S003", f"{where}: {err['msg']}; got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _data_loc(data: Any, loc: Loc, model: Any = None) -> Loc:
    """Pydantic's location without union tags and one-or-many wrapping: a location in the document's data.

    The model's types tell tags from keys: a target's tag 'http' or an action's tag 'emit' is also a key of the
    data, and descending into it would put the finding on the wrong value."""
    out: list[str | int] = []
    tp = model
    for part in loc:
        member = _tag_member(tp, part)
        if member is not None:
            tp = member
            continue
        tp = _step(tp, part) if tp is not None else None
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_dict or in_list:
            data = data[part]
            out.append(part)
        elif isinstance(data, dict):
            continue  # a union tag such as 'postgres', or a one-or-many list index over a single mapping
        else:
            break
    return tuple(out)


def _tag_member(tp: Any, part: str | int) -> Any:
    """The member of a tagged union that ``part`` names, when ``tp`` is such a union and ``part`` a tag."""
    tp = _unwrap(tp)
    if get_origin(tp) not in (types.UnionType, typing.Union) or not isinstance(part, str):
        return None
    models = [m for m in map(_unwrap, get_args(tp)) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) < 2:
        return None  # 'Model | None' is not tagged
    return next((m for m in models if _tag_of(m) == part), None)


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (as written in YAML) of the model at pydantic location ``loc``, or [] if unknown."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _step(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        members = [_unwrap(a) for a in get_args(tp) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        for m in models:  # a discriminated union's tag names the member
            if isinstance(part, str) and _tag_of(m) == part:
                return m
        for m in members:
            nxt = _step(m, part)
            if nxt is not None:
                return nxt
        return None
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    return None


def _tag_of(model: type[BaseModel]) -> str | None:
    for field_name in ("adapter", "kind"):
        field = model.model_fields.get(field_name)
        if field is not None and get_origin(field.annotation) is typing.Literal:
            return str(get_args(field.annotation)[0])
    required = [f.alias or n for n, f in model.model_fields.items() if f.is_required()]
    return required[0] if required else None
