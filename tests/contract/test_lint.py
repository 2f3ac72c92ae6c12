"""Semantic checks of single documents: each check fires where it should, at the offending key, and stays quiet
on the cases that look alike but are fine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from framework.contract.findings import Finding, Level
from framework.contract.validate import validate_file

Check = Callable[..., list[Finding]]


@pytest.fixture
def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Check]:
    """Validates one document (a dict, dumped as YAML, or YAML text) that must parse; returns the lint findings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def run(data: dict[str, Any] | str, *, imports: bool = False, name: str = "doc.yaml") -> list[Finding]:
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        loaded, findings = validate_file(path, import_implementation=imports)
        assert loaded is not None, [f.format() for f in findings]
        return findings

    yield run
    for module in set(sys.modules) - before:
        if module.startswith("lint_handlers"):
            del sys.modules[module]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def contract(node_type: str = "COMPUTE", **fields: Any) -> dict[str, Any]:
    return {
        "contract_version": "1.0",
        "name": "node",
        "version": {"major": 1, "minor": 0, "patch": 0},
        "node_type": node_type,
        **fields,
    }


def fsm(states: list[Any], transitions: list[dict[str, Any]], initial: str = "a") -> dict[str, Any]:
    return {
        "kind": "fsm",
        "state_machine_name": "m",
        "initial_state": initial,
        "states": [{"name": s} if isinstance(s, str) else s for s in states],
        "transitions": transitions,
    }


def t(name: str, src: str | list[str], dst: str, trigger: str = "go", **more: Any) -> dict[str, Any]:
    return {"name": name, "from": src, "to": dst, "trigger": trigger, **more}


def end(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "terminal": True, **more}


def catalog(*events: str | dict[str, Any], models: tuple[str, ...] = ("P",), name: str = "c") -> dict[str, Any]:
    return {
        "catalog_name": name,
        "models": {m: {"type": "object"} for m in models},
        "events": [{"name": e, "payload_model": "P"} if isinstance(e, str) else e for e in events],
    }


# --- FSM ----------------------------------------------------------------------------------------------------------


def test_a_sound_fsm_has_no_findings(check: Check) -> None:
    machine = fsm(
        ["a", "b", end("done"), end("failed")],
        [
            t("start", "a", "b", "start"),
            t("loop", "b", "b", "tick", guard="n < 3", actions=[{"set": {"n": "n + 1"}}]),
            t("finish", "b", "done", "tick", guard="n >= 3", actions=[{"emit": "x-done", "payload": {"n": "n"}}]),
            t("fail", ["a", "b"], "failed", "fail", actions=[{"call": "anything_at_all"}]),
        ],
    )
    assert check(machine) == []


def test_F001_initial_state_undeclared(check: Check) -> None:
    found = check(fsm(["b", end("c")], [t("go", "b", "c")], initial="a"))
    assert [f.format() for f in found] == [
        "doc.yaml:3:1: error F001 initial_state 'a' is not a declared state; declared: b, c"
    ]  # and no reachability warnings: there is nothing to reach from


def test_F002_undeclared_source_and_target(check: Check) -> None:
    text = (
        "kind: fsm\nstate_machine_name: m\ninitial_state: a\nstates: [{name: a}, {name: b, terminal: true}]\n"
        "transitions:\n"
        "  - {name: one, from: x, to: b, trigger: go}\n"
        "  - {name: two, from: [a, y], to: z, trigger: go, guard: 'ok'}\n"
    )
    assert [f.format() for f in check(text)] == [
        "doc.yaml:6:17: error F002 transition 'one' leaves undeclared state 'x'; declared: a, b",
        "doc.yaml:7:27: error F002 transition 'two' leaves undeclared state 'y'; declared: a, b",
        "doc.yaml:7:31: error F002 transition 'two' enters undeclared state 'z'; declared: a, b",
        "doc.yaml:4:22: warning F003 state 'b' cannot be reached from initial state 'a'",
    ]


def test_F003_unreachable_states_are_warnings(check: Check) -> None:
    machine = fsm(
        ["a", end("b"), "island", end("beyond")],
        [t("go", "a", "b"), t("leave", "island", "beyond")],
    )
    found = check(machine)
    assert [(f.code, f.level) for f in found] == [("F003", Level.WARNING), ("F003", Level.WARNING)]
    assert found[0].message == "state 'island' cannot be reached from initial state 'a'"
    assert found[1].message == "state 'beyond' cannot be reached from initial state 'a'"


