"""NodeBridgeRegistry: service discovery and node registration. Everything it does is the REGISTRY kind's
(``framework.runtime.kinds.registry``): registrations from introspection, health from heartbeats, TTL expiry,
discovery answers and ``GET /api/v1/registry/nodes``."""

from __future__ import annotations

from nodes.node_registry._generated import NodeRegistryBase


class NodeBridgeRegistry(NodeRegistryBase):
    pass
