"""Handlers of the test workflows: steps that succeed, fail, fail once, sleep, and record when they ran."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web

from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.http import respond
from framework.runtime.kinds import EffectNode, OrchestratorNode
from framework.workflows import StepCall, StepFailed


class Calculator(EffectNode):
    async def double(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"value": request["n"] * 2}


class FlowOrchestrator(OrchestratorNode):
    #: Seconds the ``pause`` step sleeps, so that a test can kill the host mid-workflow.
    pause_s = float(os.environ.get("FLOW_PAUSE_S", "0"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str, str]] = []  # (workflow_id, step, "start" | "end")
        self.attempts: dict[tuple[str, str], int] = {}
        self.holding = asyncio.Event()  # set once a ``hold`` step has started
        self.release = asyncio.Event()  # ``hold`` steps return once it is set

    def http_routes(self) -> list[web.RouteDef]:
        return [web.post("/flow/{workflow_id}", self._post_flow)]

    async def _post_flow(self, request: web.Request) -> web.Response:
        result = await self.run_workflow(await request.json(), workflow_id=request.match_info["workflow_id"])
        return respond(request, None if result is None else result.as_dict())

    def _mark(self, call: StepCall, what: str) -> None:
        self.calls.append((call.workflow_id, call.step.name, what))

    async def add_one(self, call: StepCall) -> dict[str, Any]:
        return {"value": call.input["n"] + 1}

    async def ok(self, call: StepCall) -> dict[str, Any]:
        self._mark(call, "start")
        if call.step.name in call.input.get("fail", []):
            raise RuntimeError(f"{call.step.name} was told to fail")
        await asyncio.sleep(float(call.input.get("delay_s", 0)))
        self._mark(call, "end")
        return {"step": call.step.name, "at": time.monotonic()}

    async def broken(self, call: StepCall) -> dict[str, Any]:
        raise RuntimeError(f"{call.step.name} is broken")

    async def refuse(self, call: StepCall) -> dict[str, Any]:
        raise StepFailed("no retry can fix this")

    async def flaky(self, call: StepCall) -> dict[str, Any]:
        key = (call.workflow_id, call.step.name)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] == 1:
            raise ConnectionError("first attempt fails")
        return {"attempt": self.attempts[key]}

    async def hang(self, call: StepCall) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    async def hold(self, call: StepCall) -> dict[str, Any]:
        self._mark(call, "start")
        self.holding.set()
        await self.release.wait()
        return {"held": call.step.name}

    async def pause(self, call: StepCall) -> dict[str, Any]:
        self._mark(call, "start")
        await asyncio.sleep(self.pause_s)
        return {"paused": self.pause_s}

    async def sum_parallel(self, call: StepCall) -> dict[str, Any]:
        return {"seen": sorted(call.results)}


class Doubler(EffectNode):
    """Answers ``double-requested`` commands with ``double-computed``; stays silent for a negative ``n``, and drops
    the first command of an ``n`` whose request says ``fail: [drop_once]``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[int, int] = {}

    async def on_double(self, event: OnexEnvelopeV1) -> None:
        n = event.payload["n"]
        self.seen[n] = self.seen.get(n, 0) + 1
        if n < 0 or ("drop_once" in event.payload.get("fail", []) and self.seen[n] == 1):
            return
        await self.publish("double-computed", {"value": n * 2})
