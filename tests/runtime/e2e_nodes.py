"""Handlers of the end-to-end test contracts in tests/runtime/contracts/."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.kinds import ComputeNode, EffectNode


class WordCounter(ComputeNode):
    def compute(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"doc_id": payload["doc_id"], "words": len(payload["text"].split())}


class CountRecorder(EffectNode):
    #: Seconds each event takes, so that a test can stop the host while handlers are busy.
    delay_s = float(os.environ.get("E2E_HANDLER_DELAY_S", "0"))

    async def on_counted(self, event: OnexEnvelopeV1) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        digest = await self.effects.fingerprint(f"{event.payload['doc_id']}:{event.payload['words']}".encode())
        await self.effects.announce({**event.payload, "digest": digest})
