"""From loaded documents to models: what kind a file is, and each pydantic error as a positioned finding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from framework.contract.findings import Finding, Level
from framework.contract.loader import load_document
from framework.contract.parse import document_kind, parse_model
from framework.contract.spec import Contract, NodeType
from framework.contract.subcontracts import FSM, SUBCONTRACT_MODELS, EventCatalog, RetryPolicy, Spec

HEAD = 'contract_version: "1.0"\nname: pricer\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: COMPUTE\n'

Parse = Callable[[str], tuple[Spec | None, list[str]]]


@pytest.fixture
def parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Parse:
    """Parses YAML text as whatever it declares itself to be; findings come back formatted."""
    monkeypatch.chdir(tmp_path)

    def run(text: str) -> tuple[Spec | None, list[str]]:
        (tmp_path / "doc.yaml").write_text(text, encoding="utf-8")
        doc = load_document(tmp_path / "doc.yaml")
        kind = document_kind(doc)
        if isinstance(kind, Finding):
            return None, [kind.format()]
        model, findings = parse_model(doc, kind)
        return model, [f.format() for f in findings]

    return run


def errors(parse: Parse, text: str) -> list[str]:
    model, findings = parse(text)
    assert model is None
    return findings


# --- what a file is -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [("- a\n", "list"), ("text\n", "str"), ("~\n", "null"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(parse: Parse, text: str, shown: str) -> None:
    assert errors(parse, text) == [
        f"doc.yaml:1:1: error S005 expected a mapping (a contract or a subcontract) at the top level, found a {shown}"
    ]


def test_a_mapping_that_is_neither(parse: Parse) -> None:
    assert errors(parse, "name: x\n") == [
        "doc.yaml:1:1: error S005 cannot tell what this file is: a contract has 'node_type', a subcontract has "
        "'kind' (fsm, events, retry, workflow, aggregation, state)"
    ]


def test_unknown_kind_points_at_kind(parse: Parse) -> None:
    assert errors(parse, "# c\nkind: fsmm\n") == [
        "doc.yaml:2:1: error S004 kind: 'fsmm' is not a subcontract kind; allowed: fsm, events, retry, workflow, "
        "aggregation, state"
    ]


@pytest.mark.parametrize("kind", sorted(SUBCONTRACT_MODELS))
def test_each_kind_selects_its_model(tmp_path: Path, kind: str) -> None:
    (tmp_path / "doc.yaml").write_text(f"kind: {kind}\n")
    assert document_kind(load_document(tmp_path / "doc.yaml")) is SUBCONTRACT_MODELS[kind]


def test_node_type_makes_a_contract(tmp_path: Path) -> None:
    (tmp_path / "doc.yaml").write_text("node_type: X\nkind: fsm\n")
    assert document_kind(load_document(tmp_path / "doc.yaml")) is Contract


# --- each error kind ----------------------------------------------------------------------------------------------


def test_valid_contract_parses(parse: Parse) -> None:
    model, findings = parse(HEAD)
    assert findings == []
    assert isinstance(model, Contract)
    assert (model.name, str(model.version), model.node_type) == ("pricer", "1.0.0", NodeType.COMPUTE)


def test_missing_field_points_at_the_parent(parse: Parse) -> None:
    assert errors(parse, 'contract_version: "1.0"\nname: x\nnode_type: COMPUTE\n') == [
        "doc.yaml:1:1: error S002 missing required field 'version' in document"
    ]
    text = HEAD + "effects:\n  - {name: a, adapter: postgres, operation: insert}\n"
    assert errors(parse, text) == ["doc.yaml:6:5: error S002 missing required field 'table' in effects.0"]


def test_unknown_field_with_did_you_mean_and_the_allowed_keys(parse: Parse) -> None:
    assert errors(parse, "kind: retry\nmax_attempts: 3\ndead_leter: true\n") == [
        "doc.yaml:3:1: error S001 unknown field 'dead_leter' (did you mean 'dead_letter'?); allowed: kind, "
        "max_attempts, backoff, dead_letter"
    ]


def test_unknown_field_without_a_close_match_has_no_hint(parse: Parse) -> None:
    assert errors(parse, "kind: retry\nxyzzy: 1\n") == [
        "doc.yaml:2:1: error S001 unknown field 'xyzzy'; allowed: kind, max_attempts, backoff, dead_letter"
    ]


def test_did_you_mean_uses_yaml_names_and_nested_models(parse: Parse) -> None:
    text = (
        HEAD + "subcontracts:\n  events:\n    catalog_name: c\n    events: [{name: e, payload_model: P, clas: cmd}]\n"
    )
    [finding] = errors(parse, text)
    assert finding.startswith("doc.yaml:8:42: error S001 unknown field 'clas' (did you mean 'class'?); allowed: name,")
    text = HEAD + "subscriptions: [{event: e, handlr: h}]\n"
    assert errors(parse, text) == [
        "doc.yaml:5:28: error S001 unknown field 'handlr' (did you mean 'handler'?); allowed: event, handler, group"
    ]


def test_value_outside_a_fixed_set(parse: Parse) -> None:
    assert errors(parse, HEAD.replace("COMPUTE", "SERVICE")) == [
        "doc.yaml:4:1: error S004 node_type: 'SERVICE' is not allowed; input should be 'EFFECT', 'COMPUTE', 'REDUCER', "
        "'ORCHESTRATOR' or 'REGISTRY'"
    ]
    assert errors(parse, HEAD.replace('"1.0"', '"2.0"')) == [
        "doc.yaml:1:1: error S004 contract_version: '2.0' is not allowed; input should be '1.0'"
    ]


def test_contract_version_must_be_a_string(parse: Parse) -> None:
    assert errors(parse, HEAD.replace('"1.0"', "1.0")) == [
        "doc.yaml:1:1: error S004 contract_version: 1.0 is not allowed; input should be '1.0'"
    ]


@pytest.mark.parametrize(
    ("line", "where", "value", "meaning"),
    [
        (
            "name: Bad-Name",
            "name",
            "'Bad-Name'",
            "snake_case: lowercase letters, digits and '_', starting with a letter",
        ),
        (
            "publishes: [Bad_Event]",
            "publishes.0",
            "'Bad_Event'",
            "kebab-case: lowercase letters and digits in words joined by '-', e.g. metadata-stamp-created",
        ),
        (
            "input_model: stamp_request",
            "input_model",
            "'stamp_request'",
            "PascalCase: a capital letter, then letters and digits, e.g. StampRequest",
        ),
        (
            "implementation: nodes.x",
            "implementation",
            "'nodes.x'",
            "'module.path:Name', e.g. nodes.metadata_stamping.handler:MetadataStampingHandler",
        ),
    ],
)
def test_name_patterns_say_what_was_expected(parse: Parse, line: str, where: str, value: str, meaning: str) -> None:
    text = HEAD.replace("name: pricer\n", "") + line + ("\nname: pricer\n" if where != "name" else "\n")
    [finding] = errors(parse, text)
    assert finding.endswith(f"error S003 {where}: {value} is not a valid name; expected {meaning}")


def test_yaml_words_are_not_coerced(parse: Parse) -> None:
    # The loader keeps yes/no/on/off as strings; the models must not turn them back into booleans.
    assert errors(parse, "kind: retry\ndead_letter: yes\nmax_attempts: '3'\n") == [
        "doc.yaml:2:1: error S003 dead_letter: Input should be a valid boolean; got 'yes'",
        "doc.yaml:3:1: error S003 max_attempts: Input should be a valid integer; got '3'",
    ]


def test_wrong_type_and_bounds(parse: Parse) -> None:
    assert errors(parse, "kind: retry\nmax_attempts: abc\nbackoff: {initial_ms: -1, jitter: 2}\n") == [
        "doc.yaml:2:1: error S003 max_attempts: Input should be a valid integer; got 'abc'",
        "doc.yaml:3:11: error S003 backoff.initial_ms: Input should be greater than or equal to 0; got -1",
        "doc.yaml:3:27: error S003 backoff.jitter: Input should be less than or equal to 1; got 2",
    ]
    assert errors(parse, HEAD.replace("{major: 1, minor: 0, patch: 0}", "1.0.0")) == [
        "doc.yaml:3:1: error S003 version: Input should be a valid dictionary or instance of Version; got '1.0.0'"
    ]


def test_long_values_are_shortened_in_messages(parse: Parse) -> None:
    [finding] = errors(parse, HEAD + "input_model: " + "A" * 101 + "\n")
    assert finding.endswith("String should have at most 100 characters; got '" + "A" * 56 + "...")


def test_unknown_or_missing_adapter(parse: Parse) -> None:
    text = HEAD + "effects:\n  - {name: a, adapter: mongo}\n  - {name: b}\n"
    assert errors(parse, text) == [
        "doc.yaml:6:15: error X001 effects.0: unknown or missing adapter 'mongo'; allowed: postgres, kafka, blake3, "
        "http",
        "doc.yaml:7:5: error X001 effects.1: unknown or missing adapter None; allowed: postgres, kafka, blake3, http",
    ]


def test_adapter_parameters_are_checked_per_adapter(parse: Parse) -> None:
    text = HEAD + "effects:\n  - {name: a, adapter: kafka, event: e, tabel: x}\n"
    assert errors(parse, text) == [
        "doc.yaml:6:41: error S001 unknown field 'tabel'; allowed: name, adapter, event, description"
    ]
    text = HEAD + "effects:\n  - {name: a, adapter: postgres, table: t, operation: merge}\n"
    assert errors(parse, text) == [
        "doc.yaml:6:44: error S004 effects.0.operation: 'merge' is not allowed; input "
        "should be 'insert', 'upsert', 'select', 'update' or 'delete'"
    ]


def test_invalid_action_and_target(parse: Parse) -> None:
    fsm = "kind: fsm\nstate_machine_name: f\ninitial_state: a\nstates: [{name: a, on_entry: [{foo: 1}]}]\n"
    assert errors(parse, fsm) == [
        "doc.yaml:4:31: error S004 states.0.on_entry.0: {'foo': 1} is not allowed; an action is one of "
        "{emit: EVENT}, {set: {FIELD: EXPR}} or {call: METHOD}"
    ]
    wf = "kind: workflow\nworkflow_name: w\nsteps: [{name: s, target: nope}]\n"
    assert errors(parse, wf) == [
        "doc.yaml:3:19: error S004 steps.0.target: 'nope' is not allowed; a target is one of {node: NAME, handler: "
        "METHOD}, {command: EVENT, reply: EVENT}, {http: URL} or {handler: METHOD}"
    ]


def test_errors_inside_tagged_members_point_at_the_member_field(parse: Parse) -> None:
    """A target's tag ('http', 'command', 'node') and an action's ('emit', 'set') are also keys of the data."""
    wf = (
        "kind: workflow\nworkflow_name: w\nsteps:\n"
        "  - {name: a, target: {http: x, method: PATCH}}\n"
        "  - {name: b, target: {command: a-b}}\n"
        "  - {name: c, target: {node: n, http: x}}\n"
    )
    assert errors(parse, wf) == [
        "doc.yaml:4:33: error S004 steps.0.target.method: 'PATCH' is not allowed; input should be 'GET', 'POST', "
        "'PUT' or 'DELETE'",
        "doc.yaml:5:15: error S002 missing required field 'reply' in steps.1.target",
        "doc.yaml:6:33: error S001 unknown field 'http'; allowed: node, handler",
    ]
    fsm = (
        "kind: fsm\nstate_machine_name: f\ninitial_state: a\nstates:\n"
        "  - name: a\n    on_entry:\n      - {emit: x-y, payload: {q: 1}}\n      - {set: {Bad: x}}\n"
    )
    assert errors(parse, fsm) == [
        "doc.yaml:7:31: error S003 states.0.on_entry.0.payload.q: Input should be a valid string; got 1",
        "doc.yaml:8:16: error S003 states.0.on_entry.1.set.Bad: 'Bad' is not a valid name; expected snake_case: "
        "lowercase letters, digits and '_', starting with a letter",
    ]


def test_invalid_mapping_keys_show_the_key(parse: Parse) -> None:
    assert errors(parse, HEAD + "models:\n  bad_model: {type: object}\n") == [
        "doc.yaml:6:3: error S003 models.bad_model: 'bad_model' is not a valid name; expected PascalCase: a capital "
        "letter, then letters and digits, e.g. StampRequest"
    ]


def test_every_error_of_a_document_is_reported_in_order(parse: Parse) -> None:
    text = 'contract_version: "1.0"\nname: Bad-Name\nversion: {major: 1, minor: 0}\nnode_type: EFFEKT\ndescripton: x\n'
    codes = [f.split(" ")[2] for f in errors(parse, text)]
    assert codes == ["S003", "S002", "S004", "S001"]


def test_positions_of_errors_in_referenced_files(parse: Parse, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "fsm.yaml").write_text(
        "kind: fsm\nstate_machine_name: f\ninitial_state: a\nstates:\n  - {name: a, termnal: true}\n"
    )
    text = HEAD + "subcontracts:\n  fsm: {$ref: lib/fsm.yaml}\n"
    assert errors(parse, text) == [
        "lib/fsm.yaml:5:15: error S001 unknown field 'termnal' (did you mean 'terminal'?); allowed: name, terminal, "
        "description, on_entry, on_exit"
    ]


# --- one or many --------------------------------------------------------------------------------------------------


def test_events_is_one_catalog_or_a_list(parse: Parse) -> None:
    catalog = "catalog_name: c\n{i}models: {{P: {{type: object}}}}\n{i}events: [{{name: e, payload_model: P}}]\n"
    one, _ = parse(HEAD + "subcontracts:\n  events:\n    " + catalog.format(i="    "))
    many, _ = parse(HEAD + "subcontracts:\n  events:\n    - " + catalog.format(i="      "))
    assert isinstance(one, Contract) and isinstance(many, Contract)
    assert one.subcontracts.events == many.subcontracts.events
    assert isinstance(one.subcontracts.events[0], EventCatalog)


def test_errors_in_a_single_catalog_point_into_it(parse: Parse) -> None:
    text = (
        HEAD + "subcontracts:\n  events:\n    catalog_name: c\n    events: [{name: e, payload_model: P, class: dlt}]\n"
    )
    assert errors(parse, text) == [
        "doc.yaml:8:42: error S004 subcontracts.events.events.0.class: 'dlt' is not allowed; input should be 'evt', "
        "'cmd' or 'qrs'"
    ]


def test_from_is_one_state_or_a_list(parse: Parse) -> None:
    fsm = "kind: fsm\nstate_machine_name: f\ninitial_state: a\nstates: [{name: a}, {name: b}]\ntransitions:\n"
    single, _ = parse(fsm + "  - {name: t, from: a, to: b, trigger: go}\n")
    listed, _ = parse(fsm + "  - {name: t, from: [a], to: b, trigger: go}\n")
    assert isinstance(single, FSM) and isinstance(listed, FSM)
    assert single.transitions[0].from_ == listed.transitions[0].from_ == ["a"]
    assert errors(parse, fsm + "  - {name: t, from: [], to: b, trigger: go}\n") == [
        "doc.yaml:6:15: error S003 transitions.0.from: List should have at least 1 item after validation, not 0; got []"
    ]
    assert errors(parse, fsm + "  - {name: t, from: [a, 3], to: b, trigger: go}\n") == [
        "doc.yaml:6:25: error S003 transitions.0.from.1: Input should be a valid string; got 3"
    ]


def test_parsed_models_are_frozen_and_keep_defaults(parse: Parse) -> None:
    model, _ = parse("kind: retry\n")
    assert isinstance(model, RetryPolicy)
    assert (model.max_attempts, model.backoff.initial_ms, model.dead_letter) == (3, 100, True)
    with pytest.raises(ValueError, match="frozen"):
        model.max_attempts = 5  # type: ignore[misc]


def test_level_of_schema_findings_is_error(parse: Parse) -> None:
    assert all(" error " in f for f in errors(parse, "kind: retry\nmax_attempts: 0\nbogus: 1\n"))
    assert Level.ERROR.value == "error"
