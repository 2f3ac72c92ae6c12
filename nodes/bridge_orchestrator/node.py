"""The bridge orchestrator: the stamping workflow (validate_input → hash_generation → onextree_intelligence
(optional) → stamp_creation → event_publishing) on the metadata stamping node hosted beside it.

Requests come from the command topic (stamp-workflow-requested: recorded, then run in the background) and from
``POST /workflow`` (run to the end; the answer is the workflow's result, or 503 when too many are in flight).
Published: stamp-workflow-started/completed/failed (the workflow FSM), workflow-state-transition and
workflow-step-completed (the ORCHESTRATOR kind), onextree-intelligence-requested/received (here); the stamping node
publishes blake3-hash-generated and metadata-stamp-created as the workflow calls it, chained to the workflow's events.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from framework.adapters.onextree_client import Intelligence, OnexTreeClient
from framework.errors import PayloadInvalid
from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.http import respond
from framework.workflows import StepCall, StepFailed, StepStatus, WorkflowBusy, WorkflowResult
from nodes.bridge_orchestrator._generated import BridgeOrchestratorBase

_CONTENT_FIELDS = ("content", "encoding", "namespace")


class BridgeOrchestratorNode(BridgeOrchestratorBase):
    onextree: OnexTreeClient | None = None

    async def start(self) -> None:
        session = self.runtime.resources.get("http_session")
        if session is not None:
            self.onextree = OnexTreeClient(session, os.environ.get("ONEXTREE_URL"))
        await super().start()

    # --- requests -------------------------------------------------------------------------------------------------

    async def on_workflow_requested(self, event: OnexEnvelopeV1) -> None:
        await self.accept_workflow(event)

    def http_routes(self) -> list[web.RouteDef]:
        return [web.post("/workflow", self._post_workflow)]

    async def _post_workflow(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return respond(request, status="error", http_status=400, error="invalid_json", message="body is not JSON")
        if not isinstance(body, dict):
            return respond(
                request, status="error", http_status=400, error="invalid_request", message="expected an object"
            )
        try:
            result = await self.run_workflow(body, wait=False)
        except PayloadInvalid as exc:
            return respond(request, status="error", http_status=400, error="invalid_request", message=str(exc))
        except WorkflowBusy as exc:
            response = respond(request, status="error", http_status=503, error="busy", message=str(exc))
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
            return response
        assert result is not None  # a new id is never a duplicate
        data = self.result_of(result)
        if result.state == "completed":
            return respond(request, data, message="workflow completed")
        return respond(
            request, data, status="error", http_status=422, error="workflow_failed", message=result.error or ""
        )

    def result_of(self, result: WorkflowResult) -> dict[str, Any]:
        """The contract's WorkflowResult."""
        hashed = result.results.get("hash_generation") or {}
        stamped = result.results.get("stamp_creation") or {}
        intelligence = result.outcomes.get("onextree_intelligence")
        if intelligence is None or intelligence.status is StepStatus.SKIPPED:
            said = "skipped"
        elif intelligence.status is StepStatus.COMPLETED and (intelligence.result or {}).get("available"):
            said = "received"
        else:
            said = "unavailable"
        out: dict[str, Any] = {
            "workflow_id": result.workflow_id,
            "state": result.state,
            "file_hash": stamped.get("file_hash") or hashed.get("file_hash"),
            "stamp_id": stamped.get("stamp_id"),
            "intelligence": said,
            "steps": [o.as_dict() for o in result.outcomes.values()],
            "error": result.error,
        }
        if said == "received":
            out["intelligence_data"] = intelligence.result.get("intelligence") if intelligence else None
        return out

    # --- steps ----------------------------------------------------------------------------------------------------

    def step_request(self, call: StepCall) -> Any:
        data = call.input
        if call.step.name == "stamp_creation":
            request = {k: data[k] for k in (*_CONTENT_FIELDS, "file_path") if k in data}
            return request
        return {k: data[k] for k in _CONTENT_FIELDS if k in data}

    async def validate_input(self, call: StepCall) -> dict[str, Any]:
        content = call.input["content"]
        if call.input.get("encoding") == "base64":
            try:
                size = len(base64.b64decode(content, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise StepFailed(f"content is not valid base64: {exc}") from None
        else:
            size = len(content.encode("utf-8"))
        return {"content_size": size}

    async def request_intelligence(self, call: StepCall) -> dict[str, Any]:
        file_hash = call.results["hash_generation"]["file_hash"]
        await self.publish("onextree-intelligence-requested", {"workflow_id": call.workflow_id, "file_hash": file_hash})
        answer = Intelligence(False, reason="the host gave this node no HTTP client")
        if self.onextree is not None:
            answer = await self.onextree.intelligence(
                {"file_hash": file_hash, "namespace": call.input["namespace"], "file_path": call.input.get("file_path")}
            )
        answer_available, data, reason = answer.available, answer.data, answer.reason
        received: dict[str, Any] = {"workflow_id": call.workflow_id, "available": answer_available}
        if data is not None:
            received["intelligence"] = data
        await self.publish("onextree-intelligence-received", received)
        return {"available": answer_available, "intelligence": data, "reason": reason}

    async def publish_events(self, call: StepCall) -> dict[str, Any]:
        # The stamp and hash events were published by the stamping node as it worked; what is left to announce is
        # the workflow's end, which the FSM does with the transition to completed.
        stamped: Mapping[str, Any] = call.results["stamp_creation"]
        return {"stamp_id": stamped.get("stamp_id"), "file_hash": stamped.get("file_hash")}
