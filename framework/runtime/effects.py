"""The effects a node may perform: only those its contract declares, each bound to its adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from framework.errors import NodeRuleError

EffectCall = Callable[..., Awaitable[Any]]


class Effects(Mapping[str, EffectCall]):
    """``node.effects.save_stamp(...)``: attribute access to declared effects; anything else is a NodeRuleError."""

    def __init__(self, node: str, bound: dict[str, EffectCall]) -> None:
        self._node = node
        self._bound = bound

    def __getattr__(self, name: str) -> EffectCall:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> EffectCall:
        try:
            return self._bound[name]
        except KeyError:
            declared = ", ".join(sorted(self._bound)) or "none"
            raise NodeRuleError(
                f"node '{self._node}' used effect '{name}', which its contract does not declare; declared: {declared}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._bound)

    def __len__(self) -> int:
        return len(self._bound)
