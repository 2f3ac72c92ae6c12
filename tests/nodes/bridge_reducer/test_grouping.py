"""The bridge reducer's CUSTOM strategy (nodes/bridge_reducer/grouping.py): directory groups of file paths, on
ordinary and odd inputs, and as the shipped aggregation subcontract folds it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from framework.contract.subcontracts import AggregationStrategy, AggregationType
from framework.contract.validate import load_contract
from framework.runtime.aggregation import Aggregator
from nodes.bridge_reducer.grouping import MAX_SEGMENT, ROOT, by_directory, directory_key

ROOT_DIR = Path(__file__).resolve().parents[3]
STRATEGY = AggregationStrategy(type=AggregationType.CUSTOM, group_by="file_path", function="m:f")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("src/pkg/mod.py", "src/pkg"),
        ("src/pkg/sub/deeper/mod.py", "src/pkg"),
        ("docs/index.md", "docs"),
        ("README.md", ROOT),
        ("src\\pkg\\mod.py", "src/pkg"),  # Windows separators
        ("  src/pkg/mod.py \n", "src/pkg"),  # surrounding whitespace
        ("./src//pkg/./mod.py", "src/pkg"),  # empty and "." segments
        ("/home/me/notes.txt", "home/me"),  # absolute: grouped as if relative to the top
        ("C:\\Users\\me\\a.txt", "Users/me"),  # a drive is dropped
        ("c:a.txt", ROOT),
        ("src/pkg/../lib/mod.py", "src/lib"),  # ".." removes the segment before it
        ("../../etc/passwd", "etc"),  # ... and never climbs above the top
        ("..", ROOT),
        ("docs/", "docs"),  # a trailing "/" names a directory, not a file
        ("src/pkg/", "src/pkg"),
        ("src/pkg/..", "src"),
        ("/", ROOT),
        (".", ROOT),
        ("Src/Pkg/a.py", "Src/Pkg"),  # case is kept: paths are case-sensitive
        ("cafe\u0301/a.txt", "caf\u00e9"),  # Unicode NFC: the decomposed and composed spellings are one group
    ],
)
def test_directory_key_of_a_path(path: str, key: str) -> None:
    assert directory_key(path) == key


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n", 42, 3.5, True, b"src/a.py", ["src", "a.py"], {"p": 1}])
def test_no_path_means_no_group(value: Any) -> None:
    assert directory_key(value) is None


def test_depth_is_how_many_directories_name_the_group() -> None:
    assert directory_key("a/b/c/d.txt", depth=1) == "a"
    assert directory_key("a/b/c/d.txt", depth=3) == "a/b/c"
    assert directory_key("a/b/c/d.txt", depth=9) == "a/b/c"
    assert directory_key("a/b/c/d.txt", depth=0) == ROOT


def test_characters_postgresql_cannot_store_are_replaced() -> None:
    assert directory_key("bad\x00dir/a.txt") == "bad\ufffddir"
    assert directory_key("tab\there/new\nline/a.txt") == "tab\ufffdhere/new\ufffdline"
    assert directory_key("c1\x85x/a.txt") == "c1\ufffdx"
    assert directory_key("lone\ud800surrogate/a.txt") == "lone\ufffdsurrogate"


def test_long_segments_are_cut_so_the_key_stays_small() -> None:
    key = directory_key("x" * 5000 + "/" + "é" * 300 + "/f.txt")
    assert key is not None
    first, second = key.split("/")
    assert first == "x" * (MAX_SEGMENT - 1) + "…"
    assert second == "é" * (MAX_SEGMENT - 1) + "…"
    assert directory_key("y" * MAX_SEGMENT + "/f") == "y" * MAX_SEGMENT  # at the limit: kept whole


def test_any_string_gives_a_storable_bounded_key_without_raising() -> None:
    separators = ["/", "\\", ".", "..", " ", "C:"]
    unstorable = ["\x00", "\x1f", "\x7f", "\ud800", "\udfff"]
    alphabet = [*separators, *unstorable, "a", "é", "e\u0301", "x" * 150]
    rng = random.Random(20240501)
    for _ in range(2000):
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        key = directory_key(path)
        if not path.strip():
            assert key is None
            continue
        assert key is not None and key != ""
        key.encode("utf-8")  # no lone surrogate left
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in key)
        assert len(key) <= 2 * MAX_SEGMENT + 1
        assert "//" not in key and not key.startswith("/") and not key.endswith("/")
        assert key == ROOT or ROOT not in key.split("/")


def test_by_directory_reads_the_strategy_field_and_tolerates_odd_items() -> None:
    assert by_directory({"file_path": "src/pkg/a.py"}, STRATEGY) == "src/pkg"
    assert by_directory({}, STRATEGY) is None
    assert by_directory({"file_path": None}, STRATEGY) is None
    assert by_directory({"file_path": 7}, STRATEGY) is None
    no_field = AggregationStrategy(type=AggregationType.CUSTOM, function="m:f")
    assert by_directory({"file_path": "docs/a.md"}, no_field) == "docs"  # file_path by default
    nested = AggregationStrategy(type=AggregationType.CUSTOM, group_by="file.path", function="m:f")
    assert by_directory({"file": {"path": "lib/x/y.c"}}, nested) == "lib/x"
    assert by_directory({"file": "lib/x/y.c"}, nested) is None
    assert by_directory({"file": None}, nested) is None


def test_the_shipped_subcontract_folds_stamps_by_directory() -> None:
    contract = load_contract(ROOT_DIR / "contracts" / "bridge_reducer.yaml")
    aggregation = contract.subcontracts.aggregation
    assert aggregation is not None
    [custom] = [s for s in aggregation.strategies if s.type is AggregationType.CUSTOM]
    assert (custom.function, custom.group_by) == ("nodes.bridge_reducer.grouping:by_directory", "file_path")
    items: list[dict[str, Any]] = [
        {"namespace": "a", "file_path": "src/pkg/one.py", "file_size": 10, "content_type": "text/x-python"},
        {"namespace": "a", "file_path": "src\\pkg\\two.py", "file_size": 20, "content_type": "text/x-python"},
        {"namespace": "a", "file_path": "src/pkg/three.md", "file_size": 5, "content_type": "text/markdown"},
        {"namespace": "a", "file_path": "README.md", "file_size": 1},
        {"namespace": "a", "file_size": 100},  # no path: not in a directory group
        {"namespace": "a", "file_path": None, "file_size": 100},
        {"namespace": "b", "file_path": "src/pkg/one.py", "file_size": 7},  # another namespace, another row
        {"file_path": "docs/x.md", "file_size": 3},  # no namespace: the default one
    ]
    groups = Aggregator(aggregation).fold(items, types=["CUSTOM"])
    assert {g.key: (g.items, g.size, g.content_types) for g in groups} == {
        ("a", "CUSTOM", "."): (1, 1, {"unknown": 1}),
        ("a", "CUSTOM", "src/pkg"): (3, 35, {"text/x-python": 2, "text/markdown": 1}),
        ("b", "CUSTOM", "src/pkg"): (1, 7, {"unknown": 1}),
        ("default", "CUSTOM", "docs"): (1, 3, {"unknown": 1}),
    }
