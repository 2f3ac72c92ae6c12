"""Whatever a file holds, validation returns findings and never raises: arbitrary bytes, YAML-ish text built from
fragments of YAML, arbitrary data dumped as YAML or JSON, and contract-shaped mappings with random values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.contract.codes import CODES
from framework.contract.findings import Finding
from framework.contract.names import EVENT_NAME, IDENTIFIER, MODEL_NAME
from framework.contract.spec import NodeType
from framework.contract.subcontracts import SUBCONTRACT_MODELS, AggregationType
from framework.contract.validate import Report, validate_paths

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE = re.compile(
    r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+): (?P<level>error|warning) (?P<code>[A-Z]\d{3}) (?P<msg>.*)$"
)

OTHER = "kind: retry\nmax_attempts: 2\nbackoff: {initial_ms: 5}\nlist: [a, {b: 1}]\n"


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with a fuzzed file's neighbours: a $ref target and a subfolder."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "other.yaml").write_text(OTHER, encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "back.yaml").write_text("x: {$ref: ../fuzzed.yaml}\n", encoding="utf-8")
    yield root


def validate_bytes(root: Path, content: bytes) -> Report:
    path = root / "fuzzed.yaml"
    path.write_bytes(content)
    report = validate_paths([path])
    assert_only_findings(report)
    return report


def assert_only_findings(report: Report) -> None:
    assert report.files <= 1
    for finding in report.findings:
        assert isinstance(finding, Finding)
        text = finding.format()
        assert len(text.splitlines()) == 1, text
        m = LINE.match(text)
        assert m is not None, text
        assert m["code"] in CODES, text
        assert m["level"] == CODES[m["code"]].level.value, text
        assert finding.line >= 1 and finding.col >= 1, text
        assert m["msg"].strip(), text
    json.dumps([f.as_dict() for f in report.findings])


# --- bytes --------------------------------------------------------------------------------------------------------


@FUZZ
@given(content=st.binary(max_size=2000))
def test_arbitrary_bytes(fuzz_dir: Path, content: bytes) -> None:
    validate_bytes(fuzz_dir, content)


@FUZZ
@given(content=st.text(max_size=500))
def test_arbitrary_text(fuzz_dir: Path, content: str) -> None:
    validate_bytes(fuzz_dir, content.encode("utf-8", errors="surrogatepass"))


# --- YAML-ish text from a grammar of fragments --------------------------------------------------------------------

KEYS = [
    "contract_version",
    "name",
    "version",
    "major",
    "minor",
    "patch",
    "node_type",
    "description",
    "implementation",
    "models",
    "input_model",
    "output_model",
    "subscriptions",
    "event",
    "handler",
    "publishes",
    "effects",
    "adapter",
    "table",
    "operation",
    "key",
    "subcontracts",
    "fsm",
    "events",
    "kind",
    "state_machine_name",
    "initial_state",
    "states",
    "transitions",
    "from",
    "to",
    "trigger",
    "guard",
    "terminal",
    "on_entry",
    "emit",
    "set",
    "call",
    "catalog_name",
    "payload_model",
    "class",
    "workflow",
    "steps",
    "target",
    "node",
    "command",
    "reply",
    "http",
    "when",
    "parallel_group",
    "aggregation",
    "strategies",
    "type",
    "buckets",
    "retry",
    "backoff",
    "state",
    "$ref",
    "<<",
    "on",
    "yes",
    "1",
    "properties",
    "required",
    "'quoted key'",
    '"dq\\tkey"',
    "? [complex]",
]
SCALARS = [
    "on",
    "off",
    "yes",
    "no",
    "~",
    "null",
    "true",
    "False",
    "0x1F",
    "0o17",
    "0b1",
    "1e3",
    ".inf",
    "-.inf",
    ".nan",
    "-1",
    "3.5",
    "0",
    "'quoted'",
    '"dq\\n\\u2028"',
    "''",
    "2001-12-14",
    "12:30",
    "x",
    "order-placed",
    "Model",
    "EFFECT",
    "COMPUTE",
    "REDUCER",
    "ORCHESTRATOR",
    "REGISTRY",
    "fsm",
    "events",
    "retry",
    "workflow",
    "aggregation",
    "state",
    "postgres",
    "kafka",
    "blake3",
    "http",
    "insert",
    "select",
    "TIME_WINDOW",
    "CUSTOM",
    "mod:Cls",
    "'a == 1 and b'",
    "'(('",
    "other.yaml",
    "other.yaml#/backoff",
    "other.yaml#/list/1/b",
    "missing.yaml",
    "other.yaml#/nope",
    "fuzzed.yaml",
    "sub/back.yaml",
    "x.txt",
    "'#/$defs/Model'",
    "sub",
    "'other.yaml#backoff'",
]
HOSTILE = [
    "a:b",
    "&anchor x",
    "*anchor",
    "!!python/object:os.system {}",
    "!!str 1",
    "!!int x",
    "!custom x",
    "!!binary aGk=",
    "|",
    ">-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#comment",
    "%YAML 1.2",
    "---",
    "...",
    "@",
    "`",
    "\t",
    "\u0085",
    "é",
    "\\x00",
    "? x",
]

tame = st.sampled_from(SCALARS) | st.text(
    st.characters(categories=["L", "N"], include_characters=" _-."), min_size=1, max_size=6
)
scalar = st.integers(0, 49).flatmap(lambda i: st.sampled_from(HOSTILE) if i == 0 else tame)
key = st.sampled_from(KEYS) | st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
flow = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(key, inner), max_size=4).map(
            lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"
        )
        | st.sampled_from(SCALARS).map(lambda v: "{$ref: " + v + "}")
    ),
    max_leaves=12,
)
line = st.tuples(
    st.integers(0, 8),  # indentation
    st.sampled_from(["", "- ", "- - ", "? "]),
    st.none() | key,
    st.sampled_from([": ", ":", " : ", ": &a ", ": *a ", ":\t"]),
    st.none() | flow,
).map(lambda t: " " * t[0] + t[1] + (t[2] + t[3] if t[2] is not None else "") + (t[4] or ""))
HEADS = [
    "",
    'contract_version: "1.0"\nname: fuzz\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: COMPUTE\n',
    'contract_version: "1.0"\nname: fuzz\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: EFFECT\n',
    'contract_version: "1.0"\nname: fuzz\nversion: {major: 1, minor: 0, patch: 0}\nnode_type: ORCHESTRATOR\n',
    *(f"kind: {kind}\n" for kind in SUBCONTRACT_MODELS),
]
free_lines = st.lists(line, max_size=25).map("\n".join)

Tree = tuple[str, Any]
tree: st.SearchStrategy[Any] = st.recursive(
    flow,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: ("seq", xs))
        | st.lists(st.tuples(key, inner), max_size=5).map(lambda kvs: ("map", kvs))
    ),
    max_leaves=20,
)


def block(node: Any, indent: int = 0) -> list[str]:
    """Block-style YAML for a tree of fragments: well-formed structure around raw, possibly hostile, scalars."""
    pad = " " * indent
    if isinstance(node, str):
        return [pad + node]
    form, items = node
    if not items:
        return [pad + ("[]" if form == "seq" else "{}")]
    out: list[str] = []
    for item in items:
        head, value = (f"{pad}-", item) if form == "seq" else (f"{pad}{item[0]}:", item[1])
        out += [f"{head} {value}"] if isinstance(value, str) else [head, *block(value, indent + 2)]
    return out


block_tree = tree.map(lambda t: "\n".join(block(t)))
yamlish = st.tuples(st.sampled_from(HEADS), free_lines | block_tree).map(lambda t: t[0] + t[1] + "\n")


@FUZZ
@given(text=yamlish)
def test_yamlish_text(fuzz_dir: Path, text: str) -> None:
    validate_bytes(fuzz_dir, text.encode("utf-8"))


# --- JSON-like data -----------------------------------------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(data=json_like, as_json=st.booleans())
def test_json_like_data(fuzz_dir: Path, data: Any, as_json: bool) -> None:
    text = json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True)
    validate_bytes(fuzz_dir, text.encode("utf-8", errors="surrogatepass"))


# --- contract-shaped mappings -------------------------------------------------------------------------------------

small_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=False) | st.sampled_from(SCALARS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
ident = st.sampled_from(["a", "b", "c", "done", "x_1"]) | st.from_regex(IDENTIFIER, fullmatch=True)
event_name = st.sampled_from(["order-placed", "order-paid", "ping"]) | st.from_regex(EVENT_NAME, fullmatch=True)
model_name = st.sampled_from(["P", "Order", "Money"]) | st.from_regex(MODEL_NAME, fullmatch=True)
guard_text = st.lists(
    st.sampled_from(
        [
            "a",
            "b.c",
            "1",
            "2.5",
            "'s'",
            "==",
            "!=",
            "<",
            "and",
            "or",
            "not",
            "in",
            "(",
            ")",
            "[",
            "]",
            ",",
            "len",
            "max",
            "+",
            "-",
            "*",
            "//",
            "true",
            "null",
            "&&",
            "=",
            "!",
        ]
    ),
    max_size=8,
).map(" ".join)
json_schema = st.sampled_from(
    [
        {"type": "object"},
        {"type": "objekt"},
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/P"}}},
        {"$ref": "#/$defs/Missing"},
        {"type": "string", "pattern": "(["},
        {"required": "x"},
        {"patternProperties": {}},
        {"additionalProperties": 1},
        {"additionalProperties": True},
        {"items": {"if": {}}},
    ]
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right shape (so that lint runs), once in a while anything at all."""
    return st.integers(0, 59).flatmap(lambda i: small_junk if i == 0 else valid)


