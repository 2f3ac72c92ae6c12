"""Handler of the event-log test contract (job_runner.yaml)."""

from __future__ import annotations

from framework.events.envelope import OnexEnvelopeV1
from framework.runtime.kinds import EffectNode


class JobRunner(EffectNode):
    async def on_job(self, event: OnexEnvelopeV1) -> None:
        job_id = event.payload["job_id"]
        if event.payload["mode"] == "fail":
            raise RuntimeError(f"job {job_id} failed on purpose")
        await self.publish("job-done", {"job_id": job_id})
