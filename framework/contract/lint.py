"""Semantic checks of one contract or subcontract, beyond what the schema can say. Each finding points at the
offending key; codes are in :mod:`framework.contract.codes`."""

from __future__ import annotations

import inspect
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from typing import Any

from framework.contract.findings import Finding, Level
from framework.contract.guard import GuardSyntaxError, parse_guard
from framework.contract.imports import import_module
from framework.contract.loader import Document, Loc
from framework.contract.schema_subset import check_model
from framework.contract.spec import Contract, NodeType, PostgresEffect
from framework.contract.subcontracts import (
    FSM,
    Aggregation,
    AggregationType,
    CallAction,
    CommandTarget,
    EmitAction,
    EventCatalog,
    JsonSchema,
    RetryPolicy,
    SetAction,
    Workflow,
)


class Linter:
    """Collects findings for one document; positions come from the document."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.findings: list[Finding] = []

    def add(self, loc: Loc, code: str, message: str, *, level: Level = Level.ERROR, value: bool = False) -> None:
        self.findings.append(Finding.at(self.doc.position(loc, prefer_key=not value), level, code, message))

    # --- contract ---------------------------------------------------------------------------------------------

    def contract(self, c: Contract, *, import_implementation: bool) -> None:
        sub = ("subcontracts",)
        catalogs = self._catalog_locs()
        for i, catalog in enumerate(c.subcontracts.events):
            self.catalog(catalog, catalogs[i])
        if c.subcontracts.fsm is not None:
            self.fsm(c.subcontracts.fsm, (*sub, "fsm"))
            self._fsm_emissions(c, c.subcontracts.fsm, (*sub, "fsm"))
        if c.subcontracts.workflow is not None:
            self.workflow(c.subcontracts.workflow, (*sub, "workflow"), c)
        if c.subcontracts.aggregation is not None:
            self.aggregation(c.subcontracts.aggregation, (*sub, "aggregation"))
        if c.subcontracts.retry is not None:
            self.retry(c.subcontracts.retry, (*sub, "retry"))
        self._kind_rules(c)
        self._events(c)
        self._effects(c)
        self._models(c)
        self._tests(c)
        if import_implementation and c.implementation:
            self._implementation(c)

    def _catalog_locs(self) -> list[Loc]:
        events = (self.doc.data.get("subcontracts") or {}).get("events")
        if isinstance(events, list):
            return [("subcontracts", "events", i) for i in range(len(events))]
        return [("subcontracts", "events")]

    def _kind_rules(self, c: Contract) -> None:
        kind, sub = c.node_type, c.subcontracts
        if kind is NodeType.ORCHESTRATOR and sub.workflow is None:
            self.add(("node_type",), "W002", "an ORCHESTRATOR needs a workflow subcontract (subcontracts.workflow)")
        if kind is not NodeType.ORCHESTRATOR and sub.workflow is not None:
            self.add(("subcontracts", "workflow"), "W002", f"a {kind} node has no workflow; only ORCHESTRATOR nodes do")
        if kind is NodeType.REDUCER and sub.aggregation is None:
            self.add(("node_type",), "A003", "a REDUCER needs an aggregation subcontract (subcontracts.aggregation)")
        if kind is not NodeType.REDUCER and sub.aggregation is not None:
            self.add(
                ("subcontracts", "aggregation"), "A003", f"a {kind} node has no aggregation; only REDUCER nodes do"
            )
        if kind is NodeType.EFFECT and not c.effects:
            self.add(("node_type",), "X003", "an EFFECT node must declare at least one effect in 'effects'")
        if kind is NodeType.COMPUTE and c.effects:
            self.add(("effects",), "X004", f"a COMPUTE node is pure and may declare no effects; found {len(c.effects)}")

    def _events(self, c: Contract) -> None:
        seen: Counter[str] = Counter()
        for i, s in enumerate(c.subscriptions):
            seen[s.event] += 1
            if seen[s.event] == 2:
                self.add(
                    ("subscriptions", i, "event"),
                    "E006",
                    f"'{s.event}' is subscribed to more than once",
                    level=Level.WARNING,
                )
            if c.catalog_event(s.event) is None:
                self.add(
                    ("subscriptions", i, "event"),
                    "E001",
                    f"subscribed event '{s.event}' is in no event catalog of this contract{self._known(c)}",
                )
        for i, name in enumerate(c.publishes):
            if c.catalog_event(name) is None:
                self.add(
                    ("publishes", i),
                    "E002",
                    f"published event '{name}' is in no event catalog of this contract{self._known(c)}",
                )

    @staticmethod
    def _known(c: Contract) -> str:
        names = sorted({e.name for cat in c.subcontracts.events for e in cat.events})
        if not names:
            return " (it declares none: add subcontracts.events)"
        return f"; declared: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}"

    def _effects(self, c: Contract) -> None:
        names: Counter[str] = Counter()
        for i, effect in enumerate(c.effects):
            names[effect.name] += 1
            if names[effect.name] == 2:
                self.add(("effects", i, "name"), "X005", f"effect name '{effect.name}' is used twice")
            if effect.adapter == "postgres" and effect.operation != "insert" and not effect.key:
                self.add(
                    ("effects", i, "operation"),
                    "X002",
                    f"postgres effect '{effect.name}': operation '{effect.operation}' needs 'key' columns",
                )
            if effect.adapter == "postgres":
                self._postgres_options(effect, ("effects", i))
            if effect.adapter == "kafka" and effect.event not in c.publishes:
                self.add(
                    ("effects", i, "event"),
                    "E005",
                    f"kafka effect '{effect.name}' emits '{effect.event}', which is not in publishes",
                )

    def _postgres_options(self, effect: PostgresEffect, loc: Loc) -> None:
        """keep and increment (upsert: declared, non-key columns, each once: X006, X007); returning (insert and
        upsert: each column once, typed when the columns are: X006, X008)."""
        name, op = effect.name, effect.operation
        for option in ("keep", "increment"):
            if getattr(effect, option) and op != "upsert":
                self.add(
                    (*loc, option),
                    "X006",
                    f"postgres effect '{name}': '{option}' is for upserts (a conflict keeps or increments the stored "
                    f"value); operation '{op}' has none",
                )
        if effect.returning and op not in ("insert", "upsert"):
            self.add(
                (*loc, "returning"),
                "X006",
                f"postgres effect '{name}': 'returning' is for inserts and upserts; operation '{op}' returns "
                + ("the rows it reads" if op == "select" else "how many rows it changed"),
            )
        if op == "upsert":
            declared = list(effect.columns)
            seen: set[str] = set()
            for option in ("keep", "increment"):
                for j, column in enumerate(getattr(effect, option)):
                    problem = ""
                    if column in effect.key:
                        problem = f"is a key column ({', '.join(effect.key)}), which a conflict never updates"
                    elif column not in declared:
                        problem = (
                            f"is not among its declared columns ({', '.join(declared)})"
                            if declared
                            else "is not declared: keep and increment need the effect's columns"
                        )
                    elif column in seen:
                        problem = "is listed twice (a column is either kept or incremented)"
                    seen.add(column)
                    if problem:
                        self.add(
                            (*loc, option, j),
                            "X007",
                            f"postgres effect '{name}': {option} column '{column}' {problem}",
                            value=True,
                        )
        if op in ("insert", "upsert") and effect.returning:
            types = effect.column_types
            known = [*effect.columns, *(k for k in effect.key if k not in effect.columns)]
            returned = list(effect.returning)
            if len(set(returned)) != len(returned):
                self.add((*loc, "returning"), "X008", f"postgres effect '{name}': 'returning' lists a column twice")
            for column, given in effect.returning_types.items():
                if column in types and types[column] != given:
                    self.add(
                        (*loc, "returning", column),
                        "X008",
                        f"postgres effect '{name}': returned column '{column}' is declared as '{types[column]}' in "
                        f"columns, not '{given}'",
                        value=True,
                    )
            if types and isinstance(effect.returning, list):
                for j, column in enumerate(effect.returning):
                    if column not in known:
                        self.add(
                            (*loc, "returning", j),
                            "X008",
                            f"postgres effect '{name}': returned column '{column}' has no type (the columns are "
                            f"typed, it is not among them): write returning as a mapping, e.g. "
                            f"{{{column}: timestamptz}}",
                            value=True,
                        )

    def _models(self, c: Contract) -> None:
        for field in ("input_model", "output_model"):
            name = getattr(c, field)
            if name is not None and name not in c.models:
                self.add((field,), "M001", f"{field} '{name}' is not declared in models{_listing(c.models)}")
        state = c.subcontracts.state
        if state is not None and state.model is not None and state.model not in c.models:
            self.add(
                ("subcontracts", "state", "model"),
                "M001",
                f"state model '{state.model}' is not declared in models{_listing(c.models)}",
            )
        self.models(c.models, ("models",))

    def _tests(self, c: Contract) -> None:
        """The ``tests:`` block names only what the contract declares (T001-T004); case names are unique (T005)."""
        subscribed = [s.event for s in c.subscriptions]
        effects = [e.name for e in c.effects]
        fsm = c.subcontracts.fsm
        states = [s.name for s in fsm.states] if fsm is not None else []
        names: Counter[str] = Counter()
        for i, case in enumerate(c.tests):
            loc: Loc = ("tests", i)
            names[case.name] += 1
            if names[case.name] == 2:
                self.add((*loc, "name"), "T005", f"test name '{case.name}' is used twice")
            if case.given.event not in subscribed:
                self.add(
                    (*loc, "given", "event"),
                    "T001",
                    f"test '{case.name}' delivers '{case.given.event}', which {c.name} does not subscribe to; "
                    f"subscribed: {', '.join(subscribed) or 'none'}",
                )
            for j, expected in enumerate(case.expect.events or []):
                if expected.event not in c.publishes:
                    self.add(
                        (*loc, "expect", "events", j, "event"),
                        "T002",
                        f"test '{case.name}' expects '{expected.event}', which is not in publishes",
                    )
            for part, state in (("given", case.given.state), ("expect", case.expect.state)):
                if state is None:
                    continue
                if fsm is None:
                    self.add(
                        (*loc, part, "state"),
                        "T003",
                        f"test '{case.name}' names state '{state}', but {c.name} has no fsm subcontract",
                    )
                elif state not in states:
                    self.add(
                        (*loc, part, "state"),
                        "T003",
                        f"test '{case.name}' names state '{state}', which is not a state of fsm "
                        f"'{fsm.state_machine_name}'; declared: {', '.join(states)}",
                    )
            for j, call in enumerate(case.expect.effects or []):
                if call.effect not in effects:
                    self.add(
                        (*loc, "expect", "effects", j, "effect"),
                        "T004",
                        f"test '{case.name}' expects a call of effect '{call.effect}', which is not declared"
                        f"{_declared(effects)}",
                    )
            for name in case.given.returns:
                if name not in effects:
                    self.add(
                        (*loc, "given", "returns", name),
                        "T004",
                        f"test '{case.name}' states what effect '{name}' returns, but it is not declared"
                        f"{_declared(effects)}",
                    )

    def _implementation(self, c: Contract) -> None:
        assert c.implementation is not None
        module_name, _, class_name = c.implementation.partition(":")
        loc: Loc = ("implementation",)
        try:
            module = import_module(module_name)
        except Exception as exc:
            self.add(loc, "I001", f"cannot import module '{module_name}': {type(exc).__name__}: {exc}")
            return
        cls = getattr(module, class_name, None)
        if not inspect.isclass(cls):
            self.add(loc, "I002", f"module '{module_name}' has no class '{class_name}'")
            return
        # Every node base of the runtime declares node_type; the contract layer cannot import the runtime to check
        # subclassing, and a class without it is no node at all.
        declared = getattr(cls, "node_type", None)
        if declared is None:
            self.add(
                loc,
                "I003",
                f"{class_name} is not a node class: subclass the base of its kind "
                f"(framework.runtime.kinds: {c.node_type.title()}Node)",
            )
        elif str(declared) != str(c.node_type):
            self.add(loc, "I003", f"{class_name} is a {declared} implementation; this contract is {c.node_type}")
        for i, s in enumerate(c.subscriptions):
            if not callable(getattr(cls, s.handler, None)):
                self.add(
                    ("subscriptions", i, "handler"),
                    "I004",
                    f"{class_name} has no method '{s.handler}' to handle '{s.event}'",
                )

    # --- subcontracts -----------------------------------------------------------------------------------------

    def fsm(self, fsm: FSM, base: Loc) -> None:
        states = {s.name for s in fsm.states}
        named: tuple[tuple[str, str, list[str]], ...] = (
            ("F006", "states", [s.name for s in fsm.states]),
            ("F007", "transitions", [t.name for t in fsm.transitions]),
        )
        for code, key, names in named:
            count: Counter[str] = Counter()
            for i, name in enumerate(names):
                count[name] += 1
                if count[name] == 2:
                    self.add((*base, key, i, "name"), code, f"{key[:-1]} name '{name}' is declared twice")
        if fsm.initial_state not in states:
            self.add(
                (*base, "initial_state"),
                "F001",
                f"initial_state '{fsm.initial_state}' is not a declared state; declared: {', '.join(sorted(states))}",
            )
        terminal = {s.name for s in fsm.states if s.terminal}
        edges: defaultdict[str, set[str]] = defaultdict(set)
        unguarded: dict[tuple[str, str], str] = {}
        for i, t in enumerate(fsm.transitions):
            tloc = (*base, "transitions", i)
            for j, src in enumerate(t.from_):
                if src not in states:
                    self.add(
                        (*tloc, "from", j) if len(t.from_) > 1 else (*tloc, "from"),
                        "F002",
                        f"transition '{t.name}' leaves undeclared state '{src}'; declared: {', '.join(sorted(states))}",
                    )
                elif src in terminal:
                    self.add((*tloc, "from"), "F005", f"transition '{t.name}' leaves terminal state '{src}'")
                edges[src].add(t.to)
                if t.guard is None:
                    first = unguarded.setdefault((src, t.trigger), t.name)
                    if first != t.name:
                        self.add(
                            (*tloc, "trigger"),
                            "F009",
                            f"transitions '{first}' and '{t.name}' both leave '{src}' on '{t.trigger}' unguarded",
                            level=Level.WARNING,
                        )
            if t.to not in states:
                self.add(
                    (*tloc, "to"),
                    "F002",
                    f"transition '{t.name}' enters undeclared state '{t.to}'; declared: {', '.join(sorted(states))}",
                )
            if t.guard is not None:
                self._expression(t.guard, (*tloc, "guard"), "F008", f"guard of transition '{t.name}'")
            self._actions(t.actions, (*tloc, "actions"))
        for i, s in enumerate(fsm.states):
            self._actions(s.on_entry, (*base, "states", i, "on_entry"))
            self._actions(s.on_exit, (*base, "states", i, "on_exit"))
            if not s.terminal and not edges.get(s.name):
                self.add(
                    (*base, "states", i, "name"),
                    "F004",
                    f"state '{s.name}' is not terminal and no transition leaves it",
                )
        if fsm.initial_state in states:
            reached = _reachable(fsm.initial_state, edges)
            for i, s in enumerate(fsm.states):
                if s.name not in reached:
                    self.add(
                        (*base, "states", i, "name"),
                        "F003",
                        f"state '{s.name}' cannot be reached from initial state '{fsm.initial_state}'",
                        level=Level.WARNING,
                    )

    def _actions(self, actions: list[EmitAction | SetAction | CallAction], base: Loc) -> None:
        for i, action in enumerate(actions):
            exprs = (
                action.payload
                if isinstance(action, EmitAction)
                else action.set
                if isinstance(action, SetAction)
                else {}
            )
            key = "payload" if isinstance(action, EmitAction) else "set"
            for field, expr in exprs.items():
                self._expression(expr, (*base, i, key, field), "F008", f"expression for '{field}'")

    def _fsm_emissions(self, c: Contract, fsm: FSM, base: Loc) -> None:
        for loc, action in _emit_actions(fsm, base):
            if action.emit not in c.publishes:
                self.add((*loc, "emit"), "E005", f"FSM action emits '{action.emit}', which is not in publishes")

    def _expression(self, text: str, loc: Loc, code: str, what: str) -> None:
        try:
            parse_guard(text)
        except GuardSyntaxError as exc:
            self.add(loc, code, f"{what} does not parse: {exc}", value=True)

    def catalog(self, catalog: EventCatalog, base: Loc) -> None:
        count: Counter[str] = Counter()
        for i, event in enumerate(catalog.events):
            count[event.name] += 1
            if count[event.name] == 2:
                self.add(
                    (*base, "events", i, "name"),
                    "E004",
                    f"event '{event.name}' is declared twice in catalog '{catalog.catalog_name}'",
                )
            if event.payload_model not in catalog.models:
                self.add(
                    (*base, "events", i, "payload_model"),
                    "E003",
                    f"payload_model '{event.payload_model}' of '{event.name}' is not in the catalog's "
                    f"models{_listing(catalog.models)}",
                )
        self.models(catalog.models, (*base, "models"))

    def workflow(self, wf: Workflow, base: Loc, c: Contract | None = None) -> None:
        count: Counter[str] = Counter()
        closed: set[str] = set()
        previous: str | None = None
        for i, step in enumerate(wf.steps):
            sloc = (*base, "steps", i)
            count[step.name] += 1
            if count[step.name] == 2:
                self.add((*sloc, "name"), "W001", f"step name '{step.name}' is used twice")
            if step.when is not None:
                self._expression(step.when, (*sloc, "when"), "W003", f"condition of step '{step.name}'")
            group = step.parallel_group
            if group != previous and previous is not None:
                closed.add(previous)
            if group is not None and group in closed:
                self.add(
                    (*sloc, "parallel_group"),
                    "W006",
                    f"step '{step.name}' joins parallel_group '{group}', whose steps are not consecutive",
                )
            previous = group
            if c is not None and isinstance(step.target, CommandTarget):
                if step.target.command not in c.publishes:
                    self.add(
                        (*sloc, "target", "command"),
                        "W005",
                        f"step '{step.name}' sends '{step.target.command}', which is not in publishes",
                    )
                if step.target.reply not in {s.event for s in c.subscriptions}:
                    self.add(
                        (*sloc, "target", "reply"),
                        "W005",
                        f"step '{step.name}' awaits '{step.target.reply}', which is not in subscriptions",
                    )

    def retry(self, retry: RetryPolicy, base: Loc) -> None:
        """A node's delivery policy (a workflow step's retry has no dead-letter topic: its workflow decides)."""
        if not retry.dead_letter:
            self.add(
                (*base, "dead_letter"),
                "R001",
                f"dead_letter is false: a message that fails all {retry.max_attempts} attempts, or is poison, is "
                "dropped and only logged; set dead_letter: true to keep it on the dead-letter topic",
                level=Level.WARNING,
            )

    def aggregation(self, agg: Aggregation, base: Loc) -> None:
        for i, s in enumerate(agg.strategies):
            sloc = (*base, "strategies", i)
            if s.type is AggregationType.TIME_WINDOW and s.window_ms is None:
                self.add((*sloc, "type"), "A001", "a TIME_WINDOW strategy needs window_ms")
            if s.type is AggregationType.SIZE_BUCKETS and (not s.buckets or s.buckets != sorted(set(s.buckets))):
                self.add((*sloc, "type"), "A001", "a SIZE_BUCKETS strategy needs buckets: strictly ascending sizes")
            if s.type is AggregationType.CUSTOM and s.function is None:
                self.add((*sloc, "type"), "A001", "a CUSTOM strategy needs function: 'module:callable'")
        if agg.default not in {s.type for s in agg.strategies}:
            self.add(
                (*base, "default"),
                "A002",
                f"default '{agg.default}' is not among the strategies; declared: "
                f"{', '.join(s.type for s in agg.strategies)}",
            )

    def models(self, models: dict[str, JsonSchema], base: Loc) -> None:
        """Each model is valid JSON Schema of the supported subset (M002, M003) whose $refs name models (M004)."""
        for name, schema in models.items():
            for problem in check_model(name, schema, models):
                self.add((*base, name, *problem.path), problem.code, problem.message)


def _declared(names: list[str]) -> str:
    return f"; declared: {', '.join(names)}" if names else " (the contract declares no effects)"


def _listing(names: dict[str, Any]) -> str:
    return f"; declared: {', '.join(sorted(names))}" if names else " (none are declared)"


def _emit_actions(fsm: FSM, base: Loc) -> Iterator[tuple[Loc, EmitAction]]:
    for i, t in enumerate(fsm.transitions):
        for j, a in enumerate(t.actions):
            if isinstance(a, EmitAction):
                yield (*base, "transitions", i, "actions", j), a
    for i, s in enumerate(fsm.states):
        for key, actions in (("on_entry", s.on_entry), ("on_exit", s.on_exit)):
            for j, a in enumerate(actions):
                if isinstance(a, EmitAction):
                    yield (*base, "states", i, key, j), a


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen
