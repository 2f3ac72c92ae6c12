"""The node module generator: a contract → ``nodes/<name>/_generated.py``.

It holds pydantic models of every model the contract declares and every payload of the events it consumes and
publishes; a typed adapter class over the node's declared effects; and a typed handler base that subclasses the
base of the contract's kind. Pure: contract in, text out (``render``); ``onex generate`` writes and checks.

A postgres effect whose contract fixes its shape (select and delete; insert, upsert and update with ``columns``) gets
its SQL written here (``<EFFECT>_SQL``, a :class:`~framework.adapters.postgres_effects.PostgresStatement` built by
``fixed_statement``, the same function the runtime checks it with), ``TypedDict`` rows of its columns (typed when
``columns`` maps them to types) and a wrapper that runs it with ``run_statement``; an insert or upsert whose every
column is typed also gets ``<effect>_many(rows)``, its many-rows statement (one ``unnest`` statement, rows back in input
order) run with ``run_statement_rows``, else ``<effect>_many`` is one ``executemany`` returning a count. Other postgres
effects (insert, upsert or update of "every column of the table") depend on the table, so their wrapper calls the effect
the runtime builds from the table's columns.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator
from typing import Any

from framework.adapters.postgres_effects import PostgresStatement, fixed_statement
from framework.contract.spec import (
    Blake3Effect,
    Contract,
    HttpEffect,
    KafkaEffect,
    NodeType,
    PostgresEffect,
)
from framework.contract.subcontracts import EventCatalog
from generators.naming import field_name, pascal, snake
from generators.pyliteral import py_literal
from generators.templating import fill
from generators.types import COLUMN_TYPE_MODULES, JsonSchema, ModelWriter, column_annotation

GENERATOR = "generators.node_module"

KIND_BASES = {
    NodeType.EFFECT: "EffectNode",
    NodeType.COMPUTE: "ComputeNode",
    NodeType.REDUCER: "ReducerNode",
    NodeType.ORCHESTRATOR: "OrchestratorNode",
    NodeType.REGISTRY: "RegistryNode",
}

#: Kinds whose base already handles its subscriptions (the base of the kind does the work): the generated base
#: gives them typed payloads, publishers and effects, but declares no abstract handlers.
_KINDS_WITH_HANDLERS = {NodeType.REDUCER, NodeType.ORCHESTRATOR, NodeType.REGISTRY}


def output_path(contract: Contract) -> str:
    return f"nodes/{contract.name}/_generated.py"


def render(contract: Contract, *, source: str, sha256: str) -> dict[str, str]:
    """``{"nodes/<name>/_generated.py": text}``. ``source``: the contract's path as shown in the header,
    ``sha256``: the hash of its text."""
    return {output_path(contract): _Module(contract).render(source, sha256)}


class _Module:
    def __init__(self, contract: Contract) -> None:
        self.c = contract
        self.w = ModelWriter()
        self._scoped: dict[tuple[str, str], str] = {}
        self._schemas: dict[str, JsonSchema] = {}
        self.imports: dict[str, set[str]] = {}
        self.statements: list[str] = []
        self.helpers: list[str] = []

    # --- models ---------------------------------------------------------------------------------------------------

    def _model(self, scope: EventCatalog | None, name: str) -> str:
        key = (scope.catalog_name if scope else "", name)
        if key in self._scoped:
            return self._scoped[key]
        schema = scope.models[name] if scope else self.c.models[name]
        cls = name
        if cls in self._schemas and self._schemas[cls] != schema:
            cls = pascal(scope.catalog_name) + name if scope else name + "Model"
        self._scoped[key] = cls
        if cls not in self._schemas:
            self._schemas[cls] = schema
            self.w.model_class(cls, schema, lambda ref: self._model(scope, ref))
        return cls

    def _events(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for sub in self.c.subscriptions:
            seen.setdefault(sub.event)
        for event in self.c.publishes:
            seen.setdefault(event)
        yield from seen

    def event_model(self, event: str) -> str:
        found = self.c.catalog_event(event)
        if found is None:  # lint reports it (E001/E002); the payload is then untyped
            self.w.typing.add("Any")
            return "BaseModel"
        catalog, index = found
        return self._model(catalog, catalog.events[index].payload_model)

    # --- sections -------------------------------------------------------------------------------------------------

    def render(self, source: str, sha256: str) -> str:
        for name in self.c.models:
            self._model(None, name)
        event_models = {e: self.event_model(e) for e in self._events()}
        effects = self._effects_class(event_models)
        base = self._base_class(event_models)
        models = "\n\n\n".join(self.w.classes)
        if self.w.classes:
            models = "\n" + models + "\n"
        rebuild = [f"{n}.model_rebuild()" for n in self.w.names]
        if rebuild:
            models += "\n\n" + "\n".join(rebuild) + "\n"
        mapping = ", ".join(f"{py_literal(e)}: {m}" for e, m in event_models.items())
        if len(mapping) + 50 > 120:
            mapping = "\n" + "".join(f"    {py_literal(e)}: {m},\n" for e, m in event_models.items())
        text = fill(
            "node_module.py.tmpl",
            generator=GENERATOR,
            source=source,
            sha256=sha256,
            name=self.c.name,
            kind=str(self.c.node_type),
            imports=self._imports(),
            models=models,
            event_models=mapping,
            statements="".join(self.statements),
            helpers="".join(self.helpers),
            effects_class=effects,
            base_class=base,
        )
        return text.rstrip("\n") + "\n"

    def _need(self, module: str, *names: str) -> None:
        self.imports.setdefault(module, set()).update(names)

    def _imports(self) -> str:
        self._need("typing", "Any", *self.w.typing)
        pydantic = {"BaseModel", "ConfigDict"}
        if self.w.uses_field:
            pydantic.add("Field")
        if self.w.uses_root:
            pydantic.add("RootModel")
        self._need("pydantic", *pydantic)
        stdlib = ["abc", "collections.abc", "datetime", "decimal", "typing", "uuid"]
        blocks = []
        std = ["import abc"] if "abc" in self.imports else []
        std += [_from(m, self.imports[m]) for m in stdlib[1:] if m in self.imports]
        blocks.append("\n".join(std))
        blocks.append(_from("pydantic", self.imports["pydantic"]))
        first = [_from(m, names) for m, names in sorted(self.imports.items()) if m.startswith("framework.")]
        if first:
            blocks.append("\n".join(first))
        return "\n\n".join(b for b in blocks if b)

    def _effects_class(self, event_models: dict[str, str]) -> str:
        if not self.c.effects:
            return ""
        self._need("collections.abc", "Mapping")
        methods = []
        for effect in self.c.effects:
            methods.append(self._effect_method(effect, event_models))
        text = fill(
            "effects_class.py.tmpl",
            class_name=self.effects_class_name,
            name=self.c.name,
            methods="".join(methods),
        )
        return text.rstrip("\n") + "\n"

    @property
    def effects_class_name(self) -> str:
        return pascal(self.c.name) + "Effects"

    def _effect_method(self, effect: Any, event_models: dict[str, str]) -> str:
        name = effect.name
        call = f'self._effects["{name}"]'
        doc = f'        """{_one_line(effect.description) or _effect_summary(effect)}"""\n'
        if len(doc) > 121:
            doc = f'        """{_effect_summary(effect)}"""\n'
        if isinstance(effect, Blake3Effect):
            return (
                f"\n    async def {name}(self, data: bytes) -> str:\n{doc}"
                f"        digest: str = await {call}(data)\n        return digest\n"
            )
        if isinstance(effect, KafkaEffect):
            self._need("framework.events.envelope", "OnexEnvelopeV1")
            model = event_models.get(effect.event) or self.event_model(effect.event)
            return (
                f"\n    async def {name}(self, payload: {model}) -> OnexEnvelopeV1:\n{doc}"
                f"        envelope: OnexEnvelopeV1 = await {call}(_dump(payload))\n        return envelope\n"
            )
        if isinstance(effect, HttpEffect):
            return (
                f"\n    async def {name}(self, json: Any = None, *, params: dict[str, str] | None = None) -> Any:\n"
                f"{doc}        return await {call}(json, params=params)\n"
            )
        assert isinstance(effect, PostgresEffect)
        statement = fixed_statement(effect)
        if statement is not None:
            return self._postgres_fixed(effect, statement, doc)
        keys = [(k, field_name(k)) for k in effect.key]
        key_params = ", ".join(f"{py}: Any" for _, py in keys)
        key_args = ", ".join(f"{k}={py}" if k == py else f"**{{{py_literal(k)}: {py}}}" for k, py in keys)
        op = effect.operation
        if op in ("insert", "upsert"):
            self._need("collections.abc", "Iterable")
            return (
                f"\n    async def {name}(self, row: Mapping[str, Any]) -> Mapping[str, Any] | None:\n{doc}"
                f"        stored: Mapping[str, Any] | None = await {call}(row)\n        return stored\n"
                f"\n    async def {name}_many(self, rows: Iterable[Mapping[str, Any]]) -> int:\n"
                f'        """{op.capitalize()} ``rows`` (all with the same columns) in one batch; return how many."""\n'
                f"        count: int = await {call}.many(rows)\n        return count\n"
            )
        if op == "select":
            return (
                f"\n    async def {name}(self, *, {key_params}) -> list[Mapping[str, Any]]:\n{doc}"
                f"        rows: list[Mapping[str, Any]] = await {call}({key_args})\n        return rows\n"
            )
        values = "values: Mapping[str, Any], " if op == "update" else ""
        passed = "values, " if op == "update" else ""
        return (
            f"\n    async def {name}(self, {values}*, {key_params}) -> int:\n{doc}"
            f"        count: int = await {call}({passed}{key_args})\n        return count\n"
        )

    # --- postgres effects with SQL fixed by the contract ---------------------------------------------------------

    def _column_type(self, effect: PostgresEffect, column: str) -> str:
        declared = effect.column_types.get(column) or effect.returning_types.get(column)
        annotation = column_annotation(declared)
        for name, module in COLUMN_TYPE_MODULES.items():
            if name in annotation.replace("[", " ").replace("]", " ").replace("|", " ").split():
                self._need(module, name)
        return annotation

    def _typed_dict(self, name: str, effect: PostgresEffect, columns: tuple[str, ...], what: str) -> str:
        self._need("typing", "TypedDict")
        doc = f'    """{what}"""'
        fields = [(c, self._column_type(effect, c)) for c in columns]
        if all(c.isidentifier() and not keyword.iskeyword(c) for c, _ in fields):
            body = "".join(f"    {c}: {ann}\n" for c, ann in fields)
            return f"\n\nclass {name}(TypedDict):\n{doc}\n\n{body}"
        items = "".join(f"        {py_literal(c)}: {ann},\n" for c, ann in fields)
        return f'\n\n{name} = TypedDict(\n    "{name}",\n    {{\n{items}    }},\n)\n'

    def _postgres_fixed(self, effect: PostgresEffect, st: PostgresStatement, doc: str) -> str:
        self._need("framework.adapters.postgres_effects", "PostgresStatement", "run_statement")
        name, op, table = effect.name, effect.operation, effect.table
        const = name.upper() + "_SQL"
        call = f'self._effects["{name}"]'
        key_params = ", ".join(f"{field_name(k)}: {self._column_type(effect, k)}" for k in st.key)
        key_items = ", ".join(f"{py_literal(k)}: {field_name(k)}" for k in st.key)
        parts: list[str] = []
        row_name = ""
        if op != "delete" and (op != "select" or effect.columns):
            row_name = pascal(name) + ("Values" if op == "update" else "Row")
            if row_name in self.w.names:
                row_name += "Columns"
            shown = tuple(c for c in st.params if c not in st.key) if op == "update" else st.params
            if op == "select":
                shown = tuple(_select_columns(effect))
            what = {
                "insert": f"A row of ``{table}`` as ``{name}`` inserts and returns it.",
                "upsert": f"A row of ``{table}`` as ``{name}`` upserts and returns it.",
                "select": f"A row of ``{table}`` as ``{name}`` reads it.",
                "update": f"The values ``{name}`` sets in ``{table}``.",
            }[op]
            parts.append(self._typed_dict(row_name, effect, shown, what))
        returned = row_name
        if op in ("insert", "upsert") and st.returning not in ((), st.params):
            returned = pascal(name) + "Returned"
            if returned in self.w.names:
                returned += "Columns"
            parts.append(
                self._typed_dict(returned, effect, st.returning, f"The row ``{name}`` returns: its ``returning``.")
            )
        parts.append(_statement_constant(const, st))
        self.statements.extend(parts)
        if op in ("insert", "upsert"):
            self._need("collections.abc", "Iterable")
            single = (
                f"\n    async def {name}(self, row: {row_name}) -> {returned}:\n{doc}"
                + _wrap_call(f"        stored: {returned} = await run_statement(", f"{call}, {const}, row)")
                + "        return stored\n"
            )
            if not st.many_sql:
                self._need("framework.adapters.postgres_effects", "run_statement_many")
                return single + (
                    f"\n    async def {name}_many(self, rows: Iterable[{row_name}]) -> int:\n"
                    f'        """{op.capitalize()} ``rows`` in one batch (``executemany``); return how many."""\n'
                    + _wrap_call("        return await run_statement_many(", f"{call}, {const}, rows)")
                )
            self._need("framework.adapters.postgres_effects", "run_statement_rows")
            rule = " (distinct keys)" if op == "upsert" else ""
            return single + (
                "\n"
                + _wrap_signature(f"    async def {name}_many(self, rows: Iterable[{row_name}]) -> list[{returned}]:\n")
                + f'        """{op.capitalize()} ``rows`` in one statement{rule}; return the stored rows, in order."""'
                + "\n"
                + _wrap_call(f"        stored: list[{returned}] = await run_statement_rows(", f"{call}, {const}, rows)")
                + "        return stored\n"
            )
        if op == "select":
            rows = f"list[{row_name}]" if row_name else "list[dict[str, Any]]"
            return (
                "\n"
                + _wrap_signature(f"    async def {name}(self, *, {key_params}) -> {rows}:\n")
                + doc
                + (
                    _wrap_call(f"        rows: {rows} = await run_statement(", f"{call}, {const}, {{{key_items}}})")
                    + "        return rows\n"
                )
            )
        values = f"values: {row_name}, " if op == "update" else ""
        merged = f"{{**values, {key_items}}}" if op == "update" else f"{{{key_items}}}"
        return (
            "\n"
            + _wrap_signature(f"    async def {name}(self, {values}*, {key_params}) -> int:\n")
            + doc
            + (
                _wrap_call("        count: int = await run_statement(", f"{call}, {const}, {merged})")
                + "        return count\n"
            )
        )

    def _base_class(self, event_models: dict[str, str]) -> str:
        kind = self.c.node_type
        kind_base = KIND_BASES[kind]
        self._need("framework.runtime.kinds", kind_base)
        self._need("framework.events.envelope", "OnexEnvelopeV1")
        self._need("abc")
        members: list[str] = []
        abstract_note = ""
        if self.c.effects:
            members.append(
                f"\n    @property\n    def typed_effects(self) -> {self.effects_class_name}:\n"
                f'        """The declared effects, typed."""\n'
                f"        return {self.effects_class_name}(self.effects)\n"
            )
        for event, model in event_models.items():
            members.append(
                f"\n    @staticmethod\n    def {snake(event)}_payload(event: OnexEnvelopeV1) -> {model}:\n"
                f'        """The payload of a ``{event}`` event as its model."""\n'
                f"        return {model}.model_validate(event.payload)\n"
            )
        if kind is not NodeType.COMPUTE:
            for event in self.c.publishes:
                model = event_models[event]
                members.append(
                    f"\n    async def publish_{snake(event)}(self, payload: {model}) -> OnexEnvelopeV1:\n"
                    f'        """Publish ``{event}``."""\n'
                    f'        return await self.publish("{event}", _dump(payload))\n'
                )
        if kind is NodeType.COMPUTE:
            members.append(self._compute(event_models))
            abstract_note = ": implement ``compute_typed``"
        elif kind not in _KINDS_WITH_HANDLERS and self.c.subscriptions:
            typed = self._handlers(event_models, members)
            abstract_note = ": implement " + ", ".join(f"``{t}``" for t in typed)
            members.insert(0, self._init_subclass(pascal(self.c.name) + "Base"))
        extras = [] if kind is NodeType.COMPUTE else ["publishers"]
        if self.c.effects:
            extras.append("effects")
        extras_text = "".join(", " + e for e in extras[:-1]) + (" and " + extras[-1] if extras else "")
        return fill(
            "base_class.py.tmpl",
            class_name=pascal(self.c.name) + "Base",
            kind_base=kind_base,
            name=self.c.name,
            extras=extras_text,
            abstract_note=abstract_note,
            members="".join(members),
        )

    def _init_subclass(self, class_name: str) -> str:
        pairs = ", ".join(f'("{d}", "{t}")' for d, t in self._dispatch)
        if len(self._dispatch) == 1:
            pairs += ","
        self.helpers.append(_NOT_DISPATCHED)
        loop = f"        for dispatcher, typed in ({pairs}):\n"
        if len(loop) > 121:
            body = "".join(f'            ("{d}", "{t}"),\n' for d, t in self._dispatch)
            loop = f"        for dispatcher, typed in (\n{body}        ):\n"
        return (
            "\n    def __init_subclass__(cls, **kwargs: Any) -> None:\n"
            '        """A subclass that overrides a dispatcher takes the envelope itself: the typed handler that\n'
            '        dispatcher would call is then not required of it."""\n'
            "        super().__init_subclass__(**kwargs)\n"
            f"{loop}"
            f"            overridden = getattr(cls, dispatcher) is not getattr({class_name}, dispatcher)\n"
            '            if overridden and getattr(getattr(cls, typed), "__isabstractmethod__", False):\n'
            "                setattr(cls, typed, _not_dispatched)\n"
        )

    def _handlers(self, event_models: dict[str, str], members: list[str]) -> list[str]:
        self._dispatch: list[tuple[str, str]] = []
        by_method: dict[str, list[str]] = {}
        for sub in self.c.subscriptions:
            by_method.setdefault(sub.handler, [])
            if sub.event not in by_method[sub.handler]:
                by_method[sub.handler].append(sub.event)
        typed_names: list[str] = []
        for method, events in by_method.items():
            lines = [f"\n    async def {method}(self, event: OnexEnvelopeV1) -> None:\n"]
            lines.append('        """Parse the payload and call the typed handler."""\n')
            for i, event in enumerate(events):
                typed = f"handle_{snake(event)}"
                if typed == method:
                    typed += "_typed"
                typed_names.append(typed)
                self._dispatch.append((method, typed))
                call = f"await self.{typed}({event_models[event]}.model_validate(event.payload), event)"
                if len(events) == 1:
                    lines.append(f"        {call}\n")
                else:
                    lines.append(f'        {"if" if i == 0 else "elif"} event.event_type == "{event}":\n')
                    lines.append(f"            {call}\n")
            members.append("".join(lines))
            for event in events:
                typed = typed_names[len(typed_names) - len(events) + events.index(event)]
                members.append(
                    f"\n    @abc.abstractmethod\n"
                    f"    async def {typed}(self, payload: {event_models[event]}, event: OnexEnvelopeV1) -> None:\n"
                    f'        """Handle ``{event}``: ``payload`` is its typed payload, ``event`` its envelope."""\n'
                )
        return typed_names

    def _compute(self, event_models: dict[str, str]) -> str:
        self._need("framework.runtime.kinds", "Emit")
        c = self.c
        if c.input_model:
            source = self._model(None, c.input_model)
        elif len(c.subscriptions) == 1:
            source = event_models[c.subscriptions[0].event]
        else:
            source = ""
        if c.output_model:
            out = self._model(None, c.output_model)
        elif len(c.publishes) == 1:
            out = event_models[c.publishes[0]]
        else:
            out = ""
        param = source or "dict[str, Any]"
        parsed = f"{source}.model_validate(payload)" if source else "payload"
        returns = f"{out} | list[Emit]" if out else "list[Emit]"
        convert = (
            "        if isinstance(result, list):\n            return result\n        return _dump(result)\n"
            if out
            else "        return result\n"
        )
        return (
            "\n    def compute(self, payload: dict[str, Any]) -> dict[str, Any] | list[Emit]:\n"
            '        """Parse the input, run ``compute_typed``, and hand its output back as JSON."""\n'
            f"        result = self.compute_typed({parsed})\n{convert}"
            "\n    @abc.abstractmethod\n"
            f"    def compute_typed(self, payload: {param}) -> {returns}:\n"
            '        """The computation: the typed input in, the typed output (or a list of ``Emit``) out."""\n'
        )


