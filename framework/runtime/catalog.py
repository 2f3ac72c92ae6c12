"""The catalog: node kinds → base classes, adapters → factories. The host, the validator's docs and the CLI read
it; nothing scans directories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from framework.adapters.hashing import hash_bytes_async
from framework.adapters.http_effect import HttpEffect
from framework.contract.imports import import_module
from framework.contract.spec import Blake3Effect, Contract, KafkaEffect, NodeType
from framework.contract.spec import HttpEffect as HttpEffectSpec
from framework.errors import NodeRuleError
from framework.runtime.effects import EffectCall, Effects
from framework.runtime.kinds import ComputeNode, EffectNode, Node, OrchestratorNode, ReducerNode, RegistryNode

NODE_KINDS: dict[NodeType, type[Node]] = {
    NodeType.EFFECT: EffectNode,
    NodeType.COMPUTE: ComputeNode,
    NodeType.REDUCER: ReducerNode,
    NodeType.ORCHESTRATOR: OrchestratorNode,
    NodeType.REGISTRY: RegistryNode,
}

AdapterFactory = Callable[[Any, Node], EffectCall]


def _kafka(spec: KafkaEffect, node: Node) -> EffectCall:
    async def publish(payload: dict[str, Any], **kwargs: Any) -> Any:
        return await node.publish(spec.event, payload, **kwargs)

    return publish


def _blake3(spec: Blake3Effect, node: Node) -> EffectCall:
    return hash_bytes_async


def _http(spec: HttpEffectSpec, node: Node) -> EffectCall:
    session = node.runtime.resources.get("http_session")
    if session is None:
        raise NodeRuleError(f"node '{node.name}': the http effect '{spec.name}' needs the host's HTTP client")
    return HttpEffect(session, spec.url, spec.method, spec.timeout_ms)


def _postgres(spec: Any, node: Node) -> EffectCall:
    factory = node.runtime.resources.get("postgres_effects")
    if factory is None:
        raise NodeRuleError(
            f"node '{node.name}': the postgres effect '{spec.name}' needs a database; the host "
            "opens one when a contract declares postgres effects"
        )
    result: EffectCall = factory(spec)
    return result


ADAPTERS: dict[str, AdapterFactory] = {"kafka": _kafka, "blake3": _blake3, "http": _http, "postgres": _postgres}


def bind_effects(node: Node) -> Effects:
    """Each declared effect bound to its adapter; COMPUTE nodes get none (they are pure)."""
    return Effects(node.name, {e.name: ADAPTERS[e.adapter](e, node) for e in node.contract.effects})


def node_class(contract: Contract) -> type[Node]:
    """The implementation class of a contract (checked to be of its kind), or the kind's base when it has none."""
    base = NODE_KINDS[contract.node_type]
    if contract.implementation is None:
        return base
    module_name, _, class_name = contract.implementation.partition(":")
    try:
        module = import_module(module_name)
    except Exception as exc:
        raise NodeRuleError(f"contract '{contract.name}': cannot import '{module_name}': {exc}") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise NodeRuleError(
            f"contract '{contract.name}': implementation '{contract.implementation}' must be a subclass of "
            f"{base.__name__} (the base of {contract.node_type} nodes)"
        )
    return cls
