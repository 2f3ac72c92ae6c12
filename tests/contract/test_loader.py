"""The safe positional YAML loader: YAML 1.2 scalars, limits, refusals, ``$ref`` and positions."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

import pytest

from framework.contract.findings import Finding, Level, Position
from framework.contract.loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    LoadError,
    display_path,
    iter_yaml_files,
    load_document,
)
from framework.errors import ContractError

Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Writes a file under tmp_path (the working directory, so finding paths are relative)."""
    monkeypatch.chdir(tmp_path)

    def make(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return make


def load(write: Write, text: str | bytes, name: str = "doc.yaml", **limits: int) -> Any:
    return load_document(write(name, text), **limits).data


def failure(write: Write, text: str | bytes, name: str = "doc.yaml", **limits: int) -> list[Finding]:
    path = write(name, text)
    with pytest.raises(LoadError) as info:
        load_document(path, **limits)
    return info.value.findings


def one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


# --- YAML 1.2 core scalars ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("On", "On"),
        ("NO", "NO"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        ("0x1F", 31),
        ("0xff", 255),
        ("0o17", 15),
        ("017", 17),
        ("-12", -12),
        ("+12", 12),
        ("0", 0),
        ("0b101", "0b101"),
        ("1_000", "1_000"),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("6.02E+23", 6.02e23),
        ("1.", 1.0),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("+.INF", math.inf),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("", None),
        ("nil", "nil"),
        ("None", "None"),
        ("2001-12-14", "2001-12-14"),
        ("2001-12-14T21:59:43.10-05:00", "2001-12-14T21:59:43.10-05:00"),
        ("12:30:00", "12:30:00"),
        ("'1'", "1"),
        ('"true"', "true"),
        ("!!str 12", "12"),
        ("!!int '7'", 7),
        ("!!float '2'", 2.0),
        ("!!bool 'true'", True),
        ("!!null ''", None),
    ],
)
def test_scalars_follow_the_yaml_12_core_schema(write: Write, text: str, value: Any) -> None:
    data = load(write, f"v: {text}\n")
    assert data == {"v": value}
    assert type(data["v"]) is type(value)


def test_nan_is_a_float(write: Write) -> None:
    assert math.isnan(load(write, "v: .nan\n")["v"])
    assert math.isnan(load(write, "v: .NaN\n")["v"])


def test_yes_no_on_off_stay_strings_as_keys_too(write: Write) -> None:
    assert load(write, "on: push\noff: pull\nyes: 1\nno: 2\n") == {"on": "push", "off": "pull", "yes": 1, "no": 2}


def test_non_string_keys_become_their_text(write: Write) -> None:
    assert load(write, "1: a\ntrue: b\n1.5: c\n") == {"1": "a", "true": "b", "1.5": "c"}


def test_explicit_tags_with_values_they_do_not_fit_are_refused(write: Write) -> None:
    for text, kind in (("!!int 1.5", "int"), ("!!float abc", "float"), ("!!bool yes", "bool"), ("!!null x", "null")):
        finding = one(failure(write, f"v: {text}\n"))
        assert (finding.code, finding.line, finding.col) == ("L007", 1, 4)
        assert finding.message.endswith(f"is not a valid {kind}"), finding.message


def test_huge_integers_are_refused_not_crashed_on(write: Write) -> None:
    finding = one(failure(write, "v: 0x" + "f" * 4000 + "\n"))
    assert (finding.code, finding.line, finding.col) == ("L007", 1, 4)
    assert finding.message.endswith("is not a valid int")
    assert load(write, "v: 0x" + "f" * 100 + "\n")["v"] == 16**100 - 1


def test_no_merge_keys(write: Write) -> None:
    assert load(write, "base: &b {x: 1}\nchild:\n  <<: *b\n") == {"base": {"x": 1}, "child": {"<<": {"x": 1}}}


# --- duplicates, aliases, limits ----------------------------------------------------------------------------------