_NOT_DISPATCHED = '''

async def _not_dispatched(self: Any, payload: Any, event: OnexEnvelopeV1) -> None:
    """The typed handler of a dispatcher that the subclass overrides: nothing calls it."""
    raise NotImplementedError(f"{type(self).__name__} handles {event.event_type} in its own dispatcher")
'''


def _select_columns(effect: PostgresEffect) -> list[str]:
    columns = list(effect.columns)
    return columns + [k for k in effect.key if k not in columns]


def _sql_literal(text: str) -> str:
    """A string literal as ``ruff format`` writes it: single quotes when that spares escaping double ones."""
    if '"' in text and "'" not in text:
        return "'" + text.replace("\\", "\\\\") + "'"
    return py_literal(text)


def _split_sql(sql: str, width: int) -> list[str]:
    """``sql`` in pieces of at most ``width`` characters (as literals), cut after spaces."""
    pieces: list[str] = []
    current = ""
    for word in sql.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and len(_sql_literal(candidate + " ")) > width:
            pieces.append(current + " ")
            current = word
        else:
            current = candidate
    pieces.append(current)
    return [_sql_literal(p) for p in pieces]


def _string_arg(name: str, text: str) -> str:
    single = f"    {name}={_sql_literal(text)},"
    if len(single) <= 120:
        return single + "\n"
    pieces = "".join(f"        {p}\n" for p in _split_sql(text, 120 - 8))
    return f"    {name}=(\n{pieces}    ),\n"