def test_F003_reachability_follows_every_source_of_a_transition(check: Check) -> None:
    machine = fsm(["a", "b", end("c")], [t("go", "a", "b"), t("end", ["a", "b"], "c", "stop")])
    assert check(machine) == []


def test_F004_dead_end(check: Check) -> None:
    found = check(fsm(["a", "b"], [t("go", "a", "b")]))
    assert [f.format() for f in found] == [
        "doc.yaml:6:3: error F004 state 'b' is not terminal and no transition leaves it"
    ]


def test_F004_a_self_loop_is_a_way_out_and_terminal_states_need_none(check: Check) -> None:
    assert check(fsm(["a", end("b")], [t("stay", "a", "a"), t("go", "a", "b", "other")])) == []


def test_F005_transition_out_of_a_terminal_state(check: Check) -> None:
    found = check(fsm(["a", end("b")], [t("go", "a", "b"), t("back", "b", "a", "back")]))
    assert codes(found) == ["F005"]
    assert found[0].message == "transition 'back' leaves terminal state 'b'"


def test_F006_F007_duplicates_are_reported_once_at_the_second(check: Check) -> None:
    found = check(
        fsm(["a", end("b"), "a", "a"], [t("go", "a", "b"), t("go", "a", "b", "other"), t("go", "a", "b", "x")])
    )
    assert [(f.code, f.line, f.message) for f in found] == [
        ("F006", 8, "state name 'a' is declared twice"),
        ("F007", 15, "transition name 'go' is declared twice"),
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"guard": "n =< 3"}, "guard of transition 'go' does not parse: "),
        ({"actions": [{"set": {"n": "n +"}}]}, "expression for 'n' does not parse: "),
        ({"actions": [{"emit": "e", "payload": {"p": "(a"}}]}, "expression for 'p' does not parse: "),
    ],
)
def test_F008_expressions_that_do_not_parse(check: Check, where: dict[str, Any], expected: str) -> None:
    found = check(fsm(["a", end("b")], [t("go", "a", "b", **where)]))
    assert codes(found) == ["F008"]
    assert found[0].message.startswith(expected)
    assert "(at column " in found[0].message


def test_F008_in_state_actions_and_points_at_the_expression(check: Check) -> None:
    text = (
        "kind: fsm\nstate_machine_name: m\ninitial_state: a\n"
        "states:\n  - name: a\n    on_entry: [{set: {x: 'a and'}}]\n    on_exit: [{emit: e, payload: {y: '1 1'}}]\n"
        "  - {name: b, terminal: true}\n"
        "transitions: [{name: go, from: a, to: b, trigger: go}]\n"
    )
    found = check(text)
    assert [(f.code, f.line, f.col) for f in found] == [("F008", 6, 26), ("F008", 7, 38)]


def test_F008_call_actions_are_method_names_not_expressions(check: Check) -> None:
    assert check(fsm(["a", end("b")], [t("go", "a", "b", actions=[{"call": "not_an_expression"}])])) == []


def test_F009_ambiguous_unguarded_transitions(check: Check) -> None:
    found = check(fsm(["a", end("b"), end("c")], [t("one", "a", "b"), t("two", ["x", "a"], "c")]))
    assert ("F009", Level.WARNING) in [(f.code, f.level) for f in found]
    [ambiguous] = [f for f in found if f.code == "F009"]
    assert ambiguous.message == "transitions 'one' and 'two' both leave 'a' on 'go' unguarded"


@pytest.mark.parametrize(
    "second",
    [t("two", "a", "c", guard="ready"), t("two", "a", "c", "other")],
    ids=["guarded", "other-trigger"],
)
def test_F009_not_when_guarded_or_on_another_trigger(check: Check, second: dict[str, Any]) -> None:
    assert check(fsm(["a", end("b"), end("c")], [t("one", "a", "b"), second])) == []


def test_E005_fsm_emissions_must_be_published_in_a_contract(check: Check) -> None:
    machine = fsm(["a", end("b", on_entry=[{"emit": "b-reached"}])], [t("go", "a", "b")])
    del machine["kind"]
    found = check(contract(subcontracts={"fsm": machine, "events": catalog("b-reached")}))
    assert [(f.code, f.message) for f in found] == [("E005", "FSM action emits 'b-reached', which is not in publishes")]
    published = contract(publishes=["b-reached"], subcontracts={"fsm": machine, "events": catalog("b-reached")})
    assert check(published) == []


