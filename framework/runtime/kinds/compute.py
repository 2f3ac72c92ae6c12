"""COMPUTE: pure input → output. The handler never reaches an adapter; the runtime publishes what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from framework.contract.spec import NodeType
from framework.errors import NodeRuleError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import Store
from framework.runtime.effects import Effects
from framework.runtime.kinds.base import Node, NodeRuntime
from framework.runtime.payloads import PayloadValidator


@dataclass(frozen=True)
class Emit:
    """One output event of a computation, for nodes that publish more than one kind of event."""

    event: str
    payload: dict[str, Any] = field(default_factory=dict)


class ComputeNode(Node):
    """Implement ``compute(payload) -> dict | list[Emit]``. A dict is the output: it is checked against
    ``output_model`` and published as the contract's only published event."""

    node_type: ClassVar[NodeType] = NodeType.COMPUTE

    def __init__(self, contract: Any, runtime: NodeRuntime) -> None:
        super().__init__(contract, runtime)
        models = contract.models
        self._input = (
            PayloadValidator(contract.input_model, models[contract.input_model], models)
            if contract.input_model
            else None
        )
        self._output = (
            PayloadValidator(contract.output_model, models[contract.output_model], models)
            if contract.output_model
            else None
        )

    def compute(self, payload: dict[str, Any]) -> dict[str, Any] | list[Emit]:
        raise NotImplementedError(f"{type(self).__name__} must implement compute(payload)")

    async def handle(self, event: OnexEnvelopeV1) -> None:
        """The default subscription handler: validate, compute, validate, publish."""
        if self._input is not None:
            self._input.check(event.payload, what=f"input of {self.name}")
        result = self.compute(event.payload)
        emits = result if isinstance(result, list) else [self._single_output(result)]
        for emit in emits:
            await Node.publish(self, emit.event, emit.payload, cause=event)

    def _single_output(self, output: dict[str, Any]) -> Emit:
        if self._output is not None:
            self._output.check(output, what=f"output of {self.name}")
        if len(self.contract.publishes) != 1:
            raise NodeRuleError(
                f"{self.name}.compute returned one output, but the contract publishes "
                f"{len(self.contract.publishes)} events; return a list of Emit(event, payload) instead"
            )
        return Emit(self.contract.publishes[0], output)

    @property
    def effects(self) -> Effects:
        raise NodeRuleError(f"node '{self.name}' is COMPUTE: it is pure and cannot reach an adapter")

    @property
    def store(self) -> Store:
        raise NodeRuleError(f"node '{self.name}' is COMPUTE: it is pure and cannot reach a database")

    async def publish(self, event: str, payload: dict[str, Any], **_: Any) -> OnexEnvelopeV1:
        raise NodeRuleError(
            f"node '{self.name}' is COMPUTE: return its output from compute() instead of publishing '{event}'"
        )
