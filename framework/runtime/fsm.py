"""The FSM engine: runs the FSM subcontract of a contract, recording every transition through an :class:`FSMStore`.

An :class:`FSMDefinition` compiles an FSM once (guards and action expressions parsed, transitions indexed by state
and trigger); an :class:`FSMEngine` builds and restores :class:`FSMInstance` objects on a store; ``fire`` takes one
transition atomically: either the actions ran, the store recorded the transition and the instance moved, or the
instance is exactly as it was and nothing was recorded.

The engine does no I/O but the store: ``emit`` actions are returned as :class:`Emitted` for the node to publish.
An instance that has never fired has no record, so ``restore`` does not find it; ``get_or_create`` covers both.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from framework.contract.guard import Guard, GuardEvaluationError, GuardSyntaxError, parse_guard
from framework.contract.subcontracts import FSM, CallAction, EmitAction, SetAction, State
from framework.errors import ContractError, TransitionError, TransitionNotAllowed, UsageError
from framework.ports.fsm_store import FSMStore, TransitionRecord

__all__ = ["Emitted", "FSMDefinition", "FSMEngine", "FSMInstance", "FireResult"]

_log = logging.getLogger(__name__)

#: Deeper contexts are refused rather than risking a RecursionError (a self-referencing mapping is infinitely deep).
MAX_CONTEXT_DEPTH: Final = 64
_JSON_TYPES: Final = "null, bool, int, finite float, str, list and mappings with str keys"


@dataclass(frozen=True)
class Emitted:
    """An event an ``emit`` action asked for, with its evaluated payload. The node publishes it."""

    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class FireResult:
    """What one successful ``fire`` did. ``context`` is a read-only snapshot of the context after it."""

    previous: str
    state: str
    transition: str
    trigger: str
    emitted: tuple[Emitted, ...]
    context: Mapping[str, Any]


# --- JSON-compatible contexts ---------------------------------------------------------------------------------------


class _NotJSON(Exception):
    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"'{where}' is {what}, which is not JSON-compatible; allowed: {_JSON_TYPES}")


def _json_copy(value: Any, where: str, depth: int = 0) -> Any:
    """A deep copy made of plain JSON types only, so that a context can be recorded, compared and restored as is.

    Subclasses of str and int (enums) become the plain values JSON would write; tuples become lists.
    """
    if depth > MAX_CONTEXT_DEPTH:
        raise _NotJSON(where, f"nested deeper than {MAX_CONTEXT_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(where, f"{value!r} (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)  # str() of a (str, Enum) member is its name, not its value
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(where, f"a mapping with the {type(key).__name__} key {key!r}")
            copied[str.__str__(key)] = _json_copy(item, f"{where}.{key}", depth + 1)
        return copied
    if isinstance(value, list | tuple):
        return [_json_copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise _NotJSON(where, f"a {type(value).__name__} ({value!r:.60})")


def _json_context(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """Validate and copy a context handed in by a caller: a bad one is a usage error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{what} must be a mapping of field names to JSON values, got {type(value).__name__}")
    try:
        copied: dict[str, Any] = _json_copy(value, "context")
    except _NotJSON as error:
        raise UsageError(f"{what}: {error}") from None
    return copied


# --- the compiled definition ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Set:
    where: str
    fields: tuple[tuple[str, Guard], ...]


@dataclass(frozen=True, slots=True)
class _Emit:
    where: str
    event: str
    payload: tuple[tuple[str, Guard], ...]


@dataclass(frozen=True, slots=True)
class _Call:
    where: str
    method: str


_Action: TypeAlias = _Set | _Emit | _Call


@dataclass(frozen=True, slots=True)
class _Edge:
    name: str
    to: str
    guard: Guard | None
    actions: tuple[_Action, ...]