def test_fsm_files_do_not_check_emissions(check: Check) -> None:
    assert check(fsm(["a", end("b", on_entry=[{"emit": "anything"}])], [t("go", "a", "b")])) == []


# --- events -------------------------------------------------------------------------------------------------------


def test_E001_E002_events_outside_every_catalog(check: Check) -> None:
    found = check(
        contract(
            subscriptions=[{"event": "in-one"}, {"event": "missing-in"}],
            publishes=["in-two", "missing-out"],
            subcontracts={"events": [catalog("in-one", name="one"), catalog("in-two", name="two")]},
        )
    )
    assert [(f.code, f.message) for f in found] == [
        ("E001", "subscribed event 'missing-in' is in no event catalog of this contract; declared: in-one, in-two"),
        ("E002", "published event 'missing-out' is in no event catalog of this contract; declared: in-one, in-two"),
    ]


def test_E001_without_catalogs_says_so_and_long_listings_are_cut(check: Check) -> None:
    [found] = check(contract(subscriptions=[{"event": "x"}]))
    assert found.message.endswith("(it declares none: add subcontracts.events)")
    names = [f"e{i:02d}" for i in range(15)]
    [found] = check(contract(publishes=["x"], subcontracts={"events": catalog(*names)}))
    assert found.message.endswith("declared: " + ", ".join(names[:12]) + ", ...")


def test_E003_E004_catalog_checks(check: Check) -> None:
    text = (
        "kind: events\ncatalog_name: c\nmodels: {P: {type: object}}\nevents:\n"
        "  - {name: a, payload_model: P}\n"
        "  - {name: b, payload_model: Q}\n"
        "  - {name: a, payload_model: P, version: 2}\n"
    )
    assert [f.format() for f in check(text)] == [
        "doc.yaml:6:15: error E003 payload_model 'Q' of 'b' is not in the catalog's models; declared: P",
        "doc.yaml:7:6: error E004 event 'a' is declared twice in catalog 'c'",
    ]


def test_E003_payload_must_be_in_the_catalog_itself(check: Check) -> None:
    cat = catalog({"name": "e", "payload_model": "Shared"}, models=())
    found = check(contract(models={"Shared": {"type": "object"}}, publishes=["e"], subcontracts={"events": cat}))
    assert [(f.code, f.message) for f in found] == [
        ("E003", "payload_model 'Shared' of 'e' is not in the catalog's models (none are declared)")
    ]


def test_E005_kafka_effect_must_emit_a_published_event(check: Check) -> None:
    effects = [{"name": "send", "adapter": "kafka", "event": "e"}]
    found = check(contract("EFFECT", effects=effects, subcontracts={"events": catalog("e")}))
    assert [(f.code, f.message) for f in found] == [
        ("E005", "kafka effect 'send' emits 'e', which is not in publishes")
    ]
    assert check(contract("EFFECT", effects=effects, publishes=["e"], subcontracts={"events": catalog("e")})) == []


def test_E006_duplicate_subscription_is_a_warning_reported_once(check: Check) -> None:
    subs = [{"event": "e"}, {"event": "e", "handler": "other"}, {"event": "e", "handler": "third"}]
    found = check(contract(subscriptions=subs, subcontracts={"events": catalog("e")}))
    assert [(f.code, f.level, f.message) for f in found] == [
        ("E006", Level.WARNING, "'e' is subscribed to more than once")
    ]


# --- effects ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["upsert", "select", "update", "delete"])
def test_X002_postgres_operations_other_than_insert_need_key(check: Check, operation: str) -> None:
    effect = {"name": "e", "adapter": "postgres", "table": "t", "operation": operation}
    [found] = check(contract("EFFECT", effects=[effect]))
    assert (found.code, found.message) == ("X002", f"postgres effect 'e': operation '{operation}' needs 'key' columns")
    assert check(contract("EFFECT", effects=[{**effect, "key": ["id"]}])) == []


def test_X002_insert_needs_no_key(check: Check) -> None:
    assert (
        check(contract("EFFECT", effects=[{"name": "e", "adapter": "postgres", "table": "t", "operation": "insert"}]))
        == []
    )


def test_X003_X004_effects_and_node_kinds(check: Check) -> None:
    [found] = check(contract("EFFECT"))
    assert (found.code, found.line) == ("X003", 7)
    blake = [{"name": "h", "adapter": "blake3"}]
    [found] = check(contract("COMPUTE", effects=blake))
    assert (found.code, found.message) == ("X004", "a COMPUTE node is pure and may declare no effects; found 1")
    for kind in ("REGISTRY", "EFFECT"):
        assert check(contract(kind, effects=blake)) == []


