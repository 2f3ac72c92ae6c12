"""Aggregation strategies: how a REDUCER folds items (event payloads) into grouped totals.

Pure functions, no I/O: :class:`Aggregator` compiles an aggregation subcontract once and folds a list of items into
:class:`GroupTotals`, one per ``(namespace, aggregation_type, group_key)`` — the key of the reducer's state table.

Every strategy groups *within* the item's namespace (namespace isolation: one tenant's items never land in another
tenant's row), so for all strategies but NAMESPACE_GROUPING the ``group_key`` is the group inside the namespace:

==================== ======================================================================================
strategy             group_key of an item
==================== ======================================================================================
NAMESPACE_GROUPING   the value of ``group_by`` (by default the namespace itself)
TIME_WINDOW          the start of its ``window_ms`` window (ISO 8601, UTC) by the item's timestamp; also
                     ``window_start``; ``group_by`` other than the namespace is appended as ``start|value``
FILE_TYPE_GROUPING   the value of ``group_by`` (the content type), ``unknown`` when null
SIZE_BUCKETS         ``le_<bound>`` for the first ascending bound ≥ the size, else ``gt_<last bound>``
WORKFLOW_GROUPING    the value of ``group_by`` (the workflow id)
CUSTOM               what ``function(item, strategy)`` returns: a str, a list of str (several groups) or None
==================== ======================================================================================

An item without the strategy's ``group_by`` field is not folded by that strategy (a stamp without a workflow id has no
workflow group); a strategy that does not group it is not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from framework.contract.imports import import_module
from framework.contract.subcontracts import Aggregation, AggregationStrategy, AggregationType
from framework.errors import ContractError

__all__ = ["Aggregator", "CustomGrouping", "GroupTotals", "ItemFields", "group_keys", "lookup"]

#: ``function(item, strategy)`` of a CUSTOM strategy.
CustomGrouping = Callable[[Mapping[str, Any], AggregationStrategy], "str | Sequence[str] | None"]

_MISSING = object()


@dataclass(frozen=True)
class ItemFields:
    """Which payload fields carry an item's namespace, size, content type and timestamp."""

    namespace: str = "namespace"
    size: str = "file_size"
    content_type: str = "content_type"
    timestamp: str = "created_at"
    default_namespace: str = "default"


@dataclass
class GroupTotals:
    """What a fold adds to one row of state: item count, total size, per-content-type counts."""

    namespace: str
    aggregation_type: str
    group_key: str
    items: int = 0
    size: int = 0
    content_types: dict[str, int] = field(default_factory=dict)
    window_start: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.aggregation_type, self.group_key)


