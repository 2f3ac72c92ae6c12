"""REGISTRY: keeps node registrations from introspection and heartbeat events and answers discovery.

What the kind does, for any contract of its kind (the handlers are the methods named below; a contract subscribes
to the events with them):

- ``on_introspection``: upsert the node's row in the state table (``node_registrations``, migration 009) and fire
  ``introspection`` on the node's registration FSM; the first registration (and a registration after expiry) emits
  ``node-registered`` through the FSM's action.
- ``on_heartbeat``: record ``health_status`` and ``last_heartbeat`` and fire ``heartbeat``; a heartbeat of a node
  that is not registered is ignored (it registers by introspecting).
- every ``sweep_interval_s`` a sweep expires registrations silent (no heartbeat nor introspection) for their
  ``ttl_s``: fire ``ttl_elapsed`` and delete the row, one transaction per node.
- ``on_discovery_requested``: answer with ``node-discovery-responded`` listing registered nodes of the requested
  ``node_type`` and/or ``capability``. A node has a capability when it is a key of its ``capabilities`` whose value
  is not false/null, or a member of one of its list values (``publishes: [metadata-stamp-created]``).
- on start it publishes ``registry-introspection-requested`` so running nodes announce themselves again, and it
  serves ``GET /api/v1/registry/nodes?node_type=&capability=``.

Timestamps of liveness come from the database clock (``now()``), so the registry's processes need no synchronised
clocks. Work on one node serialises on a transaction-scoped advisory lock of its id, taken before its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from aiohttp import web

from framework.contract.spec import Contract, NodeType
from framework.errors import NodeRuleError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import Transaction, current_transaction, rows_affected
from framework.runtime.http import respond
from framework.runtime.kinds.base import Node, NodeRuntime

log = logging.getLogger("onex.registry")

__all__ = ["RegistryNode", "has_capability"]

DEFAULT_TTL_S = 90


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def has_capability(capabilities: Mapping[str, Any], name: str) -> bool:
    """Whether ``capabilities`` offers ``name`` (see the module doc)."""
    if name in capabilities and capabilities[name] not in (False, None):
        return True
    return any(isinstance(value, list) and name in value for value in capabilities.values())


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


class RegistryNode(Node):
    node_type: ClassVar[NodeType] = NodeType.REGISTRY

    registered_event: ClassVar[str] = "node-registered"
    discovery_response_event: ClassVar[str] = "node-discovery-responded"
    introspection_request_event: ClassVar[str] = "registry-introspection-requested"
    #: How often silent registrations are looked for; default: a quarter of the TTL, at most 15 s.
    sweep_interval_s: ClassVar[float | None] = None
    route: ClassVar[str] = "/api/v1/registry/nodes"

    def __init__(self, contract: Contract, runtime: NodeRuntime) -> None:
        super().__init__(contract, runtime)
        state = contract.subcontracts.state
        if state is None or state.backend != "postgres":
            raise NodeRuleError(f"REGISTRY '{self.name}' needs a postgres state subcontract (its registrations table)")
        if list(state.key) != ["node_id"]:
            raise NodeRuleError(f"REGISTRY '{self.name}': the state key must be [node_id], got {state.key}")
        if self.fsm is None:
            raise NodeRuleError(f"REGISTRY '{self.name}' needs a registration fsm subcontract")
        self.table = _q(state.table)
        self.ttl_s = state.ttl_s or DEFAULT_TTL_S
        self._sweeper: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.introspection_request_event in self.contract.publishes:
            await self.publish(self.introspection_request_event, {"node_type": None})
        self._sweeper = asyncio.create_task(self._sweep_periodically(), name=f"onex-ttl-sweep {self.name}")

    async def stop(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def http_routes(self) -> list[web.RouteDef]:
        return [web.get(self.route, self._get_nodes)]

    # --- handlers ---------------------------------------------------------------------------------------------------

    async def _tx(self) -> Transaction:
        tx = current_transaction(self.runtime.resources.get("store"))
        if tx is None:
            raise NodeRuleError(f"REGISTRY '{self.name}': handlers run inside the host's event transaction")
        return tx

    async def _lock(self, tx: Transaction, node_id: str) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"registry:{self.name}:{node_id}")

    async def on_introspection(self, event: OnexEnvelopeV1) -> None:
        assert self.fsm is not None
        payload = event.payload
        node_id = str(payload["node_id"])
        tx = await self._tx()
        await self._lock(tx, node_id)
        await tx.execute(
            f"""
            INSERT INTO {self.table} (node_id, node_type, node_version, capabilities, endpoints, metadata,
                                      contract_hash, ttl_s)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (node_id) DO UPDATE SET
                node_type = EXCLUDED.node_type, node_version = EXCLUDED.node_version,
                capabilities = EXCLUDED.capabilities, endpoints = EXCLUDED.endpoints, metadata = EXCLUDED.metadata,
                contract_hash = EXCLUDED.contract_hash, ttl_s = EXCLUDED.ttl_s, updated_at = now()
            """,
            node_id,
            payload["node_type"],
            payload["node_version"],
            payload.get("capabilities") or {},
            payload.get("endpoints") or {},
            payload.get("metadata") or {},
            payload.get("contract_hash"),
            self.ttl_s,
        )
        instance = await self.fsm.get_or_create(node_id)
        await self.fire(instance, "introspection", {"node_id": node_id, "node_type": payload["node_type"]})

    async def on_heartbeat(self, event: OnexEnvelopeV1) -> None:
        assert self.fsm is not None
        node_id = str(event.payload["node_id"])
        health = str(event.payload["health_status"])
        tx = await self._tx()
        await self._lock(tx, node_id)
        status = await tx.execute(
            f"UPDATE {self.table} SET health_status = $2, last_heartbeat = now(), updated_at = now() "
            "WHERE node_id = $1",
            node_id,
            health,
        )
        if rows_affected(status) == 0:
            log.info("heartbeat of a node that is not registered: ignored", extra={"node_id": node_id})
            return
        instance = await self.fsm.get_or_create(node_id)
        if "heartbeat" not in instance.allowed_triggers():
            log.warning(
                "registration FSM of %s is in %r, which takes no heartbeat; re-registering", node_id, instance.state
            )
            row = await tx.fetchrow(f"SELECT node_type FROM {self.table} WHERE node_id = $1", node_id)
            assert row is not None
            await self.fire(instance, "introspection", {"node_id": node_id, "node_type": row["node_type"]})
        await self.fire(instance, "heartbeat", {"health_status": health})

    async def on_discovery_requested(self, event: OnexEnvelopeV1) -> None:
        nodes = await self.discover(await self._tx(), event.payload.get("node_type"), event.payload.get("capability"))
        for node in nodes:  # the answer's items follow NodeIntrospection: no nulls where it wants strings
            if node.get("contract_hash") is None:
                node.pop("contract_hash", None)
            if node.get("last_heartbeat") is None:
                node.pop("last_heartbeat", None)
        await self.publish(self.discovery_response_event, {"nodes": nodes})

    async def discover(
        self, tx: Transaction, node_type: str | None = None, capability: str | None = None
    ) -> list[dict[str, Any]]:
        """Registered nodes of ``node_type`` with ``capability`` (either may be None: any), by node_id."""
        rows = await tx.fetch(
            f"""
            SELECT node_id, node_type, node_version, capabilities, endpoints, metadata, contract_hash,
                   health_status, last_heartbeat, ttl_s, registered_at, updated_at
            FROM {self.table} WHERE ($1::text IS NULL OR node_type = $1) ORDER BY node_id
            """,
            node_type,
        )
        return [
            _jsonable(row)
            for row in rows
            if capability is None or has_capability(row["capabilities"] or {}, capability)
        ]

    async def _get_nodes(self, request: web.Request) -> web.Response:
        node_type = request.query.get("node_type") or None
        capability = request.query.get("capability") or None
        async with self.transaction() as tx:
            nodes = await self.discover(tx, node_type, capability)
        return respond(request, {"nodes": nodes, "count": len(nodes)}, message=f"{len(nodes)} node(s)")

    # --- TTL expiry -------------------------------------------------------------------------------------------------

    def _sweep_interval(self) -> float:
        if self.sweep_interval_s is not None:
            return self.sweep_interval_s
        return min(max(self.ttl_s / 4, 0.05), 15.0)

    async def _sweep_periodically(self) -> None:
        interval = self._sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_silent()
            except Exception:
                log.warning("TTL sweep failed; will try again", exc_info=True, extra={"node": self.name})

    _SILENT = "greatest(last_heartbeat, updated_at) < now() - ttl_s * interval '1 second'"

    async def expire_silent(self) -> list[str]:
        """Expire every registration silent for its ttl_s; return their node ids."""
        async with self.transaction() as tx:
            candidates = [
                r["node_id"] for r in await tx.fetch(f"SELECT node_id FROM {self.table} WHERE {self._SILENT}")
            ]
        expired: list[str] = []
        for node_id in candidates:
            async with self.transaction() as tx:
                await self._lock(tx, node_id)  # the lock first, then the row: as the handlers do
                deleted = await tx.fetchval(
                    f"DELETE FROM {self.table} WHERE node_id = $1 AND {self._SILENT} RETURNING node_id", node_id
                )
                if deleted is None:
                    continue  # it spoke up in the meantime
                assert self.fsm is not None
                instance = await self.fsm.get_or_create(node_id)
                if "ttl_elapsed" in instance.allowed_triggers():
                    await self.fire(instance, "ttl_elapsed")
            expired.append(node_id)
            log.info("registration expired", extra={"node_id": node_id, "ttl_s": self.ttl_s})
        return expired