def test_X005_duplicate_effect_names(check: Check) -> None:
    effects = [{"name": "h", "adapter": "blake3"}, {"name": "h", "adapter": "http", "url": "http://x"}]
    [found] = check(contract("EFFECT", effects=effects))
    assert (found.code, found.message) == ("X005", "effect name 'h' is used twice")


# --- models -------------------------------------------------------------------------------------------------------


def test_M001_undeclared_models(check: Check) -> None:
    found = check(
        contract(
            models={"In": {"type": "object"}},
            input_model="In",
            output_model="Out",
            subcontracts={"state": {"table": "t", "key": ["id"], "model": "Kept"}},
        )
    )
    assert [(f.code, f.message) for f in found] == [
        ("M001", "output_model 'Out' is not declared in models; declared: In"),
        ("M001", "state model 'Kept' is not declared in models; declared: In"),
    ]


def test_M001_catalog_models_do_not_count_as_contract_models(check: Check) -> None:
    found = check(contract(input_model="P", publishes=["e"], subcontracts={"events": catalog("e")}))
    assert [(f.code, f.message) for f in found] == [
        ("M001", "input_model 'P' is not declared in models (none are declared)")
    ]


def test_M002_invalid_json_schema_at_the_bad_keyword(check: Check) -> None:
    text = (
        'contract_version: "1.0"\nname: n\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: COMPUTE\nmodels:\n'
        "  A:\n"
        "    type: object\n"
        "    properties:\n"
        "      x: {type: strin}\n"
        "      y: {type: [string, 'null', string]}\n"
    )
    assert [f.format() for f in check(text)] == [
        "doc.yaml:9:11: error M002 model 'A' is not valid JSON Schema at properties/x/type: 'strin' is not a type; "
        "allowed: array, boolean, integer, null, number, object, string",
        "doc.yaml:10:34: error M002 model 'A' is not valid JSON Schema at properties/y/type/2: 'string' is listed "
        "twice; type lists each type once",
    ]