class FSMDefinition:
    """An FSM subcontract compiled once: guards and expressions parsed, transitions indexed by (state, trigger).

    Raises :class:`ContractError` for an FSM that cannot run (the lint of ``onex validate`` reports the same
    problems with positions; this is the guard for FSMs built without it).
    """

    def __init__(self, fsm: FSM) -> None:
        self.fsm = fsm
        self.name: str = fsm.state_machine_name
        self.initial_state: str = fsm.initial_state
        self.states: Mapping[str, State] = MappingProxyType({state.name: state for state in fsm.states})
        problems = self._problems()
        if problems:
            raise ContractError(f"FSM '{self.name}' cannot run: {'; '.join(problems)}")
        self._entry = {s.name: self._compile(s.on_entry, f"on_entry of state '{s.name}'") for s in fsm.states}
        self._exit = {s.name: self._compile(s.on_exit, f"on_exit of state '{s.name}'") for s in fsm.states}
        index: dict[tuple[str, str], list[_Edge]] = {}
        for t in fsm.transitions:
            guard = self._guard(t.guard, f"guard of transition '{t.name}'")
            edge = _Edge(t.name, t.to, guard, self._compile(t.actions, f"actions of transition '{t.name}'"))
            for source in dict.fromkeys(t.from_):
                index.setdefault((source, t.trigger), []).append(edge)
        self._index = {key: tuple(edges) for key, edges in index.items()}
        triggers: dict[str, set[str]] = {name: set() for name in self.states}
        for source, trigger in self._index:
            triggers[source].add(trigger)
        self._triggers = {name: sorted(found) for name, found in triggers.items()}
        self.triggers: frozenset[str] = frozenset(t.trigger for t in fsm.transitions)
        self.methods: frozenset[str] = frozenset(
            action.method for actions in self._all_actions() for action in actions if isinstance(action, _Call)
        )

    def _problems(self) -> list[str]:
        declared = ", ".join(sorted(self.states))
        problems: list[str] = []
        for what, names in (
            ("state", [s.name for s in self.fsm.states]),
            ("transition", [t.name for t in self.fsm.transitions]),
        ):
            counts = Counter(names)
            problems += [f"{what} '{name}' is declared twice" for name in sorted(counts) if counts[name] > 1]
        if self.initial_state not in self.states:
            problems.append(f"initial_state '{self.initial_state}' is not a declared state; declared: {declared}")
        for t in self.fsm.transitions:
            for source in t.from_:
                if source not in self.states:
                    problems.append(f"transition '{t.name}' leaves undeclared state '{source}'; declared: {declared}")
                elif self.states[source].terminal:
                    problems.append(f"transition '{t.name}' leaves terminal state '{source}'")
            if t.to not in self.states:
                problems.append(f"transition '{t.name}' enters undeclared state '{t.to}'; declared: {declared}")
        return problems

    def _parse(self, text: str, what: str) -> Guard:
        try:
            return parse_guard(text)
        except GuardSyntaxError as error:
            raise ContractError(f"FSM '{self.name}': {what} does not parse: {error}") from None

    def _guard(self, text: str | None, what: str) -> Guard | None:
        return None if text is None else self._parse(text, what)

    def _expressions(self, exprs: Mapping[str, str], what: str) -> tuple[tuple[str, Guard], ...]:
        return tuple((field, self._parse(text, f"expression for '{field}' of {what}")) for field, text in exprs.items())

    def _compile(self, actions: Iterable[EmitAction | SetAction | CallAction], where: str) -> tuple[_Action, ...]:
        compiled: list[_Action] = []
        for i, action in enumerate(actions, start=1):
            if isinstance(action, SetAction):
                at = f"set action {i} of {where}"
                compiled.append(_Set(at, self._expressions(action.set, at)))
            elif isinstance(action, EmitAction):
                at = f"emit action {i} of {where}"
                compiled.append(_Emit(at, action.emit, self._expressions(action.payload, at)))
            else:
                compiled.append(_Call(f"call action {i} of {where}", action.call))
        return tuple(compiled)

    def _all_actions(self) -> Iterable[tuple[_Action, ...]]:
        yield from self._entry.values()
        yield from self._exit.values()
        for edges in self._index.values():
            yield from (edge.actions for edge in edges)

    def allowed_triggers(self, state: str) -> list[str]:
        """The triggers of the transitions that leave ``state``, sorted; guards are not consulted."""
        return list(self._triggers[state])

    def is_terminal(self, state: str) -> bool:
        return self.states[state].terminal

    def _select(self, state: str, trigger: str, context: Mapping[str, Any]) -> _Edge:
        rejected: list[_Edge] = []
        for edge in self._index.get((state, trigger), ()):
            if edge.guard is None:
                return edge
            try:
                holds = edge.guard.test(context)
            except GuardEvaluationError as error:
                raise GuardEvaluationError(
                    f"{self.name}: guard of transition '{edge.name}' (state '{state}', trigger '{trigger}'): "
                    f"{error.message}",
                    error.offset,
                    error.source,
                ) from None
            if holds:
                return edge
            rejected.append(edge)
        reason = ""
        if rejected:
            reason = "rejected by guards: " + "; ".join(
                f"'{edge.name}' requires {edge.guard.source}" for edge in rejected if edge.guard is not None
            )
        elif trigger not in self.triggers:
            reason = f"'{trigger}' is not a trigger of this machine"
        raise TransitionNotAllowed(self.name, state, trigger, self.allowed_triggers(state), reason=reason)