def _tuple_arg(name: str, items: tuple[str, ...]) -> str:
    inner = ", ".join(py_literal(i) for i in items) + ("," if len(items) == 1 else "")
    single = f"    {name}=({inner}),"
    if len(single) <= 120:
        return single + "\n"
    body = "".join(f"        {py_literal(i)},\n" for i in items)
    return f"    {name}=(\n{body}    ),\n"


def _statement_constant(const: str, st: PostgresStatement) -> str:
    text = (
        f"\n\n#: ``{st.effect}``: {st.operation} on ``{st.table}``, its SQL fixed by the contract.\n"
        f"{const} = PostgresStatement(\n"
        f'    effect="{st.effect}",\n'
        f'    operation="{st.operation}",\n'
        f'    table="{st.table}",\n'
        + _string_arg("sql", st.sql)
        + _tuple_arg("params", st.params)
        + _tuple_arg("key", st.key)
    )
    if st.batch_sql:
        text += _string_arg("batch_sql", st.batch_sql)
    if st.keep:
        text += _tuple_arg("keep", st.keep)
    if st.increment:
        text += _tuple_arg("increment", st.increment)
    if st.returning:
        text += _tuple_arg("returning", st.returning)
    if st.many_sql:
        text += _string_arg("many_sql", st.many_sql)
    return text + ")\n"