def test_M002_every_problem_of_a_model(check: Check) -> None:
    model = {"type": "object", "required": ["a", 1], "minProperties": -1, "properties": {"a": {"pattern": "("}}}
    found = check(contract(models={"A": model}))
    assert [(f.code, f.message) for f in found] == [
        ("M002", "model 'A' is not valid JSON Schema at required/1: 1 is not a string; required lists property names"),
        (
            "M002",
            "model 'A' is not valid JSON Schema at minProperties: -1 is not a non-negative integer; "
            "minProperties takes 0, 1, 2, ...",
        ),
        (
            "M002",
            "model 'A' is not valid JSON Schema at properties/a/pattern: '(' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
    ]


def test_M002_also_in_catalogs(check: Check) -> None:
    cat = {"catalog_name": "c", "models": {"P": {"required": "x"}}, "events": [{"name": "e", "payload_model": "P"}]}
    found = check({"kind": "events", **cat})
    assert [(f.code, f.message) for f in found] == [
        (
            "M002",
            "model 'P' is not valid JSON Schema at required: 'x' is not an array; required lists property names: "
            "did you mean ['x']?",
        )
    ]


def test_M002_true_is_a_schema_and_1_is_not(check: Check) -> None:
    good = contract(models={"A": {"type": "object", "additionalProperties": True}})
    bad = contract(models={"A": {"type": "object", "additionalProperties": 1}})
    assert check(good) == []
    assert codes(check(bad)) == ["M002"]
    assert check(good) == []


def test_M002_patterns_too_deep_to_check(check: Check) -> None:
    pattern = "(" * 1000 + ")" * 1000
    found = check(contract(models={"A": {"type": "string", "pattern": pattern}}))
    assert [(f.code, f.message) for f in found] == [
        (
            "M002",
            f"model 'A' is not valid JSON Schema at pattern: '{'(' * 55}...' nests too deeply to be checked",
        )
    ]


def test_M002_and_M004_together(check: Check) -> None:
    """A model's problems are all reported: an invalid keyword does not hide a $ref to an undeclared model."""
    model = {"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}, "b": {"minimum": "0"}}}
    found = check(contract(models={"A": model}))
    assert [(f.code, f.message) for f in found] == [
        ("M004", "model 'A': $ref '#/$defs/B' names no declared model; declared: A"),
        (
            "M002",
            "model 'A' is not valid JSON Schema at properties/b/minimum: '0' is not a number; "
            "minimum takes a finite number",
        ),
    ]


def test_M003_keywords_outside_the_subset_anywhere(check: Check) -> None:
    model = {
        "type": "object",
        "patternProperties": {"^x": {}},
        "properties": {"a": {"type": "array", "items": {"if": {}}}, "b": {"anyOf": [{"dependentRequired": {}}]}},
        "$defs": {"Inner": {"unevaluatedProperties": False}},
    }
    found = check(contract(models={"A": model}))
    assert [f.message for f in found] == [
        "model 'A' uses 'patternProperties', which is outside the supported subset",
        "model 'A' uses 'if', which is outside the supported subset",
        "model 'A' uses 'dependentRequired', which is outside the supported subset",
        "model 'A' uses 'unevaluatedProperties', which is outside the supported subset",
    ]
    assert set(codes(found)) == {"M003"}


def test_M003_property_names_are_not_keywords(check: Check) -> None:
    props = {"patternProperties": {"type": "string"}, "if": {"type": "integer"}, "then": {}}
    assert check(contract(models={"A": {"type": "object", "properties": props}})) == []


def test_M003_M004_model_refs(check: Check) -> None:
    text = (
        'contract_version: "1.0"\nname: n\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: COMPUTE\nmodels:\n'
        "  Money: {type: number}\n"
        "  Order:\n"
        "    type: object\n"
        "    properties:\n"
        "      a: {$ref: '#/$defs/Money'}\n"
        "      b: {$ref: '#/definitions/Money'}\n"
        "      c: {$ref: '#/$defs/Mony'}\n"
    )
    assert [f.format() for f in check(text)] == [
        "doc.yaml:11:11: error M003 model 'Order': $ref '#/definitions/Money' must be '#/$defs/<Model>'",
        "doc.yaml:12:11: error M004 model 'Order': $ref '#/$defs/Mony' names no declared model; declared: Money, Order",
    ]


# --- implementation -----------------------------------------------------------------------------------------------


HANDLERS = """
class Compute:
    node_type = "COMPUTE"

    def handle(self, event):
        return event

    def on_a(self, event):
        return event

    not_callable = 3


class Reducer:
    node_type = "REDUCER"


class Plain:
    pass


def function():
    pass
"""


@pytest.fixture
def handlers(tmp_path: Path) -> str:
    """A handler module in the working directory, under a name no other test imports."""
    name = f"lint_handlers_{abs(hash(tmp_path))}"
    (tmp_path / f"{name}.py").write_text(HANDLERS, encoding="utf-8")
    return name


def with_impl(ref: str, **fields: Any) -> dict[str, Any]:
    return contract(implementation=ref, **fields)


def test_implementation_checks_pass_for_a_matching_class(check: Check, handlers: str) -> None:
    subs = [{"event": "e"}, {"event": "f", "handler": "on_a"}]
    found = check(
        with_impl(f"{handlers}:Compute", subscriptions=subs, subcontracts={"events": catalog("e", "f")}), imports=True
    )
    assert found == []
    # A class that declares no node_type is not a node (every base of the runtime declares one).
    assert [(f.code, f.message) for f in check(with_impl(f"{handlers}:Plain"), imports=True)] == [
        ("I003", "Plain is not a node class: subclass the base of its kind (framework.runtime.kinds: ComputeNode)")
    ]


def test_I001_module_not_importable(check: Check, handlers: str, tmp_path: Path) -> None:
    [found] = check(with_impl("no_such_module_anywhere:X"), imports=True)
    assert (found.code, found.message) == (
        "I001",
        "cannot import module 'no_such_module_anywhere': ModuleNotFoundError: No module named "
        "'no_such_module_anywhere'",
    )
    (tmp_path / f"{handlers}_boom.py").write_text("raise RuntimeError('boom')\n")
    [found] = check(with_impl(f"{handlers}_boom:X"), imports=True)
    assert found.message == f"cannot import module '{handlers}_boom': RuntimeError: boom"
    (tmp_path / f"{handlers}_exit.py").write_text("import sys\nsys.exit(3)\n")
    [found] = check(with_impl(f"{handlers}_exit:X"), imports=True)
    assert (
        found.message == f"cannot import module '{handlers}_exit': ImportError: the module called sys.exit(3) "
        "while importing"
    )


def test_I002_class_missing_or_not_a_class(check: Check, handlers: str) -> None:
    for name in ("Missing", "function"):
        [found] = check(with_impl(f"{handlers}:{name}"), imports=True)
        assert (found.code, found.message) == ("I002", f"module '{handlers}' has no class '{name}'")


def test_I003_class_of_another_kind(check: Check, handlers: str) -> None:
    [found] = check(with_impl(f"{handlers}:Reducer"), imports=True)
    assert (found.code, found.line, found.message) == (
        "I003",
        8,
        "Reducer is a REDUCER implementation; this contract is COMPUTE",
    )


def test_I004_handler_method_missing_or_not_callable(check: Check, handlers: str) -> None:
    subs = [{"event": "e", "handler": "on_b"}, {"event": "f", "handler": "not_callable"}]
    found = check(
        with_impl(f"{handlers}:Compute", subscriptions=subs, subcontracts={"events": catalog("e", "f")}), imports=True
    )
    assert [(f.code, f.message) for f in found] == [
        ("I004", "Compute has no method 'on_b' to handle 'e'"),
        ("I004", "Compute has no method 'not_callable' to handle 'f'"),
    ]


def test_no_import_skips_every_implementation_check(check: Check) -> None:
    assert check(with_impl("no_such_module_anywhere:X"), imports=False) == []


# --- workflows ----------------------------------------------------------------------------------------------------


def workflow(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"workflow_name": "w", "steps": list(steps)}


def step(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "target": {"handler": name}, **more}


def test_W001_W003_W006_in_a_workflow_file(check: Check) -> None:
    found = check(
        {
            "kind": "workflow",
            **workflow(
                step("a", parallel_group="g"),
                step("b", parallel_group="g"),
                step("c", when="x >"),
                step("a", parallel_group="h"),
                step("d", parallel_group="g"),
            ),
        }
    )
    assert [(f.code, f.message) for f in found] == [
        (
            "W003",
            "condition of step 'c' does not parse: expected an operand after '>', found end of guard (at column 4)",
        ),
        ("W001", "step name 'a' is used twice"),
        ("W006", "step 'd' joins parallel_group 'g', whose steps are not consecutive"),
    ]


def test_consecutive_groups_and_valid_conditions_are_fine(check: Check) -> None:
    steps = [
        step("a", parallel_group="g", when="n > 1"),
        step("b", parallel_group="g"),
        step("c"),
        step("d", parallel_group="h"),
        step("e", parallel_group="h"),
    ]
    assert check({"kind": "workflow", **workflow(*steps)}) == []


def test_W002_workflow_only_on_orchestrators(check: Check) -> None:
    [found] = check(contract("ORCHESTRATOR"))
    assert (found.code, found.message) == (
        "W002",
        "an ORCHESTRATOR needs a workflow subcontract (subcontracts.workflow)",
    )
    [found] = check(contract("REDUCER", subcontracts={"workflow": workflow(step("a")), "aggregation": AGG}))
    assert (found.code, found.message) == ("W002", "a REDUCER node has no workflow; only ORCHESTRATOR nodes do")
    assert check(contract("ORCHESTRATOR", subcontracts={"workflow": workflow(step("a"))})) == []


def test_W005_command_steps_need_their_events_declared(check: Check) -> None:
    target = {"command": "do-it", "reply": "done-it"}
    wf = workflow({"name": "s", "target": target})
    found = check(contract("ORCHESTRATOR", subcontracts={"workflow": wf, "events": catalog("do-it", "done-it")}))
    assert [(f.code, f.message) for f in found] == [
        ("W005", "step 's' sends 'do-it', which is not in publishes"),
        ("W005", "step 's' awaits 'done-it', which is not in subscriptions"),
    ]
    declared = contract(
        "ORCHESTRATOR",
        publishes=["do-it"],
        subscriptions=[{"event": "done-it"}],
        subcontracts={"workflow": wf, "events": catalog("do-it", "done-it")},
    )
    assert check(declared) == []


def test_workflow_files_do_not_check_command_events(check: Check) -> None:
    assert check({"kind": "workflow", **workflow({"name": "s", "target": {"command": "a", "reply": "b"}})}) == []


# --- aggregation --------------------------------------------------------------------------------------------------

AGG = {"aggregation_name": "a", "strategies": [{"type": "NAMESPACE_GROUPING"}]}


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"type": "TIME_WINDOW"}, "a TIME_WINDOW strategy needs window_ms"),
        ({"type": "SIZE_BUCKETS"}, "a SIZE_BUCKETS strategy needs buckets: strictly ascending sizes"),
        ({"type": "SIZE_BUCKETS", "buckets": []}, "a SIZE_BUCKETS strategy needs buckets: strictly ascending sizes"),
        (
            {"type": "SIZE_BUCKETS", "buckets": [10, 5]},
            "a SIZE_BUCKETS strategy needs buckets: strictly ascending sizes",
        ),
        (
            {"type": "SIZE_BUCKETS", "buckets": [5, 5]},
            "a SIZE_BUCKETS strategy needs buckets: strictly ascending sizes",
        ),
        ({"type": "CUSTOM"}, "a CUSTOM strategy needs function: 'module:callable'"),
    ],
)
def test_A001_strategy_parameters(check: Check, strategy: dict[str, Any], message: str) -> None:
    found = check(
        {"kind": "aggregation", "aggregation_name": "a", "default": strategy["type"], "strategies": [strategy]}
    )
    assert [(f.code, f.message) for f in found] == [("A001", message)]


