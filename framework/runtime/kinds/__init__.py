"""One base class per node kind. A handler class subclasses the base of its contract's node_type."""

from framework.runtime.kinds.base import Node
from framework.runtime.kinds.compute import ComputeNode, Emit
from framework.runtime.kinds.effect import EffectNode
from framework.runtime.kinds.orchestrator import OrchestratorNode
from framework.runtime.kinds.reducer import ReducerNode
from framework.runtime.kinds.registry import RegistryNode

__all__ = ["ComputeNode", "EffectNode", "Emit", "Node", "OrchestratorNode", "ReducerNode", "RegistryNode"]
