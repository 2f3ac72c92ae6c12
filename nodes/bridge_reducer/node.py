"""NodeBridgeReducer: streaming aggregation of stamping results into per-namespace bridge state.

Stamps (``metadata-stamp-created``) are folded by every strategy of the aggregation subcontract but
WORKFLOW_GROUPING; completed workflows (``stamp-workflow-completed``) only by WORKFLOW_GROUPING. A stamped file is
announced by both events when the orchestrator stamps it, so folding both by every strategy would count it twice.
The CUSTOM strategy, stamps by the directory of their ``file_path``, is :func:`.grouping.by_directory`.
"""

from __future__ import annotations

from framework.contract.subcontracts import AggregationType
from framework.events.envelope import OnexEnvelopeV1
from nodes.bridge_reducer._generated import BridgeReducerBase

_WORKFLOW = str(AggregationType.WORKFLOW_GROUPING)


class NodeBridgeReducer(BridgeReducerBase):
    async def on_stamp_created(self, event: OnexEnvelopeV1) -> None:
        await self.fold([event.payload], types=[t for t in self.aggregator.types if t != _WORKFLOW])

    async def on_workflow_completed(self, event: OnexEnvelopeV1) -> None:
        await self.fold([event.payload], types=[_WORKFLOW])