def test_A001_strategies_with_their_parameters_are_fine(check: Check) -> None:
    strategies = [
        {"type": "TIME_WINDOW", "window_ms": 1000},
        {"type": "SIZE_BUCKETS", "buckets": [1, 10, 100]},
        {"type": "CUSTOM", "function": "mod.sub:fold"},
        {"type": "NAMESPACE_GROUPING"},
    ]
    assert check({"kind": "aggregation", "aggregation_name": "a", "strategies": strategies}) == []


def test_A002_default_among_the_strategies(check: Check) -> None:
    text = "kind: aggregation\naggregation_name: a\ndefault: CUSTOM\nstrategies: [{type: NAMESPACE_GROUPING}]\n"
    assert [f.format() for f in check(text)] == [
        "doc.yaml:3:1: error A002 default 'CUSTOM' is not among the strategies; declared: NAMESPACE_GROUPING"
    ]


def test_A003_aggregation_only_on_reducers(check: Check) -> None:
    [found] = check(contract("REDUCER"))
    assert (found.code, found.message) == (
        "A003",
        "a REDUCER needs an aggregation subcontract (subcontracts.aggregation)",
    )
    [found] = check(contract("COMPUTE", subcontracts={"aggregation": AGG}))
    assert (found.code, found.message) == ("A003", "a COMPUTE node has no aggregation; only REDUCER nodes do")
    assert check(contract("REDUCER", subcontracts={"aggregation": AGG})) == []