def shaped(required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {k: field(v) for k, v in required.items()}, optional={k: field(v) for k, v in (optional or {}).items()}
    )


action = st.one_of(
    shaped({"emit": event_name}, {"payload": st.dictionaries(ident, guard_text, max_size=2)}),
    shaped({"set": st.dictionaries(ident, guard_text, max_size=2)}),
    shaped({"call": ident}),
)
fsm_body = shaped(
    {
        "state_machine_name": ident,
        "initial_state": ident,
        "states": st.lists(
            shaped({"name": ident}, {"terminal": st.booleans(), "on_entry": st.lists(action, max_size=2)}),
            min_size=1,
            max_size=5,
        ),
    },
    {
        "transitions": st.lists(
            shaped(
                {"name": ident, "from": ident | st.lists(ident, min_size=1, max_size=3), "to": ident, "trigger": ident},
                {"guard": guard_text, "actions": st.lists(action, max_size=2)},
            ),
            max_size=6,
        )
    },
)
catalog_body = shaped(
    {
        "catalog_name": ident,
        "events": st.lists(
            shaped(
                {"name": event_name, "payload_model": model_name},
                {
                    "class": st.sampled_from(["evt", "cmd", "qrs", "dlt"]),
                    "version": st.integers(1, 3),
                    "external_consumers": st.booleans(),
                    "external_producers": st.booleans(),
                },
            ),
            min_size=1,
            max_size=4,
        ),
    },
    {"models": st.dictionaries(model_name, json_schema, max_size=3)},
)
target = st.one_of(
    shaped({"node": ident}, {"handler": ident}),
    shaped({"command": event_name, "reply": event_name}),
    shaped({"http": st.text(max_size=10)}, {"method": st.sampled_from(["GET", "POST", "PATCH"])}),
    shaped({"handler": ident}),
)
workflow_body = shaped(
    {
        "workflow_name": ident,
        "steps": st.lists(
            shaped(
                {"name": ident, "target": target},
                {
                    "when": guard_text,
                    "parallel_group": ident,
                    "timeout_ms": st.integers(-1, 10),
                    "retry": st.just({"$ref": "other.yaml"}),
                },
            ),
            min_size=1,
            max_size=5,
        ),
    }
)
aggregation_body = shaped(
    {
        "aggregation_name": ident,
        "strategies": st.lists(
            shaped(
                {"type": st.sampled_from([t.value for t in AggregationType])},
                {
                    "window_ms": st.integers(-1, 10),
                    "buckets": st.lists(st.integers(0, 5), max_size=3),
                    "function": st.sampled_from(["m:f", "m.n:f", "bad"]),
                },
            ),
            min_size=1,
            max_size=3,
        ),
    },
    {"default": st.sampled_from([t.value for t in AggregationType])},
)
state_body = shaped({"table": ident, "key": st.lists(ident, min_size=1, max_size=2)}, {"model": model_name})
retry_body = shaped({}, {"max_attempts": st.integers(-1, 200), "backoff": st.just({"$ref": "other.yaml#/backoff"})})
effect = st.one_of(
    shaped(
        {
            "name": ident,
            "adapter": st.just("postgres"),
            "table": ident,
            "operation": st.sampled_from(["insert", "upsert", "select", "update", "delete", "merge"]),
        },
        {"key": st.lists(ident, max_size=2), "columns": st.lists(ident, max_size=2)},
    ),
    shaped({"name": ident, "adapter": st.just("kafka"), "event": event_name}),
    shaped({"name": ident, "adapter": st.just("blake3")}, {"max_threads": st.sampled_from([1, "auto", "many"])}),
    shaped(
        {"name": ident, "adapter": st.just("http"), "url": st.sampled_from(["", "http://x", "${URL}/a"])},
        {"method": st.sampled_from(["GET", "PATCH"]), "timeout_ms": st.integers(0, 9)},
    ),
    shaped({"name": ident, "adapter": st.sampled_from(["s3", "redis"])}),
)
subcontracts = shaped(
    {},
    {
        "fsm": fsm_body | st.just({"$ref": "other.yaml"}),
        "events": catalog_body | st.lists(catalog_body, max_size=2),
        "workflow": workflow_body,
        "aggregation": aggregation_body,
        "state": state_body,
        "retry": retry_body | st.just({"$ref": "other.yaml"}),
    },
)
contract_shaped = shaped(
    {
        "contract_version": st.just("1.0"),
        "name": ident,
        "version": shaped({"major": st.integers(-1, 3), "minor": st.integers(0, 3), "patch": st.integers(0, 3)}),
        "node_type": st.sampled_from([t.value for t in NodeType]),
    },
    {
        "description": st.text(max_size=10),
        "implementation": st.sampled_from(["no_such_module_xyz:Handler", "json:JSONDecoder", "json:loads", "bad"]),
        "models": st.dictionaries(model_name, json_schema, max_size=3),
        "input_model": model_name,
        "output_model": model_name,
        "subscriptions": st.lists(shaped({"event": event_name}, {"handler": ident}), max_size=3),
        "publishes": st.lists(event_name, max_size=3),
        "effects": st.lists(effect, max_size=4),
        "subcontracts": subcontracts,
    },
)


