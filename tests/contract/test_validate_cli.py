"""Validating sets of files (``validate_paths``, cross-set checks, ``load_contract``) and the ``onex validate`` and
``onex schema`` commands: output, JSON, exit codes."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from framework.cli.main import main
from framework.contract.findings import Finding, Level
from framework.contract.loader import LoadError
from framework.contract.schema import SCHEMA_FILES, language_schemas
from framework.contract.spec import Contract
from framework.contract.validate import load_contract, validate_paths

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def onex(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Run]:
    """Runs ``onex`` in-process with tmp_path as the working directory: exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run


def write(root: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def contract(name: str, node_type: str = "COMPUTE", **fields: Any) -> dict[str, Any]:
    return {
        "contract_version": "1.0",
        "name": name,
        "version": {"major": 1, "minor": 0, "patch": 0},
        "node_type": node_type,
        **fields,
    }


def catalog(*events: dict[str, Any]) -> dict[str, Any]:
    return {"catalog_name": "c", "models": {"P": {"type": "object"}}, "events": list(events)}


def event(name: str, **flags: bool) -> dict[str, Any]:
    return {"name": name, "payload_model": "P", **flags}


CLEAN = contract("clean")
WARNS = contract("warns", publishes=["lonely"], subcontracts={"events": catalog(event("lonely"))})
BROKEN = contract("broken", node_type="EFFECT")


# --- across the validated set -------------------------------------------------------------------------------------


def test_N001_duplicate_node_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "a.yaml", contract("same"))
    write(tmp_path, "b.yaml", contract("same"))
    write(tmp_path, "c.yaml", contract("other"))
    report = validate_paths([tmp_path])
    assert [f.format() for f in report.findings] == [
        "b.yaml:2:1: error N001 node name 'same' is already used by a.yaml:2"
    ]


def test_N002_N003_events_nobody_consumes_or_produces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    events = catalog(event("ping"), event("pong"), event("orphan-out"), event("orphan-in"))
    write(
        tmp_path,
        "a.yaml",
        contract(
            "a", publishes=["ping", "orphan-out"], subscriptions=[{"event": "pong"}], subcontracts={"events": events}
        ),
    )
    write(
        tmp_path,
        "b.yaml",
        contract(
            "b",
            publishes=["pong"],
            subscriptions=[{"event": "ping"}, {"event": "orphan-in"}],
            subcontracts={"events": events},
        ),
    )
    report = validate_paths([tmp_path])
    assert [(f.path, f.level, f.code, f.message) for f in report.findings] == [
        ("a.yaml", Level.WARNING, "N002", "'orphan-out' is published but no validated contract subscribes to it"),
        ("b.yaml", Level.WARNING, "N003", "'orphan-in' is consumed but no validated contract publishes it"),
    ]
    # either contract alone: its counterpart is missing
    alone = validate_paths([tmp_path / "a.yaml"])
    assert sorted(f.code for f in alone.findings) == ["N002", "N002", "N003"]