def lookup(item: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``item``, or a private sentinel when absent."""
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _window_start(at: datetime, window_ms: int) -> datetime:
    epoch_ms = int(at.timestamp() * 1000)
    return datetime.fromtimestamp((epoch_ms - epoch_ms % window_ms) / 1000, tz=UTC)


def _size_bucket(size: int, bounds: Sequence[int]) -> str:
    for bound in bounds:
        if size <= bound:
            return f"le_{bound}"
    return f"gt_{bounds[-1]}"


def group_keys(
    strategy: AggregationStrategy,
    item: Mapping[str, Any],
    fields: ItemFields,
    *,
    now: datetime | None = None,
    custom: CustomGrouping | None = None,
) -> list[tuple[str, datetime | None]]:
    """The groups ``item`` belongs to under ``strategy`` (``(group_key, window_start)`` pairs; usually one, none
    when the item lacks the strategy's field)."""
    kind = strategy.type
    if kind is AggregationType.CUSTOM:
        if custom is None:
            raise ContractError("a CUSTOM aggregation strategy needs its function")
        result = custom(item, strategy)
        if result is None:
            return []
        return [(result, None)] if isinstance(result, str) else [(str(k), None) for k in result]
    if kind is AggregationType.TIME_WINDOW:
        at = _timestamp(lookup(item, fields.timestamp)) or now or datetime.now(UTC)
        assert strategy.window_ms is not None
        start = _window_start(at, strategy.window_ms)
        key = start.isoformat()
        if strategy.group_by and strategy.group_by != fields.namespace:
            value = lookup(item, strategy.group_by)
            if value is _MISSING:
                return []
            key = f"{key}|{value}"
        return [(key, start)]
    if kind is AggregationType.SIZE_BUCKETS:
        size = lookup(item, strategy.group_by or fields.size)
        if not isinstance(size, int) or isinstance(size, bool):
            return []
        return [(_size_bucket(size, strategy.buckets or [0]), None)]
    default_field = {
        AggregationType.NAMESPACE_GROUPING: fields.namespace,
        AggregationType.FILE_TYPE_GROUPING: fields.content_type,
        AggregationType.WORKFLOW_GROUPING: "workflow_id",
    }[kind]
    value = lookup(item, strategy.group_by or default_field)
    if value is _MISSING:
        return []
    if value is None:
        if kind is not AggregationType.FILE_TYPE_GROUPING:
            return []
        value = "unknown"
    return [(str(value), None)]


def _resolve(ref: str) -> CustomGrouping:
    module_name, _, name = ref.partition(":")
    try:
        function = getattr(import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ContractError(f"CUSTOM aggregation function '{ref}' cannot be imported: {exc}") from exc
    if not callable(function):
        raise ContractError(f"CUSTOM aggregation function '{ref}' is not callable")
    return function  # type: ignore[no-any-return]


class Aggregator:
    """An aggregation subcontract compiled once (CUSTOM functions imported, bounds checked); ``fold`` is pure."""

    def __init__(self, aggregation: Aggregation, fields: ItemFields | None = None) -> None:
        self.aggregation = aggregation
        self.fields = fields or ItemFields()
        self._custom: dict[int, CustomGrouping] = {}
        for i, strategy in enumerate(aggregation.strategies):
            where = f"aggregation '{aggregation.aggregation_name}' strategy {i} ({strategy.type})"
            if strategy.type is AggregationType.CUSTOM:
                if strategy.function is None:
                    raise ContractError(f"{where}: a CUSTOM strategy needs `function: module:callable`")
                self._custom[i] = _resolve(strategy.function)
            elif strategy.type is AggregationType.TIME_WINDOW and strategy.window_ms is None:
                raise ContractError(f"{where}: a TIME_WINDOW strategy needs `window_ms`")
            elif strategy.type is AggregationType.SIZE_BUCKETS:
                bounds = strategy.buckets or []
                if not bounds or list(bounds) != sorted(set(bounds)):
                    raise ContractError(f"{where}: `buckets` must be distinct ascending byte bounds, got {bounds}")

    @property
    def types(self) -> list[str]:
        return [str(s.type) for s in self.aggregation.strategies]

    def fold(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        types: Iterable[str] | None = None,
        now: datetime | None = None,
    ) -> list[GroupTotals]:
        """Fold ``items`` by every strategy (or only those of ``types``); one :class:`GroupTotals` per group,
        sorted by key (so that writers lock rows in one order)."""
        only = None if types is None else {str(t) for t in types}
        f = self.fields
        totals: dict[tuple[str, str, str], GroupTotals] = {}
        for given in items:
            item = given
            namespace = lookup(item, f.namespace)
            if namespace is _MISSING or namespace is None or namespace == "":
                namespace = f.default_namespace
                if "." not in f.namespace:  # so that grouping by the namespace sees the default too
                    item = {**item, f.namespace: namespace}
            size = lookup(item, f.size)
            size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0
            content_type = lookup(item, f.content_type)
            content_type = "unknown" if content_type is _MISSING or content_type is None else str(content_type)
            for i, strategy in enumerate(self.aggregation.strategies):
                if only is not None and str(strategy.type) not in only:
                    continue
                for group_key, window_start in group_keys(strategy, item, f, now=now, custom=self._custom.get(i)):
                    key = (str(namespace), str(strategy.type), group_key)
                    group = totals.get(key)
                    if group is None:
                        group = totals[key] = GroupTotals(*key, window_start=window_start)
                    group.items += 1
                    group.size += size
                    group.content_types[content_type] = group.content_types.get(content_type, 0) + 1
        return [totals[k] for k in sorted(totals)]
