"""ORCHESTRATOR: runs workflows built from its workflow subcontract and owns a workflow FSM."""

from __future__ import annotations

from typing import ClassVar

from framework.contract.spec import NodeType
from framework.runtime.kinds.base import Node


class OrchestratorNode(Node):
    node_type: ClassVar[NodeType] = NodeType.ORCHESTRATOR
