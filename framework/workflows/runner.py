"""Running one step: its ``when`` guard, its timeout per attempt, its retry policy with backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from framework.backoff import backoff_s
from framework.contract.guard import Guard, GuardEvaluationError, parse_guard
from framework.contract.subcontracts import RetryPolicy, Step
from framework.errors import PoisonMessage, PortError
from framework.workflows.outcome import StepCall, StepOutcome, StepStatus

Invoke = Callable[[StepCall], Awaitable[Any]]

_NO_RETRY = RetryPolicy(max_attempts=1)


class StepFailed(Exception):
    """Raised by a target for a failure that retrying cannot fix (bad input, say): the step fails at once. So does a
    ``PortError`` that is not retriable."""


def guard_context(workflow_id: str, data: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``when`` guard reads: the input's fields by name, ``input``, ``steps.<name>`` results, ``workflow_id``."""
    return {**data, "input": data, "steps": results, "workflow_id": workflow_id}


class StepRunner:
    """Runs the steps of one workflow subcontract through ``invoke`` (which reaches the step's target)."""

    def __init__(self, steps: list[Step], invoke: Invoke) -> None:
        self._invoke = invoke
        self._guards: dict[str, Guard] = {s.name: parse_guard(s.when) for s in steps if s.when is not None}

    def check(
        self, step: Step, workflow_id: str, data: Mapping[str, Any], results: Mapping[str, Any]
    ) -> StepOutcome | None:
        """The step's outcome decided by its ``when`` guard alone (skipped, or failed when the guard cannot be
        evaluated); ``None`` when the step is to run."""
        guard = self._guards.get(step.name)
        if guard is None:
            return None
        try:
            holds = guard.test(guard_context(workflow_id, data, results))
        except GuardEvaluationError as exc:
            return StepOutcome(
                step.name, StepStatus.FAILED, step.required, error=f"condition of step '{step.name}': {exc}"
            )
        return None if holds else StepOutcome(step.name, StepStatus.SKIPPED, step.required)

    async def run(
        self, step: Step, workflow_id: str, data: Mapping[str, Any], results: Mapping[str, Any]
    ) -> StepOutcome:
        """Check the guard, then :meth:`attempt` the step."""
        decided = self.check(step, workflow_id, data, results)
        return decided if decided is not None else await self.attempt(step, workflow_id, data, results)

    async def attempt(
        self, step: Step, workflow_id: str, data: Mapping[str, Any], results: Mapping[str, Any]
    ) -> StepOutcome:
        """Call the step's target, with its timeout per attempt and its retries, regardless of its guard."""
        started = time.perf_counter()

        def outcome(status: StepStatus, attempts: int, result: Any = None, error: str | None = None) -> StepOutcome:
            elapsed = (time.perf_counter() - started) * 1000
            return StepOutcome(step.name, status, step.required, attempts, elapsed, result, error)

        policy = step.retry or _NO_RETRY
        timeout_s = step.timeout_ms / 1000
        status, error = StepStatus.FAILED, ""
        attempt = 0
        for attempt in range(1, policy.max_attempts + 1):
            call = StepCall(workflow_id, step, data, results, attempt)
            try:
                async with asyncio.timeout(timeout_s):
                    result = await self._invoke(call)
            except TimeoutError:
                status, error = StepStatus.TIMED_OUT, f"step '{step.name}' timed out after {step.timeout_ms} ms"
            except (StepFailed, PoisonMessage) as exc:
                return outcome(StepStatus.FAILED, attempt, error=_describe(exc))
            except PortError as exc:
                if not exc.retriable:  # a 4xx, say: the same call fails again
                    return outcome(StepStatus.FAILED, attempt, error=_describe(exc))
                status, error = StepStatus.FAILED, _describe(exc)
            except Exception as exc:
                status, error = StepStatus.FAILED, _describe(exc)
            else:
                return outcome(StepStatus.COMPLETED, attempt, result)
            if attempt < policy.max_attempts:
                await asyncio.sleep(_backoff_s(policy, attempt))
        return outcome(status, attempt, error=f"{error} (attempt {attempt} of {policy.max_attempts})")


def _backoff_s(policy: RetryPolicy, attempt: int) -> float:
    b = policy.backoff
    return backoff_s(
        attempt, initial_s=b.initial_ms / 1000, multiplier=b.multiplier, max_s=b.max_ms / 1000, jitter=b.jitter
    )


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."
