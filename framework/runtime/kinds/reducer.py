"""REDUCER: folds a stream of events into persisted state (its aggregation subcontract)."""

from __future__ import annotations

from typing import ClassVar

from framework.contract.spec import NodeType
from framework.runtime.kinds.base import Node


class ReducerNode(Node):
    node_type: ClassVar[NodeType] = NodeType.REDUCER