# --- instances and the engine ---------------------------------------------------------------------------------------


class FSMInstance:
    """One running instance of an FSM. Built by :class:`FSMEngine`; ``fire`` calls on it are serialised."""

    def __init__(self, engine: FSMEngine, instance_id: str, state: str, context: dict[str, Any], sequence: int) -> None:
        self.definition = engine.definition
        self.instance_id = instance_id
        self._engine = engine
        self._state = state
        # Private and replaced, never changed in place, by a successful fire: a failed one leaves it as it was.
        self._context = context
        self._sequence = sequence
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"<FSMInstance {self.definition.name}/{self.instance_id} state={self._state!r} sequence={self._sequence}>"
        )

    @property
    def state(self) -> str:
        return self._state

    @property
    def sequence(self) -> int:
        """The sequence of the last recorded transition; 0 before the first."""
        return self._sequence

    @property
    def terminal(self) -> bool:
        return self.definition.is_terminal(self._state)

    @property
    def context(self) -> Mapping[str, Any]:
        """A read-only snapshot of the context: changing nested values in it changes nothing."""
        return MappingProxyType(_json_copy(self._context, "context"))

    def allowed_triggers(self) -> list[str]:
        return self.definition.allowed_triggers(self._state)

    async def fire(self, trigger: str, context: Mapping[str, Any] | None = None) -> FireResult:
        """Merge ``context`` into the instance's, take the first transition on ``trigger`` whose guard holds, run
        exit, transition and entry actions, and record the transition. Atomic: on any error nothing changed."""
        async with self._lock:
            return await self._fire(trigger, context)

    async def _fire(self, trigger: str, update: Mapping[str, Any] | None) -> FireResult:
        definition, engine = self.definition, self._engine
        working = _json_copy(self._context, "context")
        working.update(_json_context(update, f"context given to fire('{trigger}')"))
        edge = definition._select(self._state, trigger, working)
        emitted: list[Emitted] = []
        actions = (*definition._exit[self._state], *edge.actions, *definition._entry[edge.to])
        for action in actions:
            working = await engine._run(action, working, emitted)
        committed = _json_copy(working, "context")  # nothing a call action holds on to can reach it
        record = TransitionRecord(
            machine=definition.name,
            instance_id=self.instance_id,
            sequence=self._sequence + 1,
            transition=edge.name,
            trigger=trigger,
            from_state=self._state,
            to_state=edge.to,
            at=datetime.now(UTC),
            context=_json_copy(committed, "context"),
        )
        await engine.store.record(record)
        previous = self._state
        self._state, self._context, self._sequence = edge.to, committed, record.sequence
        engine._notify(record)
        return FireResult(previous, edge.to, edge.name, trigger, tuple(emitted), self.context)