def test_duplicate_keys_name_both_positions(write: Write) -> None:
    finding = one(failure(write, "kind: retry\nmax_attempts: 3\nmax_attempts: 5\n"))
    assert finding == Finding(
        "doc.yaml", 3, 1, Level.ERROR, "L004", "duplicate key 'max_attempts' (first defined at line 2, column 1)"
    )


def test_every_duplicate_is_reported_in_order(write: Write) -> None:
    findings = failure(write, "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert [(f.code, f.line, f.col) for f in findings] == [("L004", 4, 3), ("L004", 5, 1)]
    assert "first defined at line 3, column 3" in findings[0].message


def test_duplicates_that_differ_only_in_form_are_duplicates(write: Write) -> None:
    finding = one(failure(write, "1: a\n'1': b\n"))
    assert finding.code == "L004"


def test_aliases_are_expanded(write: Write) -> None:
    assert load(write, "a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_alias_bomb_is_refused(write: Write) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    finding = one(failure(write, "\n".join(lines) + "\n"))
    assert finding.code == "L005"
    assert "more than 100,000 values" in finding.message


def test_the_node_limit_is_configurable(write: Write) -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"
    assert load(write, text, max_nodes=20) == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    finding = one(failure(write, text, max_nodes=8))
    assert (finding.code, finding.message) == (
        "L005",
        "document expands to more than 8 values (aliases or $ref repeat too much)",
    )


def test_recursive_alias_is_refused(write: Write) -> None:
    finding = one(failure(write, "a: &a\n  b: *a\n"))
    assert (finding.code, finding.message) == ("L005", "an alias refers to a node that contains it")
    assert one(failure(write, "a: &a [1, *a]\n")).code == "L005"


def test_depth_limit(write: Write) -> None:
    def nested(depth: int) -> str:
        return "v: " + "[" * depth + "]" * depth + "\n"

    load(write, nested(MAX_DEPTH))  # the root mapping is level 0, the innermost list level MAX_DEPTH
    finding = one(failure(write, nested(MAX_DEPTH + 1)))
    assert (finding.code, finding.line, finding.message) == ("L006", 1, f"nesting is deeper than {MAX_DEPTH} levels")
    assert one(failure(write, nested(5), max_depth=4)).code == "L006"


@pytest.mark.parametrize("style", ["flow", "block", "mapping"])
def test_nesting_beyond_the_parser_limit_is_a_depth_finding(write: Write, style: str) -> None:
    text = {
        "flow": "v: " + "[" * 10_000 + "]" * 10_000,
        "block": "- " * 10_000 + "x",
        "mapping": "v: " + "{a: " * 10_000 + "1" + "}" * 10_000,
    }[style]
    finding = one(failure(write, text + "\n"))
    assert finding.code == "L006"


def test_size_cap(write: Write) -> None:
    text = "a: " + "x" * 97 + "\n"  # 101 bytes
    assert load(write, text, max_bytes=101) == {"a": "x" * 97}
    finding = one(failure(write, text, max_bytes=100))
    assert finding == Finding(
        "doc.yaml", 1, 1, Level.ERROR, "L001", "doc.yaml is larger than the 100-byte limit for contract files"
    )


def test_default_size_cap_is_one_mib(write: Write) -> None:
    assert MAX_FILE_BYTES == 1024 * 1024
    finding = one(failure(write, "a: " + "x" * MAX_FILE_BYTES + "\n"))
    assert finding.message == "doc.yaml is larger than the 1,048,576-byte limit for contract files"


# --- bytes that are not YAML text ---------------------------------------------------------------------------------


def test_binary_file(write: Write) -> None:
    finding = one(failure(write, b"kind: retry\n\x00\x01\x02"))
    assert finding == Finding(
        "doc.yaml", 1, 1, Level.ERROR, "L002", "doc.yaml is a binary file (it contains NUL bytes), not YAML text"
    )


def test_non_utf8_file_points_at_the_bad_byte(write: Write) -> None:
    finding = one(failure(write, "kind: retry\nname: caf\xe9\n".encode("latin-1")))
    assert (finding.code, finding.line, finding.col) == ("L002", 2, 10)
    assert finding.message == "doc.yaml is not UTF-8 text (bad byte 0xe9)"


def test_utf8_with_bom_and_non_ascii_text(write: Write) -> None:
    assert load(write, "\ufeffname: café ☕\n".encode()) == {"name": "café ☕"}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff"])
def test_empty_files(write: Write, text: str) -> None:
    finding = one(failure(write, text))
    assert (finding.code, finding.message) == ("L011", "doc.yaml is empty: expected a mapping of keys to values")


@pytest.mark.parametrize("text", ["---\n", "--- \n...\n", "~\n"])
def test_a_document_of_null_is_data_not_an_empty_file(write: Write, text: str) -> None:
    assert load(write, text) is None


def test_syntax_error_has_its_position(write: Write) -> None:
    finding = one(failure(write, "a: [1, 2\nb: 3\n"))
    assert (finding.code, finding.line) == ("L003", 2)
    assert finding.message.startswith("YAML syntax error: while parsing a flow sequence")


def test_several_documents_are_refused(write: Write) -> None:
    finding = one(failure(write, "a: 1\n---\nb: 2\n"))
    assert (finding.code, finding.line, finding.col) == ("L003", 2, 1)
    assert "expected a single document" in finding.message


def test_complex_keys_are_refused(write: Write) -> None:
    finding = one(failure(write, "? [a, b]\n: 1\n"))
    assert (finding.code, finding.line, finding.col, finding.message) == (
        "L003",
        1,
        3,
        "mapping keys must be plain scalars",
    )


@pytest.mark.parametrize(
    "text",
    [
        "v: !!python/object:os.system {}\n",
        "v: !!python/object/apply:os.system ['true']\n",
        "v: !!python/name:os.system\n",
        "v: !!binary aGVsbG8=\n",
        "v: !!set {a, b}\n",
        "v: !!omap [{a: 1}]\n",
        "v: !!timestamp 2001-12-14\n",
        "v: !custom x\n",
        "v: !<tag:example.com,2000:app/foo> x\n",
    ],
)
def test_unsupported_tags(write: Write, text: str) -> None:
    finding = one(failure(write, text))
    assert (finding.code, finding.line, finding.col) == ("L007", 1, 4)
    assert finding.message.startswith("unsupported tag '") and "only plain YAML data is accepted" in finding.message


def test_tags_never_execute_code(write: Write, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    failure(write, f"v: !!python/object/apply:os.mkdir ['{target}']\n")
    assert not target.exists()


def test_standard_collection_tags_are_accepted(write: Write) -> None:
    assert load(write, "v: !!map {a: !!seq [1]}\n") == {"v": {"a": [1]}}


def test_load_error_is_a_contract_error_with_every_finding(write: Write) -> None:
    path = write("doc.yaml", "a: 1\na: 2\nb: 1\nb: 2\n")
    with pytest.raises(ContractError) as info:
        load_document(path)
    assert isinstance(info.value, LoadError)
    assert str(info.value) == "\n".join(f.format() for f in info.value.findings)
    assert len(info.value.findings) == 2


def test_directories_and_missing_files(write: Write, tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(LoadError) as info:
        load_document(tmp_path / "dir.yaml")
    assert one(info.value.findings).message == "dir.yaml is a directory, not a YAML file"
    with pytest.raises(LoadError) as info:
        load_document(tmp_path / "absent.yaml")
    assert one(info.value.findings).message == "cannot read absent.yaml: No such file or directory"


# --- positions ----------------------------------------------------------------------------------------------------


def test_positions_of_keys_and_values_are_one_based(write: Write) -> None:
    doc = load_document(write("doc.yaml", "kind: fsm\nstates:\n  - name: a\n    terminal: true\n"))
    assert doc.key_positions[("states",)] == Position("doc.yaml", 2, 1)
    assert doc.positions[("states",)] == Position("doc.yaml", 3, 3)
    assert doc.positions[("states", 0)] == Position("doc.yaml", 3, 5)
    assert doc.key_positions[("states", 0, "terminal")] == Position("doc.yaml", 4, 5)
    assert doc.positions[("states", 0, "terminal")] == Position("doc.yaml", 4, 15)


def test_position_prefers_the_key_and_falls_back_to_the_nearest_parent(write: Write) -> None:
    doc = load_document(write("doc.yaml", "a:\n  b: [1, 2]\n"))
    assert doc.position(("a", "b")) == Position("doc.yaml", 2, 3)
    assert doc.position(("a", "b"), prefer_key=False) == Position("doc.yaml", 2, 6)
    assert doc.position(("a", "b", 1)) == Position("doc.yaml", 2, 10)
    assert doc.position(("a", "b", 7, "x")) == Position("doc.yaml", 2, 3)
    assert doc.position(("nope",)) == Position("doc.yaml", 1, 1)


def test_paths_outside_the_working_directory_stay_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert display_path(tmp_path / "a" / "x.yaml") == "x.yaml"
    assert display_path(tmp_path / "b" / "x.yaml") == str(tmp_path / "b" / "x.yaml")


# --- $ref ---------------------------------------------------------------------------------------------------------


def test_ref_to_a_whole_file_and_to_a_pointer(write: Write) -> None:
    write("parts/policy.yaml", "kind: retry\nbackoff:\n  initial_ms: 5\n  max_ms: 50\nlist: [a, b, {c: 3}]\n")
    data = load(
        write,
        "whole: {$ref: parts/policy.yaml}\n"
        "backoff: {$ref: 'parts/policy.yaml#/backoff'}\n"
        "item: {$ref: 'parts/policy.yaml#/list/2/c'}\n"
        "root: {$ref: 'parts/policy.yaml#/'}\n",
    )
    assert data["whole"]["backoff"] == {"initial_ms": 5, "max_ms": 50}
    assert data["backoff"] == {"initial_ms": 5, "max_ms": 50}
    assert data["item"] == 3
    assert data["root"] == data["whole"]


def test_pointer_escapes(write: Write) -> None:
    write("t.yaml", "a/b: 1\nc~d: 2\n")
    assert load(write, "x: {$ref: 't.yaml#/a~1b'}\ny: {$ref: 't.yaml#/c~0d'}\n") == {"x": 1, "y": 2}


def test_refs_inside_referenced_files_are_relative_to_them(write: Write) -> None:
    write("lib/a.yaml", "inner: {$ref: sub/b.yaml}\n")
    write("lib/sub/b.yaml", "value: 42\n")
    assert load(write, "x: {$ref: lib/a.yaml}\n") == {"x": {"inner": {"value": 42}}}


def test_json_and_yml_targets(write: Write) -> None:
    write("t.json", '{"retry": {"max_attempts": 2}}')
    write("t.yml", "z: 1\n")
    assert load(write, "a: {$ref: 't.json#/retry'}\nb: {$ref: t.yml}\n") == {"a": {"max_attempts": 2}, "b": {"z": 1}}


def test_values_through_ref_have_positions_in_the_referenced_file(write: Write, tmp_path: Path) -> None:
    write("lib/policy.yaml", "kind: retry\nbackoff:\n  initial_ms: 5\n")
    doc = load_document(write("doc.yaml", "name: x\nretry: {$ref: 'lib/policy.yaml#/backoff'}\n"))
    assert doc.key_positions[("retry",)] == Position("doc.yaml", 2, 1)
    assert doc.positions[("retry",)] == Position("lib/policy.yaml", 3, 3)
    assert doc.position(("retry", "initial_ms")) == Position("lib/policy.yaml", 3, 3)
    assert doc.position(("retry", "initial_ms"), prefer_key=False) == Position("lib/policy.yaml", 3, 15)
    assert doc.files == {tmp_path / "doc.yaml", tmp_path / "lib" / "policy.yaml"}


def test_hash_refs_belong_to_json_schema_and_are_left_alone(write: Write) -> None:
    data = load(write, "models:\n  A: {type: object}\n  B: {$ref: '#/$defs/A'}\n")
    assert data["models"]["B"] == {"$ref": "#/$defs/A"}


def test_ref_with_siblings_is_plain_data(write: Write) -> None:
    assert load(write, "a: {$ref: missing.yaml, description: x}\n") == {
        "a": {"$ref": "missing.yaml", "description": "x"}
    }


def test_ref_to_a_missing_file(write: Write) -> None:
    finding = one(failure(write, "kind: retry\nbackoff: {$ref: lib/none.yaml}\n"))
    assert finding == Finding(
        "doc.yaml", 2, 17, Level.ERROR, "L008", "$ref 'lib/none.yaml': no such file lib/none.yaml"
    )


@pytest.mark.parametrize("target", ["policy.txt", "policy", "policy.yaml.bak", "", "1"])
def test_ref_must_name_a_yaml_or_json_file(write: Write, target: str) -> None:
    finding = one(failure(write, f"a: {{$ref: '{target}'}}\n"))
    assert (finding.code, finding.message) == ("L008", f"$ref '{target}' must name a .yaml, .yml or .json file")


def test_ref_to_a_directory(write: Write, tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    assert one(failure(write, "a: {$ref: dir.yaml}\n")).code == "L008"


@pytest.mark.parametrize(
    ("target", "reason"),
    [("a" * 300 + ".yaml", "File name too long"), ("a\\0b.yaml", "embedded null byte")],
)
def test_ref_to_an_impossible_file_name(write: Write, target: str, reason: str) -> None:
    finding = one(failure(write, f'a: {{$ref: "{target}"}}\n'))
    assert finding.code == "L008"
    assert finding.message.endswith(f"cannot use this file name: {reason}")


def test_ref_to_a_symlink_loop(write: Write, tmp_path: Path) -> None:
    os.symlink("loop.yaml", tmp_path / "loop.yaml")
    finding = one(failure(write, "a: {$ref: loop.yaml}\n"))
    assert (finding.code, finding.message) == ("L008", "$ref 'loop.yaml': cannot use this file name: a symlink loop")


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        ("backoff", "a JSON pointer must start with '/'"),
        ("/backof", "the pointer segment 'backof' does not exist"),
        ("/backoff/initial_ms/x", "the pointer segment 'x' does not exist"),
        ("/list/2", "the pointer segment '2' does not exist"),
        ("/list/-1", "the pointer segment '-1' does not exist"),
    ],
)
def test_ref_with_a_bad_pointer(write: Write, pointer: str, message: str) -> None:
    write("t.yaml", "backoff: {initial_ms: 5}\nlist: [a, b]\n")
    finding = one(failure(write, f"a: {{$ref: 't.yaml#{pointer}'}}\n"))
    assert (finding.code, finding.line, finding.col) == ("L010", 1, 11)
    assert finding.message == f"$ref 't.yaml#{pointer}': {message}"


def test_ref_cycle_across_files(write: Write) -> None:
    write("b.yaml", "back: {$ref: a.yaml}\n")
    finding = one(failure(write, "x: {$ref: b.yaml}\n", name="a.yaml"))
    assert finding == Finding("b.yaml", 1, 14, Level.ERROR, "L009", "$ref cycle: a.yaml -> b.yaml -> a.yaml")


def test_ref_cycle_to_itself(write: Write) -> None:
    finding = one(failure(write, "x: {$ref: doc.yaml}\n"))
    assert (finding.code, finding.message) == ("L009", "$ref cycle: doc.yaml -> doc.yaml")


def test_ref_cycle_through_a_pointer_into_an_enclosing_node(write: Write) -> None:
    write("b.yaml", "y: {$ref: 'a.yaml#/x'}\n")
    finding = one(failure(write, "x: {$ref: b.yaml}\n", name="a.yaml"))
    assert (finding.code, finding.message) == ("L009", "$ref cycle: a.yaml -> b.yaml -> a.yaml#/x")
    finding = one(failure(write, "x:\n  y: {$ref: 'c.yaml#/x'}\n", name="c.yaml"))
    assert (finding.code, finding.message) == ("L009", "$ref cycle: c.yaml -> c.yaml#/x")


def test_the_same_file_may_be_referenced_many_times(write: Write) -> None:
    write("t.yaml", "v: 1\n")
    assert load(write, "a: {$ref: t.yaml}\nb: [{$ref: t.yaml}, {$ref: 't.yaml#/v'}]\n") == {
        "a": {"v": 1},
        "b": [{"v": 1}, 1],
    }


def test_problems_in_referenced_files_point_into_them(write: Write) -> None:
    write("bad.yaml", "a: 1\na: 2\n")
    write("tagged.yaml", "a: !!python/object:os.system {}\n")
    write("big.yaml", "a: " + "x" * 200 + "\n")
    assert one(failure(write, "x: {$ref: bad.yaml}\n")).format().startswith("bad.yaml:2:1: error L004 ")
    assert one(failure(write, "x: {$ref: tagged.yaml}\n")).format().startswith("tagged.yaml:1:4: error L007 ")
    big = one(failure(write, "x: {$ref: big.yaml}\n", max_bytes=100))
    assert big.format() == "doc.yaml:1:11: error L001 big.yaml is larger than the 100-byte limit for contract files"


def test_ref_expansion_counts_toward_the_node_limit(write: Write) -> None:
    write("t.yaml", "v: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n")
    text = "a: [" + ", ".join(["{$ref: t.yaml}"] * 20) + "]\n"
    assert len(load(write, text)["a"]) == 20
    assert one(failure(write, text, max_nodes=100)).code == "L005"


# --- finding files ------------------------------------------------------------------------------------------------


def test_iter_yaml_files_is_recursive_sorted_and_skips_hidden_folders(tmp_path: Path) -> None:
    for name in ["b.yaml", "a.yml", "c.json", "notes.txt", "sub/d.yaml", ".hidden/e.yaml", "sub/.git/f.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    (tmp_path / ".dot.yaml").write_text("x: 1\n")
    (tmp_path / "folder.yaml").mkdir()
    paths = list(iter_yaml_files(tmp_path))
    found = [p.relative_to(tmp_path).as_posix() for p in paths if isinstance(p, Path)]
    assert len(found) == len(paths)
    assert found == [".dot.yaml", "a.yml", "b.yaml", "sub/d.yaml"]
    assert list(iter_yaml_files(tmp_path / "c.json")) == [tmp_path / "c.json"]


def test_iter_yaml_files_yields_findings_in_place_of_unusable_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ["a.yaml", "c/e.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    (tmp_path / "b.yaml").symlink_to("nowhere.yaml")
    (tmp_path / "c" / "d.yml").symlink_to("../a.yaml")
    (tmp_path / "c" / "up").symlink_to("..")  # never followed
    os.mkfifo(tmp_path / "f.yaml")
    assert list(iter_yaml_files(tmp_path)) == [
        tmp_path / "a.yaml",
        Finding(
            "b.yaml", 1, 1, Level.ERROR, "L001", "b.yaml is a symbolic link to 'nowhere.yaml', which does not exist"
        ),
        tmp_path / "c" / "d.yml",
        tmp_path / "c" / "e.yaml",
        Finding("f.yaml", 1, 1, Level.ERROR, "L001", "f.yaml is a FIFO (named pipe), not a regular file"),
    ]
    # a link named as the root is followed, and findings still show where the entries really are
    up = tmp_path / "c" / "up"
    found = list(iter_yaml_files(up))
    assert [f.path if isinstance(f, Finding) else f for f in found] == [
        up / "a.yaml",
        "b.yaml",
        up / "c" / "d.yml",
        up / "c" / "e.yaml",
        "f.yaml",
    ]


def test_iter_yaml_files_does_not_recurse(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "x.yaml").write_text("x: 1\n")
    frames, frame = 0, cast(FrameType | None, sys._getframe())
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + 50)  # far fewer frames than levels
    try:
        found = list(iter_yaml_files(tmp_path))
    finally:
        sys.setrecursionlimit(limit)
    assert found == [deep / "x.yaml"]
