"""REGISTRY: keeps node registrations from introspection and heartbeat events and answers discovery."""

from __future__ import annotations

from typing import ClassVar

from framework.contract.spec import NodeType
from framework.runtime.kinds.base import Node


class RegistryNode(Node):
    node_type: ClassVar[NodeType] = NodeType.REGISTRY