class FSMEngine:
    """Builds and restores instances of one FSM on a store, and runs their actions.

    ``implementation`` provides the methods of ``call`` actions; each is called with the context (a private copy
    for this fire) and may change it in place or return a mapping to merge. ``on_transition`` is called with every
    record the store accepted; an error in it is logged, as the transition has already happened.
    """

    def __init__(
        self,
        definition: FSMDefinition,
        store: FSMStore,
        *,
        implementation: object | None = None,
        on_transition: Callable[[TransitionRecord], None] | None = None,
    ) -> None:
        missing = sorted(m for m in definition.methods if not callable(getattr(implementation, m, None)))
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            owner = type(implementation).__name__
            lacking = "no implementation was given" if implementation is None else f"{owner} has no method {names}"
            raise UsageError(f"FSM '{definition.name}' has call actions of {names}, but {lacking}")
        self.definition = definition
        self.store = store
        self.implementation = implementation
        self._on_transition = on_transition

    async def create(self, instance_id: str, context: Mapping[str, Any] | None = None) -> FSMInstance:
        """A new instance at the initial state. Refused when the store already has a record of ``instance_id``."""
        self._check_id(instance_id)
        initial = _json_context(context, f"initial context of '{instance_id}'")
        last = await self.store.last(self.definition.name, instance_id)
        if last is not None:
            raise UsageError(
                f"FSM '{self.definition.name}' instance '{instance_id}' already exists (state '{last.to_state}', "
                f"sequence {last.sequence}); use restore() or get_or_create()"
            )
        return FSMInstance(self, instance_id, self.definition.initial_state, initial, 0)

    async def restore(self, instance_id: str) -> FSMInstance | None:
        """The instance as its last record left it (state, context, sequence), or None if it never fired."""
        self._check_id(instance_id)
        last = await self.store.last(self.definition.name, instance_id)
        if last is None:
            return None
        where = f"FSM '{self.definition.name}' instance '{instance_id}' (sequence {last.sequence})"
        if last.to_state not in self.definition.states:
            declared = ", ".join(sorted(self.definition.states))
            raise TransitionError(
                f"cannot restore {where}: its recorded state '{last.to_state}' is not a state of this FSM; "
                f"declared: {declared}"
            )
        try:
            context = _json_copy(last.context, "context")
        except _NotJSON as error:
            raise TransitionError(f"cannot restore {where}: its recorded {error}") from None
        return FSMInstance(self, instance_id, last.to_state, context, last.sequence)

    async def get_or_create(self, instance_id: str, context: Mapping[str, Any] | None = None) -> FSMInstance:
        """The restored instance, else a new one with ``context`` (which is ignored when restoring)."""
        initial = _json_context(context, f"initial context of '{instance_id}'")
        restored = await self.restore(instance_id)
        if restored is not None:
            return restored
        return FSMInstance(self, instance_id, self.definition.initial_state, initial, 0)

    @staticmethod
    def _check_id(instance_id: str) -> None:
        if not isinstance(instance_id, str) or not instance_id:
            raise UsageError(f"an FSM instance id is a non-empty str, got {instance_id!r}")

    def _notify(self, record: TransitionRecord) -> None:
        if self._on_transition is None:
            return
        try:
            self._on_transition(record)
        except Exception:
            _log.exception(
                "on_transition callback failed for %s/%s sequence %d; the transition stands",
                record.machine,
                record.instance_id,
                record.sequence,
            )

    def _evaluate(
        self, fields: tuple[tuple[str, Guard], ...], context: dict[str, Any], where: str, into: str
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field, expression in fields:
            try:
                value = expression.evaluate(context)
            except GuardEvaluationError as error:
                raise GuardEvaluationError(
                    f"{self.definition.name}: expression for '{field}' of {where}: {error.message}",
                    error.offset,
                    error.source,
                ) from None
            try:
                # A copy: `set: {b: a}` must not make b and a one list that a later call changes together.
                values[field] = _json_copy(value, f"{into}.{field}")
            except _NotJSON as error:
                raise TransitionError(f"{self.definition.name}: {where}: {error}") from None
        return values

    async def _run(self, action: _Action, context: dict[str, Any], emitted: list[Emitted]) -> dict[str, Any]:
        """Run one action on the working context; return the working context for the next one."""
        if isinstance(action, _Set):
            # All fields from the context before the action: a mapping reads as simultaneous, {a: b, b: a} swaps.
            context.update(self._evaluate(action.fields, context, action.where, "context"))
            return context
        if isinstance(action, _Emit):
            emitted.append(Emitted(action.event, self._evaluate(action.payload, context, action.where, "payload")))
            return context
        machine = self.definition.name
        method = getattr(self.implementation, action.method, None)
        if not callable(method):
            owner = type(self.implementation).__name__
            raise TransitionError(f"{machine}: {action.where}: {owner} has no method '{action.method}'")
        try:
            result = method(context)
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            error.add_note(f"in {machine}: {action.where}, calling {action.method}()")
            raise
        if result is not None and not isinstance(result, Mapping):
            raise TransitionError(
                f"{machine}: {action.where}: {action.method}() returned {type(result).__name__}; expected a mapping "
                f"of context fields to merge, or None"
            )
        if result is not None:
            context.update(result)
        try:
            # Checked and copied after the call, which may also have changed the dict in place, or kept it.
            checked: dict[str, Any] = _json_copy(context, "context")
        except _NotJSON as error:
            raise TransitionError(f"{machine}: {action.where}: after {action.method}(), {error}") from None
        return checked
