"""``MemoryProcessedEvents``: the in-process record of which event ids each consumer group has processed.

Bounded memory: each group keeps at most ``capacity_per_group`` ids (100 000 by default, about 15 MB per full
group), evicting the least recently seen. Redeliveries arrive soon after the first delivery (a rebalance, a restart
of a consumer, a producer retry), so an LRU window of that size catches them; an id older than the window is handled
again, which at-least-once delivery allows. Nothing survives the process: the persistence issue brings a PostgreSQL
implementation that records the id in the same transaction as the handler's effect.
"""

from __future__ import annotations

from collections import OrderedDict

from framework.errors import UsageError

__all__ = ["DEFAULT_CAPACITY_PER_GROUP", "MemoryProcessedEvents"]

DEFAULT_CAPACITY_PER_GROUP = 100_000


class MemoryProcessedEvents:
    """:class:`framework.ports.event_bus.ProcessedEvents` kept in memory, one LRU of event ids per group."""

    def __init__(self, capacity_per_group: int = DEFAULT_CAPACITY_PER_GROUP) -> None:
        if type(capacity_per_group) is not int or capacity_per_group < 1:
            raise UsageError(f"capacity_per_group must be an integer >= 1, got {capacity_per_group!r}")
        self._capacity = capacity_per_group
        self._groups: dict[str, OrderedDict[str, None]] = {}

    @property
    def capacity_per_group(self) -> int:
        return self._capacity

    async def is_processed(self, group: str, event_id: str) -> bool:
        ids = self._groups.get(group)
        if ids is None or event_id not in ids:
            return False
        # A hit is a redelivery in progress; keeping it fresh stops a burst of them from evicting it mid-way.
        ids.move_to_end(event_id)
        return True

    async def mark_processed(self, group: str, event_id: str) -> None:
        ids = self._groups.get(group)
        if ids is None:
            ids = self._groups[group] = OrderedDict()
        ids[event_id] = None
        ids.move_to_end(event_id)
        if len(ids) > self._capacity:
            ids.popitem(last=False)

    def count(self, group: str) -> int:
        """How many ids ``group`` currently remembers (at most ``capacity_per_group``)."""
        return len(self._groups.get(group, ()))