def test_external_flags_silence_N002_N003(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    events = catalog(event("out", external_consumers=True), event("in", external_producers=True))
    write(
        tmp_path,
        "a.yaml",
        contract("a", publishes=["out"], subscriptions=[{"event": "in"}], subcontracts={"events": events}),
    )
    assert validate_paths([tmp_path]).findings == []


def test_W004_node_targets_are_looked_up_in_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    wf = {"workflow_name": "w", "steps": [{"name": "s", "target": {"node": "worker", "handler": "run"}}]}
    write(tmp_path, "orch.yaml", contract("orch", "ORCHESTRATOR", subcontracts={"workflow": wf}))
    [finding] = validate_paths([tmp_path / "orch.yaml"]).findings
    assert (finding.code, finding.level, finding.message) == (
        "W004",
        Level.WARNING,
        "step 's' calls node 'worker', which is not among the validated contracts",
    )
    write(tmp_path, "worker.yaml", contract("worker"))
    assert validate_paths([tmp_path]).findings == []


def test_cross_checks_can_be_turned_off(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", WARNS)
    assert validate_paths([tmp_path], cross_check=False).findings == []


# --- sets of paths ------------------------------------------------------------------------------------------------


def test_directories_are_searched_recursively_and_hidden_folders_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", contract("a"))
    write(tmp_path, "deep/er/b.yml", contract("b"))
    write(tmp_path, ".hidden/c.yaml", "not: [valid")
    write(tmp_path, "sub/.cache/d.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "not: [valid")
    report = validate_paths([tmp_path])
    assert (report.files, report.findings) == (2, [])
    assert sorted(c.name for _, c in report.contracts) == ["a", "b"]


def test_a_file_named_twice_is_checked_once(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", contract("a"))
    report = validate_paths([path, tmp_path, tmp_path / "." / "a.yaml"])
    assert (report.files, report.findings) == (1, [])  # and no N001 with itself


def test_nonexistent_paths_are_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate_paths([Path("nope.yaml"), Path("x" * 300)])
    assert [f.format() for f in report.findings] == [
        "nope.yaml:1:1: error L001 nope.yaml: no such file or directory",
        f"{'x' * 300}:1:1: error L001 {'x' * 300}: no such file or directory",
    ]
    assert report.files == 0


def test_report_counts(tmp_path: Path) -> None:
    write(tmp_path, "clean.yaml", CLEAN)
    write(tmp_path, "warns.yaml", WARNS)
    write(tmp_path, "broken.yaml", BROKEN)
    write(tmp_path, "bad.yaml", "a: [")
    report = validate_paths([tmp_path])
    assert (report.files, report.errors, report.warnings) == (4, 2, 1)
    assert [f.code for f in report.findings] == ["L003", "X003", "N002"]  # sorted by path, line, column
    assert sorted(c.name for _, c in report.contracts) == ["broken", "clean", "warns"]


def test_load_contract(tmp_path: Path) -> None:
    contract_ = load_contract(write(tmp_path, "a.yaml", CLEAN))
    assert isinstance(contract_, Contract) and contract_.name == "clean"
    load_contract(write(tmp_path, "w.yaml", WARNS))  # warnings do not stop loading; no cross checks either
    with pytest.raises(LoadError) as info:
        load_contract(write(tmp_path, "b.yaml", BROKEN))
    assert [f.code for f in info.value.findings] == ["X003"]
    with pytest.raises(LoadError) as info:
        load_contract(write(tmp_path, "r.yaml", {"kind": "retry"}))
    assert info.value.findings[0].message == "this file is a subcontract, not a contract (it has no node_type)"


# --- onex validate ------------------------------------------------------------------------------------------------


def test_clean_exits_0(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", CLEAN)
    assert onex("validate", "a.yaml") == (0, "1 file checked: 0 errors, 0 warnings\n", "")
    assert onex("validate", "--strict", "a.yaml")[0] == 0


def test_warnings_exit_0_unless_strict(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "w.yaml", WARNS)
    code, out, _ = onex("validate", "w.yaml")
    assert code == 0
    assert out == (
        "w.yaml:9:3: warning N002 'lonely' is published but no validated contract subscribes to it\n"
        "1 file checked: 0 errors, 1 warning\n"
    )
    assert onex("validate", "--strict", "w.yaml") == (1, out, "")


def test_errors_exit_1(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", BROKEN)
    write(tmp_path, "c.yaml", "a: [")
    code, out, _ = onex("validate", ".")
    assert code == 1
    assert out.splitlines()[-1] == "2 files checked: 2 errors, 0 warnings"


def test_nonexistent_path_exits_1(onex: Run) -> None:
    assert onex("validate", "missing.yaml") == (
        1,
        "missing.yaml:1:1: error L001 missing.yaml: no such file or directory\n0 files checked: 1 error, 0 warnings\n",
        "",
    )


@pytest.mark.parametrize(
    "argv",
    [["validate", "--format", "xml", "a.yaml"], ["validate", "--bogus"], [], ["frobnicate"]],
    ids=["bad-format", "unknown-option", "no-command", "unknown-command"],
)
def test_usage_errors_exit_2(onex: Run, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        onex(*argv)
    assert info.value.code == 2
    assert "usage: onex" in capsys.readouterr().err


def test_json_format(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", BROKEN)
    write(tmp_path, "w.yaml", WARNS)
    code, out, _ = onex("validate", "--format", "json", ".")
    assert code == 1
    data = json.loads(out)
    assert data == {
        "files": 2,
        "errors": 1,
        "warnings": 1,
        "findings": [
            {
                "path": "b.yaml",
                "line": 7,
                "col": 1,
                "level": "error",
                "code": "X003",
                "message": "an EFFECT node must declare at least one effect in 'effects'",
            },
            {
                "path": "w.yaml",
                "line": 9,
                "col": 3,
                "level": "warning",
                "code": "N002",
                "message": "'lonely' is published but no validated contract subscribes to it",
            },
        ],
    }
    assert out.endswith("}\n")


def test_json_format_clean_and_strict(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "w.yaml", WARNS)
    code, out, _ = onex("validate", "--format", "json", "--strict", "w.yaml")
    assert (code, json.loads(out)["warnings"], json.loads(out)["errors"]) == (1, 1, 0)
    write(tmp_path, "a.yaml", CLEAN)
    code, out, _ = onex("validate", "--format", "json", "a.yaml")
    assert (code, json.loads(out)) == (0, {"files": 1, "errors": 0, "warnings": 0, "findings": []})


def test_no_import(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "i.yaml", contract("impl", implementation="not_a_module_here:Handler"))
    code, out, _ = onex("validate", "i.yaml")
    assert (code, out.split(" ")[2]) == (1, "I001")
    assert onex("validate", "--no-import", "i.yaml") == (0, "1 file checked: 0 errors, 0 warnings\n", "")


def test_default_paths_are_the_shipped_contracts(onex: Run) -> None:
    code, out, _ = onex("validate", "--strict")
    assert code == 0
    files = int(out.split(" ")[0])
    assert files >= 4 and out.endswith(" checked: 0 errors, 0 warnings\n")


def test_random_bytes_and_odd_files_get_findings_not_tracebacks(onex: Run, tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "empty.yaml").write_bytes(b"")
    (tmp_path / "latin.yaml").write_bytes(b"kind: \xff\n")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000)
    code, out, err = onex("validate", ".")
    assert (code, err) == (1, "")
    assert [line.split(" ")[2] for line in out.splitlines()[:-1]] == ["L002", "L006", "L011", "L002"]


def test_each_finding_is_one_line_and_control_characters_are_escaped(onex: Run, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text('kind: retry\n"a\\nb": 1\n"\\e[31mred": 2\n"c\\u2028d\\u0085": 3\n"tab\\tok": 4\n')
    code, out, _ = onex("validate", "c.yaml")
    assert code == 1
    assert out.splitlines() == [
        "c.yaml:2:1: error S001 unknown field 'a\\nb'; allowed: kind, max_attempts, backoff, dead_letter",
        "c.yaml:3:1: error S001 unknown field '\\x1b[31mred'; allowed: kind, max_attempts, backoff, dead_letter",
        "c.yaml:4:1: error S001 unknown field 'c\\u2028d\\x85'; allowed: kind, max_attempts, backoff, dead_letter",
        "c.yaml:5:1: error S001 unknown field 'tab\tok'; allowed: kind, max_attempts, backoff, dead_letter",
        "1 file checked: 4 errors, 0 warnings",
    ]
    code, out, _ = onex("validate", "--format", "json", "c.yaml")
    assert json.loads(out)["findings"][0]["message"].startswith("unknown field 'a\nb'")  # data keeps the text


# --- odd paths: every one is a finding, none is skipped, nothing is an internal error -----------------------------

Chain = Callable[[int, dict[str, str]], str]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    """Makes ``d/d/.../d``, ``depth`` levels deep under tmp_path, with ``files`` (name: text) at the bottom, and
    returns its path relative to tmp_path. Built and removed one level at a time, so that no system call sees more
    than one name: the chain may be longer than PATH_MAX, and shutil.rmtree, which recurses, could not remove it."""
    top = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)

    def make(depth: int, files: dict[str, str]) -> str:
        back = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fchdir(top)
            for _ in range(depth):
                os.mkdir("d")
                os.chdir("d")
            for name, text in files.items():
                Path(name).write_text(text, encoding="utf-8")
        finally:
            os.fchdir(back)
            os.close(back)
        return "/".join(["d"] * depth)

    yield make
    back = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fchdir(top)
        levels = 0
        while os.path.isdir("d") and not os.path.islink("d"):
            os.chdir("d")
            levels += 1
        if levels:
            for name in os.listdir("."):
                os.unlink(name)
        for _ in range(levels):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.fchdir(back)
        os.close(back)
        os.close(top)


def test_a_contract_1500_directories_deep_is_checked(onex: Run, chain: Chain) -> None:
    deep = chain(
        1500,
        {"clean.yaml": yaml.safe_dump(CLEAN, sort_keys=False), "broken.yaml": yaml.safe_dump(BROKEN, sort_keys=False)},
    )
    assert onex("validate", deep) == (
        1,
        f"{deep}/broken.yaml:7:1: error X003 an EFFECT node must declare at least one effect in 'effects'\n"
        "2 files checked: 1 error, 0 warnings\n",
        "",
    )
    assert onex("validate", "--strict", f"{deep}/clean.yaml") == (0, "1 file checked: 0 errors, 0 warnings\n", "")


def test_a_clean_contract_1500_directories_deep_passes(onex: Run, chain: Chain) -> None:
    chain(1500, {"clean.yaml": yaml.safe_dump(CLEAN, sort_keys=False)})
    assert onex("validate", "--strict", "d") == (0, "1 file checked: 0 errors, 0 warnings\n", "")


def test_a_directory_deeper_than_path_max_is_a_finding(onex: Run, chain: Chain) -> None:
    path_max = os.pathconf(".", "PC_PATH_MAX")
    chain(path_max // 2 + 10, {"clean.yaml": yaml.safe_dump(CLEAN, sort_keys=False)})
    unlisted = "/".join(["d"] * (path_max // 2 + 1))  # the first whose relative path is PATH_MAX long or longer
    assert onex("validate", "d") == (
        1,
        f"{unlisted}:1:1: error L001 cannot read directory {unlisted}: File name too long\n"
        "0 files checked: 1 error, 0 warnings\n",
        "",
    )


def _special(kind: str, name: str) -> str:
    """Makes a special file ``name`` in the working directory; returns the path to name on the command line."""
    if kind == "fifo":
        os.mkfifo(name)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(name)
    else:
        return "/dev/null"
    return name


@pytest.mark.parametrize(
    ("kind", "what"),
    [("fifo", "a FIFO (named pipe)"), ("socket", "a socket"), ("device", "a character device")],
)
def test_a_special_file_named_explicitly_is_a_finding(onex: Run, kind: str, what: str) -> None:
    named = _special(kind, "special.yaml")
    assert onex("validate", named) == (
        1,
        f"{named}:1:1: error L001 {named} is {what}, not a regular file or a directory\n"
        "0 files checked: 1 error, 0 warnings\n",
        "",
    )


def test_special_yaml_entries_of_a_directory_are_findings(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "dir/a.yaml", CLEAN)
    os.chdir(tmp_path / "dir")
    _special("fifo", "pipe.yaml")
    _special("socket", "sock.yml")
    _special("fifo", "pipe.txt")  # not a contract file by its name: passed over
    os.symlink("/dev/null", "null.yaml")
    os.chdir(tmp_path)
    assert onex("validate", "dir") == (
        1,
        "dir/null.yaml:1:1: error L001 dir/null.yaml is a symbolic link to a character device, not to a regular file\n"
        "dir/pipe.yaml:1:1: error L001 dir/pipe.yaml is a FIFO (named pipe), not a regular file\n"
        "dir/sock.yml:1:1: error L001 dir/sock.yml is a socket, not a regular file\n"
        "1 file checked: 3 errors, 0 warnings\n",
        "",
    )


def test_dangling_and_looping_yaml_links_are_findings(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "dir/a.yaml", CLEAN)
    links = {
        "gone.yaml": "missing/contract.yaml",
        "loop1.yaml": "loop2.yaml",
        "loop2.yaml": "loop1.yaml",
        "alias.yaml": "a.yaml",  # a link to a contract: checked, once
        "gone.txt": "nowhere.txt",  # not a contract file by its name: passed over
    }
    for name, target in links.items():
        (tmp_path / "dir" / name).symlink_to(target)
    assert onex("validate", "dir") == (
        1,
        "dir/gone.yaml:1:1: error L001 dir/gone.yaml is a symbolic link to 'missing/contract.yaml', which does not "
        "exist\n"
        "dir/loop1.yaml:1:1: error L001 dir/loop1.yaml is a symbolic link in a loop of links: it leads to no file\n"
        "dir/loop2.yaml:1:1: error L001 dir/loop2.yaml is a symbolic link in a loop of links: it leads to no file\n"
        "1 file checked: 3 errors, 0 warnings\n",
        "",
    )
    assert onex("validate", "dir/gone.yaml") == (
        1,
        "dir/gone.yaml:1:1: error L001 dir/gone.yaml: no such file or directory\n"
        "0 files checked: 1 error, 0 warnings\n",
        "",
    )


def test_a_loop_of_directory_links_ends(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "a/b/c.yaml", CLEAN)
    (tmp_path / "a" / "b" / "up").symlink_to("..")
    (tmp_path / "a" / "b" / "again").symlink_to("../../a")
    (tmp_path / "a" / "self").symlink_to(".")
    assert onex("validate", "a") == (0, "1 file checked: 0 errors, 0 warnings\n", "")
    # a link named on the command line is followed; the links below it are not
    assert onex("validate", "a/b/up") == (0, "1 file checked: 0 errors, 0 warnings\n", "")


def test_links_to_directories_are_not_followed(onex: Run, tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/x.yaml", CLEAN)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "other").symlink_to("../elsewhere")
    (tmp_path / "links" / "other.yaml").symlink_to("../elsewhere")
    assert onex("validate", "links") == (
        1,
        "links:1:1: error L012 no .yaml or .yml files under links\n0 files checked: 1 error, 0 warnings\n",
        "",
    )


def test_a_directory_without_yaml_files_is_an_error(onex: Run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert onex("validate", "empty") == (
        1,
        "empty:1:1: error L012 no .yaml or .yml files under empty\n0 files checked: 1 error, 0 warnings\n",
        "",
    )
    write(tmp_path, "wrong/notes.txt", "not: [valid")
    write(tmp_path, "wrong/data.json", "{}")
    write(tmp_path, "wrong/.git/x.yaml", CLEAN)  # hidden folders are not searched
    write(tmp_path, "wrong/sub/.yaml", CLEAN)  # a name that is all suffix is no contract file
    write(tmp_path, "right/a.yaml", CLEAN)
    (tmp_path / "right" / "empty").mkdir()  # only the directories named on the command line must hold YAML
    code, out, err = onex("validate", "--format", "json", "right", "wrong")
    assert (code, err) == (1, "")
    assert json.loads(out) == {
        "files": 1,
        "errors": 1,
        "warnings": 0,
        "findings": [
            {
                "path": "wrong",
                "line": 1,
                "col": 1,
                "level": "error",
                "code": "L012",
                "message": "no .yaml or .yml files under wrong",
            }
        ],
    }


def test_a_directory_that_cannot_be_listed_is_a_finding(
    onex: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "top/a.yaml", CLEAN)
    write(tmp_path, "top/locked/b.yaml", CLEAN)
    scandir = os.scandir

    def refuse(path: Any) -> Any:  # a permission test of its own: the tests may run as root
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    message = "top/locked:1:1: error L001 cannot read directory top/locked: Permission denied\n"
    assert onex("validate", "top") == (1, message + "1 file checked: 1 error, 0 warnings\n", "")
    assert onex("validate", "top/locked") == (1, message + "0 files checked: 1 error, 0 warnings\n", "")


def test_odd_paths_in_validate_paths_are_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe.yaml")
    (tmp_path / "empty").mkdir()
    report = validate_paths([Path("pipe.yaml"), Path("empty"), Path("bad\0name")])
    assert report.files == 0
    assert report.findings == [
        Finding("bad\0name", 1, 1, Level.ERROR, "L001", "bad\0name: no such file or directory"),
        Finding("empty", 1, 1, Level.ERROR, "L012", "no .yaml or .yml files under empty"),
        Finding(
            "pipe.yaml",
            1,
            1,
            Level.ERROR,
            "L001",
            "pipe.yaml is a FIFO (named pipe), not a regular file or a directory",
        ),
    ]


def test_help_documents_the_exit_codes(onex: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        onex("validate", "--help")
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "Exit codes: 0 clean (warnings allowed unless --strict), 1 errors, 2 usage, "
        "3 internal error (a bug in onex, please report it)."
    ) in text


# --- onex schema --------------------------------------------------------------------------------------------------


def test_schema_check_fails_when_missing_or_stale_and_passes_after_writing(onex: Run, tmp_path: Path) -> None:
    out_dir = tmp_path / "schemas"
    code, _, err = onex("schema", "--check", "--output", str(out_dir))
    assert code == 1
    assert err.count("is stale or missing: run 'onex schema'") == len(SCHEMA_FILES)
    assert not out_dir.exists()

    code, out, _ = onex("schema", "--output", str(out_dir))
    assert code == 0
    assert sorted(line.removeprefix("wrote ") for line in out.splitlines()) == sorted(
        str(out_dir / name) for name in SCHEMA_FILES
    )
    for name, text in language_schemas().items():
        assert (out_dir / name).read_text(encoding="utf-8") == text
    assert onex("schema", "--check", "--output", str(out_dir)) == (0, f"schema in {out_dir} is up to date\n", "")

    stale = out_dir / "contract.schema.json"
    stale.write_text(stale.read_text(encoding="utf-8").replace('"title"', '"titel"', 1), encoding="utf-8")
    code, _, err = onex("schema", "--check", "--output", str(out_dir))
    assert (code, err) == (1, f"{stale} is stale or missing: run 'onex schema'\n")