def with_kind(kind: str, body: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return body.map(lambda b: {"kind": kind, **b} if isinstance(b, dict) else b)


subcontract_shaped = st.one_of(
    *(
        with_kind(kind, body)
        for kind, body in (
            ("fsm", fsm_body),
            ("events", catalog_body),
            ("workflow", workflow_body),
            ("aggregation", aggregation_body),
            ("state", state_body),
            ("retry", retry_body),
        )
    )
)


@FUZZ
@given(data=contract_shaped)
def test_contract_shaped_mappings(fuzz_dir: Path, data: dict[str, Any]) -> None:
    report = validate_bytes(fuzz_dir, yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass"))
    assert report.files == 1


@FUZZ
@given(data=subcontract_shaped)
def test_subcontract_shaped_mappings(fuzz_dir: Path, data: dict[str, Any]) -> None:
    report = validate_bytes(fuzz_dir, yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass"))
    assert report.files == 1


# --- size and depth -----------------------------------------------------------------------------------------------


def test_a_directory_of_2000_tiny_files(tmp_path: Path) -> None:
    for i in range(2000):
        (tmp_path / f"d{i % 20:02d}").mkdir(exist_ok=True)
        (tmp_path / f"d{i % 20:02d}" / f"r{i:04d}.yaml").write_text(f"kind: retry\nmax_attempts: {i % 100 + 1}\n")
    report = validate_paths([tmp_path])
    assert (report.files, report.errors, report.warnings) == (2000, 0, 0)


@pytest.mark.parametrize(
    "text",
    [
        "kind: retry\nbackoff: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "kind: retry\nbackoff: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
        "- " * 10_000 + "x\n",
        "".join(" " * i + "k:\n" for i in range(1_000)) + " " * 1_000 + "x\n",
        "kind: retry\nbackoff: " + "[" * 65 + "]" * 65 + "\n",
    ],
    ids=["flow-list-10000", "flow-map-10000", "block-list-10000", "block-map-1000", "flow-65"],
)
def test_deep_nesting_gives_a_finding(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.yaml").write_text(text, encoding="utf-8")
    report = validate_paths([tmp_path / "deep.yaml"])
    assert_only_findings(report)
    assert [f.code for f in report.findings] == ["L006"]