def test_subcontracts_reached_through_ref_are_linted_in_their_file(check: Check, tmp_path: Path) -> None:
    (tmp_path / "agg.yaml").write_text("kind: aggregation\naggregation_name: a\nstrategies:\n  - {type: TIME_WINDOW}\n")
    found = check(contract("REDUCER", subcontracts={"aggregation": {"$ref": "agg.yaml"}}))
    assert [f.format() for f in found] == [
        "agg.yaml:4:6: error A001 a TIME_WINDOW strategy needs window_ms",
        # default is not written: the finding points at the key that brought the aggregation in
        "doc.yaml:9:3: error A002 default 'NAMESPACE_GROUPING' is not among the strategies; declared: TIME_WINDOW",
    ]


# --- tests: blocks ------------------------------------------------------------------------------------------------


def _tested(cases: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return contract(
        "EFFECT",
        subscriptions=[{"event": "a-in", "handler": "on_a"}],
        publishes=["a-out"],
        effects=[{"name": "announce", "adapter": "kafka", "event": "a-out"}],
        subcontracts={
            "events": catalog("a-in", "a-out"),
            "fsm": fsm(["a", end("b")], [t("go", "a", "b")]),
        },
        tests=cases,
        **fields,
    )


def test_a_tests_block_naming_only_what_the_contract_declares_is_clean(check: Check) -> None:
    case = {
        "name": "goes",
        "given": {"event": "a-in", "payload": {}, "state": "a", "returns": {"announce": None}},
        "expect": {"events": [{"event": "a-out"}], "state": "b", "effects": [{"effect": "announce"}]},
    }
    assert codes(check(_tested([case, {**case, "name": "goes_again"}]))) == []


def test_T001_to_T005_point_at_the_offending_keys(check: Check, tmp_path: Path) -> None:
    case = {
        "name": "goes",
        "given": {"event": "a-out", "payload": {}, "state": "nowhere", "returns": {"hash": "x"}},
        "expect": {"events": [{"event": "a-in"}], "state": "b", "effects": [{"effect": "save"}]},
    }
    found = check(_tested([case, {"name": "goes", "given": {"event": "a-in"}}]))
    lines = (tmp_path / "doc.yaml").read_text(encoding="utf-8").splitlines()
    at = [(f.code, lines[f.line - 1][f.col - 1 :].split(":")[0]) for f in sorted(found, key=lambda f: f.line)]
    assert at == [
        ("T001", "event"),  # given.event
        ("T003", "state"),  # given.state
        ("T004", "hash"),  # given.returns.hash
        ("T002", "event"),  # expect.events[0].event
        ("T004", "effect"),  # expect.effects[0].effect
        ("T005", "name"),  # the second name
    ]
    messages = "\n".join(f.message for f in found)
    assert "'a-out', which node does not subscribe to; subscribed: a-in" in messages
    assert "state 'nowhere', which is not a state of fsm 'm'; declared: a, b" in messages
    assert "effect 'hash' returns, but it is not declared; declared: announce" in messages


def test_T003_a_state_in_a_contract_without_fsm(check: Check) -> None:
    data = _tested([{"name": "goes", "given": {"event": "a-in"}, "expect": {"state": "b"}}])
    del data["subcontracts"]["fsm"]
    [finding] = check(data)
    assert finding.code == "T003" and "has no fsm subcontract" in finding.message


def _upsert(**fields: Any) -> dict[str, Any]:
    effect = {
        "name": "save",
        "adapter": "postgres",
        "table": "orders",
        "operation": "upsert",
        "key": ["order_id"],
        "columns": {"order_id": "uuid", "id": "uuid", "total": "numeric", "version": "integer"},
    }
    return contract("EFFECT", effects=[{**effect, **fields}])


def test_keep_increment_and_returning_declared_right_have_no_findings(check: Check) -> None:
    findings = check(
        _upsert(
            keep=["id"],
            increment=["version"],
            returning={"id": "uuid", "version": "integer", "created_at": "timestamptz"},
        )
    )
    assert codes(findings) == []
    assert codes(check(_upsert(returning=["order_id", "version"]))) == []  # declared columns: typed already
    untyped = {"columns": ["order_id", "id", "version"], "returning": ["id", "created_at"], "keep": ["id"]}
    assert codes(check(_upsert(**untyped))) == []  # untyped columns: the returned row is untyped too


@pytest.mark.parametrize(
    ("operation", "fields", "expected"),
    [
        ("insert", {"keep": ["id"]}, "'keep' is for upserts"),
        ("update", {"increment": ["version"]}, "'increment' is for upserts"),
        (
            "select",
            {"returning": ["id"]},
            "'returning' is for inserts and upserts; operation 'select' returns the rows",
        ),
        ("delete", {"returning": ["id"]}, "operation 'delete' returns how many rows it changed"),
    ],
)
def test_X006_options_of_other_operations(check: Check, operation: str, fields: dict[str, Any], expected: str) -> None:
    findings = check(_upsert(operation=operation, **fields))
    assert codes(findings) == ["X006"] and expected in findings[0].message


def test_X007_keep_and_increment_name_declared_non_key_columns_once(check: Check) -> None:
    findings = check(_upsert(keep=["order_id", "id"], increment=["id", "nope"]))
    assert codes(findings) == ["X007"] * 3
    messages = [f.message for f in findings]
    assert "keep column 'order_id' is a key column (order_id)" in messages[0]
    assert "increment column 'id' is listed twice" in messages[1]
    assert "increment column 'nope' is not among its declared columns (order_id, id, total, version)" in messages[2]
    assert (findings[0].line, findings[2].line) != (0, 0)
    undeclared = check(_upsert(columns=[], keep=["id"]))
    assert codes(undeclared) == ["X007"] and "keep and increment need the effect's columns" in undeclared[0].message


def test_X008_returned_columns_are_typed_and_once(check: Check) -> None:
    findings = check(_upsert(returning=["id", "created_at"]))
    assert codes(findings) == ["X008"] and "returned column 'created_at' has no type" in findings[0].message
    wrong = check(_upsert(returning={"version": "bigint"}))
    assert (
        codes(wrong) == ["X008"] and "'version' is declared as 'integer' in columns, not 'bigint'" in wrong[0].message
    )
    twice = check(_upsert(returning=["id", "id"]))
    assert codes(twice) == ["X008"] and "lists a column twice" in twice[0].message
