"""EFFECT: performs I/O, but only the effects its contract declares (``self.effects.<name>``)."""

from __future__ import annotations

from typing import ClassVar

from framework.contract.spec import NodeType
from framework.runtime.kinds.base import Node


class EffectNode(Node):
    node_type: ClassVar[NodeType] = NodeType.EFFECT