def _wrap_signature(line: str) -> str:
    """A ``def`` line, exploded one parameter per line as ``ruff format`` does when it is too long."""
    if len(line) <= 121:
        return line
    head, _, rest = line.partition("(")
    params, _, tail = rest.rpartition(")")
    body = "".join(f"        {p.strip()},\n" for p in params.split(", "))
    return f"{head}(\n{body}    ){tail}"


def _wrap_call(head: str, args: str) -> str:
    line = head + args + "\n"
    if len(line) <= 121:
        return line
    return f"{head}\n            {args.removesuffix(')')}\n        )\n"


def _from(module: str, names: set[str]) -> str:
    ordered = sorted(names, key=lambda n: (not n.isupper() or len(n) == 1, n))
    ordered = sorted(names)
    line = f"from {module} import {', '.join(ordered)}"
    if len(line) <= 120:
        return line
    body = "".join(f"    {n},\n" for n in ordered)
    return f"from {module} import (\n{body})"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace('"""', "'''").replace("\\", "/")


def _effect_summary(effect: Any) -> str:
    if isinstance(effect, Blake3Effect):
        return "blake3: the BLAKE3 hex digest of ``data``."
    if isinstance(effect, KafkaEffect):
        return f"kafka: publish ``{effect.event}`` with ``payload``; returns its envelope."
    if isinstance(effect, HttpEffect):
        return f"http: {effect.method} {effect.url}; returns the JSON (or text) of the reply."
    assert isinstance(effect, PostgresEffect)
    key = ", ".join(effect.key)
    return {
        "insert": f"postgres: insert a row into {effect.table}; returns the stored row.",
        "upsert": f"postgres: insert or update (on {key}) a row of {effect.table}; returns the stored row.",
        "select": f"postgres: the rows of {effect.table} with the given {key}.",
        "update": f"postgres: update the rows of {effect.table} with the given {key}; returns how many.",
        "delete": f"postgres: delete the rows of {effect.table} with the given {key}; returns how many.",
    }[effect.operation]
