"""The REDUCER kind's aggregation strategies (pure, no I/O) and its rules for contracts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from framework.adapters.memory_bus import MemoryEventBus
from framework.adapters.memory_fsm_store import MemoryFSMStore
from framework.contract.subcontracts import Aggregation, AggregationStrategy
from framework.contract.validate import load_contract
from framework.errors import ContractError, NodeRuleError
from framework.runtime.aggregation import Aggregator, ItemFields, group_keys
from framework.runtime.catalog import bind_effects, node_class
from framework.runtime.kinds.base import NodeRuntime
from framework.runtime.metrics import Metrics
from nodes.bridge_reducer.node import NodeBridgeReducer

FIELDS = ItemFields()


def strategy(**kw: Any) -> AggregationStrategy:
    return AggregationStrategy.model_validate(kw)


def aggregator(*strategies: dict[str, Any], **kw: Any) -> Aggregator:
    return Aggregator(Aggregation.model_validate({"aggregation_name": "t", "strategies": list(strategies), **kw}))


def by_extension(item: Mapping[str, Any], _: AggregationStrategy) -> str | Sequence[str] | None:
    path = item.get("file_path")
    if not isinstance(path, str):
        return None
    return path.rsplit(".", 1)[-1] if "." in path else ["no_extension", "odd"]


ITEMS = [
    {"namespace": "a", "file_size": 10, "content_type": "text/plain", "created_at": "2025-01-01T00:00:05Z"},
    {"namespace": "a", "file_size": 5000, "content_type": "application/json", "created_at": "2025-01-01T00:01:30Z"},
    {"namespace": "b", "file_size": 20, "content_type": None, "created_at": "2025-01-01T00:00:59+00:00"},
]


def totals(agg: Aggregator, items: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {g.key: (g.items, g.size) for g in agg.fold(items)}


def test_namespace_grouping_keeps_namespaces_apart() -> None:
    agg = aggregator({"type": "NAMESPACE_GROUPING", "group_by": "namespace"})
    assert totals(agg, ITEMS) == {
        ("a", "NAMESPACE_GROUPING", "a"): (2, 5010),
        ("b", "NAMESPACE_GROUPING", "b"): (1, 20),
    }
    [a, _] = agg.fold(ITEMS)
    assert a.content_types == {"text/plain": 1, "application/json": 1}


def test_time_window_groups_by_window_start_within_the_namespace() -> None:
    agg = aggregator({"type": "TIME_WINDOW", "group_by": "namespace", "window_ms": 60000})
    groups = {g.key: g for g in agg.fold(ITEMS)}
    first, second = "2025-01-01T00:00:00+00:00", "2025-01-01T00:01:00+00:00"
    assert {k: g.items for k, g in groups.items()} == {
        ("a", "TIME_WINDOW", first): 1,
        ("a", "TIME_WINDOW", second): 1,
        ("b", "TIME_WINDOW", first): 1,
    }
    assert groups[("a", "TIME_WINDOW", second)].window_start == datetime(2025, 1, 1, 0, 1, tzinfo=UTC)


def test_time_window_falls_back_to_the_event_time_and_may_group_by_another_field() -> None:
    s = strategy(type="TIME_WINDOW", group_by="kind", window_ms=1000)
    now = datetime(2025, 5, 5, 12, 0, 0, 700000, tzinfo=UTC)
    assert group_keys(s, {"kind": "x"}, FIELDS, now=now) == [
        ("2025-05-05T12:00:00+00:00|x", datetime(2025, 5, 5, 12, tzinfo=UTC))
    ]
    assert group_keys(s, {}, FIELDS, now=now) == []


def test_file_type_grouping_names_missing_types_unknown() -> None:
    agg = aggregator({"type": "FILE_TYPE_GROUPING", "group_by": "content_type"})
    assert totals(agg, ITEMS) == {
        ("a", "FILE_TYPE_GROUPING", "application/json"): (1, 5000),
        ("a", "FILE_TYPE_GROUPING", "text/plain"): (1, 10),
        ("b", "FILE_TYPE_GROUPING", "unknown"): (1, 20),
    }


@pytest.mark.parametrize(
    ("size", "bucket"), [(0, "le_1024"), (1024, "le_1024"), (1025, "le_65536"), (10**9, "gt_104857600")]
)
def test_size_buckets_use_the_first_bound_at_or_above_the_size(size: int, bucket: str) -> None:
    s = strategy(type="SIZE_BUCKETS", group_by="file_size", buckets=[1024, 65536, 1048576, 104857600])
    assert group_keys(s, {"file_size": size}, FIELDS) == [(bucket, None)]
    assert group_keys(s, {"file_size": "big"}, FIELDS) == []


def test_workflow_grouping_skips_items_without_a_workflow() -> None:
    agg = aggregator({"type": "WORKFLOW_GROUPING", "group_by": "workflow_id"})
    items = [{"namespace": "a", "workflow_id": "w1", "file_size": 3}, {"namespace": "a", "file_size": 4}]
    assert totals(agg, items) == {("a", "WORKFLOW_GROUPING", "w1"): (1, 3)}


def test_custom_strategy_calls_its_function() -> None:
    agg = aggregator({"type": "CUSTOM", "function": f"{__name__}:by_extension"})
    items = [
        {"namespace": "a", "file_path": "x.py", "file_size": 1},
        {"namespace": "a", "file_path": "y.py", "file_size": 2},
        {"namespace": "a", "file_path": "README", "file_size": 4},
        {"namespace": "a", "file_size": 8},  # None: in no group
    ]
    assert totals(agg, items) == {
        ("a", "CUSTOM", "py"): (2, 3),
        ("a", "CUSTOM", "no_extension"): (1, 4),
        ("a", "CUSTOM", "odd"): (1, 4),
    }


def test_fold_by_several_strategies_or_only_some() -> None:
    agg = aggregator(
        {"type": "NAMESPACE_GROUPING"},
        {"type": "SIZE_BUCKETS", "buckets": [100]},
        {"type": "WORKFLOW_GROUPING"},
    )
    assert len(agg.fold(ITEMS)) == 2 + 3
    assert {g.aggregation_type for g in agg.fold(ITEMS, types=["SIZE_BUCKETS"])} == {"SIZE_BUCKETS"}
    keys = [g.key for g in agg.fold(ITEMS)]
    assert keys == sorted(keys)  # writers lock rows in one order


def test_items_without_a_namespace_go_to_the_default_one() -> None:
    agg = aggregator({"type": "NAMESPACE_GROUPING"})
    assert totals(agg, [{"file_size": 1}, {"namespace": "", "file_size": -5}]) == {
        ("default", "NAMESPACE_GROUPING", "default"): (2, 1)
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "CUSTOM"}, "needs `function"),
        ({"type": "CUSTOM", "function": "no_such_module_x:f"}, "cannot be imported"),
        ({"type": "TIME_WINDOW"}, "needs `window_ms`"),
        ({"type": "SIZE_BUCKETS", "buckets": [10, 5]}, "ascending"),
    ],
)
def test_bad_strategies_are_refused_when_the_node_is_built(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        aggregator(spec)


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def runtime() -> AsyncIterator[NodeRuntime]:
    async with MemoryEventBus() as bus:
        yield NodeRuntime(
            bus=bus, env="dev", instance="t", metrics=Metrics(), bind_effects=bind_effects, fsm_store=MemoryFSMStore()
        )


async def test_a_reducer_needs_an_aggregation(runtime: NodeRuntime) -> None:
    assert node_class(load_contract(ROOT / "contracts" / "bridge_reducer.yaml")) is NodeBridgeReducer
    contract = load_contract(ROOT / "contracts" / "bridge_reducer.yaml")
    bare = contract.model_copy(update={"subcontracts": contract.subcontracts.model_copy(update={"aggregation": None})})
    with pytest.raises(NodeRuleError, match="needs an aggregation subcontract"):
        NodeBridgeReducer(bare, runtime)
