"""REDUCER: folds a stream of events into persisted state (its aggregation subcontract).

A reducer's handler calls ``await self.fold(items)`` (or subscribes with the default handler ``handle``, which folds
the event's payload). ``fold`` groups the items by the aggregation subcontract's strategies
(:mod:`framework.runtime.aggregation`) and adds them to the state table of the ``state`` subcontract in ONE
statement, inside the transaction the host opened for the event, then publishes the new totals of every touched
group (``state_updated_event``, when the contract publishes it; through the outbox, so only if it commits).

Why every event is folded into the table at once instead of buffered until ``batch_size`` or ``flush_interval_ms``:
the host acknowledges (commits the offset of) an event once its transaction commits, so an item buffered in memory
would be acknowledged but not stored, and lost on a crash. An additive UPSERT (``total = total + excluded``) per
event loses nothing and, with the processed-event claim in the same transaction, never counts a redelivered event
twice. The batch is kept, but as bookkeeping: the aggregation FSM (``item`` per event, ``flush`` + ``persisted``
after ``batch_size`` items or ``flush_interval_ms``) is persisted with each event's transaction, and its actions
publish aggregation-started / aggregation-completed for a batch. Concurrent folds (two partitions, two replicas)
serialise on a transaction-scoped advisory lock of the batch instance, taken before any row is touched, so they
cannot deadlock on rows.

The state table has the state subcontract's three key columns — (namespace, aggregation type, group key), in that
order — and the columns named by the class attributes below (migration 008 for the bridge): item and byte totals,
a JSONB ``state`` of per-content-type counts (merged by adding), a window start and an update time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from framework.contract.spec import Contract, NodeType
from framework.errors import NodeRuleError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import Store, Transaction, in_transaction
from framework.runtime.aggregation import Aggregator, GroupTotals, ItemFields
from framework.runtime.fsm import FSMInstance
from framework.runtime.kinds.base import Node, NodeRuntime, current_event

log = logging.getLogger("onex.reducer")

__all__ = ["ReducerNode"]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ReducerNode(Node):
    node_type: ClassVar[NodeType] = NodeType.REDUCER

    #: Payload fields of an item: namespace, size, content type, timestamp.
    item_fields: ClassVar[ItemFields] = ItemFields()
    #: Published with the new totals of each group a fold touched (if the contract publishes it).
    state_updated_event: ClassVar[str] = "bridge-state-updated"
    #: Columns of the state table besides its key.
    items_column: ClassVar[str] = "total_items"
    size_column: ClassVar[str] = "total_size_bytes"
    state_column: ClassVar[str] = "state"
    window_column: ClassVar[str] = "window_start"
    updated_column: ClassVar[str] = "updated_at"
    #: Triggers of the aggregation FSM, when the contract has one.
    item_trigger: ClassVar[str] = "item"
    flush_trigger: ClassVar[str] = "flush"
    persisted_trigger: ClassVar[str] = "persisted"

    def __init__(self, contract: Contract, runtime: NodeRuntime) -> None:
        super().__init__(contract, runtime)
        aggregation = contract.subcontracts.aggregation
        state = contract.subcontracts.state
        if aggregation is None:
            raise NodeRuleError(f"REDUCER '{self.name}' needs an aggregation subcontract (how to fold its events)")
        if state is None or state.backend != "postgres" or len(state.key) != 3:
            raise NodeRuleError(
                f"REDUCER '{self.name}' needs a postgres state subcontract whose key is (namespace, aggregation "
                f"type, group key), three columns; got {state.key if state else 'none'}"
            )
        self.aggregation = aggregation
        self.aggregator = Aggregator(aggregation, self.item_fields)
        self.state_table = state.table
        self.batch_instance = self.name  # not node_id: a restarted process resumes its batch
        self._upsert_sql = self._build_upsert(state.table, state.key)
        self._publish_updates = self.state_updated_event in contract.publishes
        self._flusher: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.fsm is not None and self._store is not None:
            self._flusher = asyncio.create_task(self._flush_periodically(), name=f"onex-flush {self.name}")

    async def stop(self) -> None:
        task, self._flusher = self._flusher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def _store(self) -> Store | None:
        store: Store | None = self.runtime.resources.get("store")
        return store

    # --- folding ----------------------------------------------------------------------------------------------------

    async def handle(self, event: OnexEnvelopeV1) -> None:
        """The default subscription handler: fold the event's payload by every strategy."""
        await self.fold([event.payload])

    async def fold(
        self, items: Iterable[Mapping[str, Any]], *, types: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Fold ``items`` (by every strategy, or those of ``types``) into the state table, publish the new totals
        and count them in the current batch. Returns the updated rows. Runs in the caller's transaction (the
        event's), else in one of its own."""
        items = list(items)
        event = current_event.get()
        groups = self.aggregator.fold(items, types=types, now=event.event_timestamp if event else None)
        return await in_transaction(self.store, lambda tx: self._fold(tx, len(items), groups))

    async def _fold(self, tx: Transaction, count: int, groups: list[GroupTotals]) -> list[dict[str, Any]]:
        await self._lock(tx)
        rows: list[dict[str, Any]] = []
        if groups:
            rows = await tx.fetch(
                self._upsert_sql,
                [g.namespace for g in groups],
                [g.aggregation_type for g in groups],
                [g.group_key for g in groups],
                [g.items for g in groups],
                [g.size for g in groups],
                [json.dumps({"content_types": g.content_types}) for g in groups],
                [g.window_start for g in groups],
            )
            if self._publish_updates:
                for row in rows:
                    await self.publish(self.state_updated_event, self.state_payload(row))
        if count and self.fsm is not None:
            await self._count(count, groups)
        return rows

    def state_payload(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The state_updated_event payload of a stored row."""
        return {
            "namespace": row["namespace"],
            "aggregation_type": row["aggregation_type"],
            "group_key": row["group_key"],
            "total_items": int(row["total_items"]),
            "total_size": int(row["total_size"]),
        }

    def _build_upsert(self, table: str, key: list[str]) -> str:
        ns, kind, group = (_q(k) for k in key)
        items, size, state, window, updated = (
            _q(c)
            for c in (self.items_column, self.size_column, self.state_column, self.window_column, self.updated_column)
        )
        # Counters in the JSONB state ({"content_types": {"text/plain": 3}}) are merged by adding, key by key.
        merge = f"""(SELECT coalesce(jsonb_object_agg(k, v), '{{}}'::jsonb) FROM (
                SELECT k, jsonb_object_agg(ik, total) AS v FROM (
                    SELECT o.key AS k, i.key AS ik, sum(i.value::numeric)::bigint AS total
                    FROM (SELECT * FROM jsonb_each(s.{state}) UNION ALL SELECT * FROM jsonb_each(EXCLUDED.{state})) o,
                         jsonb_each_text(o.value) i
                    GROUP BY o.key, i.key) sums
                GROUP BY k) merged)"""
        return f"""
            INSERT INTO {_q(table)} AS s ({ns}, {kind}, {group}, {items}, {size}, {state}, {window}, {updated})
            SELECT u.ns, u.kind, u.grp, u.items, u.size, u.state::jsonb, u.win, now()
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
                        $7::timestamptz[]) AS u(ns, kind, grp, items, size, state, win)
            ON CONFLICT ({ns}, {kind}, {group}) DO UPDATE SET
                {items} = s.{items} + EXCLUDED.{items},
                {size} = s.{size} + EXCLUDED.{size},
                {state} = {merge},
                {window} = coalesce(s.{window}, EXCLUDED.{window}),
                {updated} = now()
            RETURNING {ns} AS namespace, {kind} AS aggregation_type, {group} AS group_key,
                      {items} AS total_items, {size} AS total_size, {state} AS state, {window} AS window_start
        """

    # --- the batch (aggregation FSM) ---------------------------------------------------------------------------------

    async def _lock(self, tx: Transaction) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"reducer-batch:{self.batch_instance}")

    async def _count(self, count: int, groups: list[GroupTotals]) -> None:
        assert self.fsm is not None
        instance = await self.fsm.get_or_create(self.batch_instance)
        if instance.terminal:
            log.warning("aggregation FSM is in terminal state %r: batches are no longer counted", instance.state)
            return
        if instance.state == "persisting":  # a flush that stopped half way (never with the host's transactions)
            await self.fire(instance, self.persisted_trigger)
        default = str(self.aggregation.default)
        touched = sorted({f"{g.namespace}|{g.group_key}" for g in groups if g.aggregation_type == default})
        if instance.state == self.fsm.definition.initial_state:
            context: dict[str, Any] = {
                "batch_id": str(uuid.uuid4()),
                "aggregation_type": default,
                "item_count": count,
                "group_keys": touched,
                "group_count": len(touched),
                "started_at": datetime.now(UTC).isoformat(),
                "duration_ms": 0.0,
            }
        else:
            seen = sorted(set(instance.context.get("group_keys", [])) | set(touched))
            context = {
                "item_count": int(instance.context.get("item_count", 0)) + count,
                "group_keys": seen,
                "group_count": len(seen),
            }
        await self.fire(instance, self.item_trigger, context)
        if int(instance.context["item_count"]) >= self.aggregation.batch_size:
            await self._flush(instance)

    async def _flush(self, instance: FSMInstance) -> None:
        started = instance.context.get("started_at")
        duration_ms = 0.0
        if isinstance(started, str):
            elapsed = datetime.now(UTC) - datetime.fromisoformat(started)
            duration_ms = max(0.0, round(elapsed.total_seconds() * 1000, 3))
        await self.fire(instance, self.flush_trigger, {"duration_ms": duration_ms})
        # The items are already stored (each with its event): the flush is the batch's checkpoint.
        await self.fire(instance, self.persisted_trigger, {"group_keys": []})

    async def flush(self) -> bool:
        """Close the current batch now if it has items (publishing its completion); True if one was closed."""
        assert self.fsm is not None
        async with self.transaction() as tx:
            await self._lock(tx)
            instance = await self.fsm.restore(self.batch_instance)
            if instance is None or instance.state != "aggregating" or not instance.context.get("item_count"):
                return False
            await self._flush(instance)
            return True

    async def _flush_periodically(self) -> None:
        """Closes a batch that has waited ``flush_interval_ms`` without reaching ``batch_size``."""
        interval = self.aggregation.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_if_due(interval)
            except Exception:
                log.warning("periodic flush failed; will try again", exc_info=True, extra={"node": self.name})

    async def _flush_if_due(self, interval: float) -> None:
        assert self.fsm is not None
        last = await self.runtime.fsm_store.last(self.fsm.definition.name, self.batch_instance)
        if last is None or last.to_state != "aggregating":
            return
        started = last.context.get("started_at")
        if isinstance(started, str):
            age = (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds()
            if age < interval:
                return
        await self.flush()
