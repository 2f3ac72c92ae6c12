"""Step targets outside the process: a command whose reply is awaited over the bus (the embedded Kafka broker and the
in-memory bus), and an HTTP service (a small aiohttp service on 127.0.0.1 that the test starts)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from framework.contract.validate import load_contract
from framework.runtime.config import Settings
from framework.runtime.host import Host
from framework.workflows import WorkflowResult
from tests.workflows.flow_nodes import Doubler, FlowOrchestrator
from tests.workflows.helpers import with_workflow

TARGETS = Path(__file__).parent / "targets"
QUICK_RETRY = {"kind": "retry", "max_attempts": 2, "backoff": {"initial_ms": 1, "max_ms": 2}}


def statuses(result: WorkflowResult) -> dict[str, tuple[str, int]]:
    return {name: (str(o.status), o.attempts) for name, o in result.outcomes.items()}


async def run(node: FlowOrchestrator, **data: Any) -> WorkflowResult:
    result = await node.run_workflow(data)
    assert result is not None
    return result


@pytest.fixture
def settings(tmp_path: Path, postgres_dsn: str) -> Settings:
    return Settings(service_port=0, env=f"t{uuid.uuid4().hex[:10]}", data_dir=tmp_path, postgres_dsn=postgres_dsn)


# --- command steps --------------------------------------------------------------------------------------------------

COMMAND = {"command": "double-requested", "reply": "double-computed"}


@pytest.fixture(params=["memory", "kafka"])
def bus_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "kafka":
        return replace(settings, bus="kafka", kafka_bootstrap_servers=request.getfixturevalue("kafka_bootstrap"))
    return replace(settings, bus="memory")


@pytest.fixture
async def commanding(bus_settings: Settings) -> AsyncIterator[FlowOrchestrator]:
    workflow = {
        "steps": [
            {"name": "doubled", "target": COMMAND, "timeout_ms": 2_000, "retry": QUICK_RETRY},
            {"name": "maybe", "target": COMMAND, "timeout_ms": 300, "required": False, "when": "n < 0"},
            {"name": "after", "target": {"handler": "add_one"}},
        ]
    }
    caller = with_workflow(load_contract(TARGETS / "caller.yaml"), workflow)
    async with Host([caller, load_contract(TARGETS / "doubler.yaml")], bus_settings) as host:
        node = host.nodes[0]
        assert isinstance(node, FlowOrchestrator) and isinstance(host.nodes[1], Doubler)
        yield node


async def test_a_command_step_completes_with_its_reply(commanding: FlowOrchestrator) -> None:
    results = await asyncio.gather(*(run(commanding, n=n) for n in range(1, 6)))
    for n, result in enumerate(results, start=1):
        assert result.state == "completed", result.error
        assert result.results["doubled"] == {"value": n * 2}  # each reply reached the step that sent its command
        assert statuses(result) == {
            "doubled": ("completed", 1),
            "maybe": ("skipped", 0),
            "after": ("completed", 1),
        }
    assert not commanding._replies  # no reply is still awaited


async def test_a_command_step_is_retried_when_its_reply_does_not_come(commanding: FlowOrchestrator) -> None:
    result = await run(commanding, n=7, fail=["drop_once"])
    assert result.state == "completed", result.error
    assert statuses(result)["doubled"] == ("completed", 2)
    assert result.results["doubled"] == {"value": 14}


async def test_a_command_without_a_reply_times_out(commanding: FlowOrchestrator) -> None:
    # n < 0: the doubler never answers; the optional step is skipped after its timeout, the required one fails.
    result = await run(commanding, n=-1)
    assert result.state == "failed" and result.failed_step == "doubled"
    assert statuses(result) == {"doubled": ("timed_out", 2)}
    assert "timed out after 2000 ms" in (result.error or "")
    assert not commanding._replies


async def test_an_optional_command_step_that_times_out_is_skipped(settings: Settings) -> None:
    settings = replace(settings, bus="memory")
    workflow = {
        "steps": [
            {"name": "maybe", "target": COMMAND, "timeout_ms": 200, "required": False},
            {"name": "after", "target": {"handler": "add_one"}},
        ]
    }
    caller = with_workflow(load_contract(TARGETS / "caller.yaml"), workflow)
    async with Host([caller, load_contract(TARGETS / "doubler.yaml")], settings) as host:
        node = host.nodes[0]
        assert isinstance(node, FlowOrchestrator)
        result = await run(node, n=-3)
    assert result.state == "completed"
    assert statuses(result) == {"maybe": ("timed_out", 1), "after": ("completed", 1)}
    assert result.skipped_steps == 1 and result.results["after"] == {"value": -2}


# --- HTTP steps -----------------------------------------------------------------------------------------------------


class Service:
    """On 127.0.0.1: ``/double`` answers; ``/flaky`` answers 503 to the first call of each n; ``/broken`` answers
    500; ``/refuse`` 400; ``/stuck`` never answers (until the test ends)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.done = asyncio.Event()

    def _count(self, path: str, n: int) -> int:
        key = f"{path}:{n}"
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key]

    async def double(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._count("double", body["n"])
        return web.json_response({"value": body["n"] * 2})

    async def flaky(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self._count("flaky", body["n"]) == 1:
            return web.json_response({"error": "try again"}, status=503)
        return web.json_response({"value": body["n"] * 3})

    async def broken(self, request: web.Request) -> web.Response:
        self._count("broken", (await request.json())["n"])
        return web.json_response({"error": "down"}, status=500)

    async def refuse(self, request: web.Request) -> web.Response:
        self._count("refuse", (await request.json())["n"])
        return web.json_response({"error": "bad request"}, status=400)

    async def stuck(self, request: web.Request) -> web.Response:
        self._count("stuck", (await request.json())["n"])
        await self.done.wait()
        return web.json_response({})


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    svc = Service()
    app = web.Application()
    for name in ("double", "flaky", "broken", "refuse", "stuck"):
        app.router.add_post(f"/{name}", getattr(svc, name))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    monkeypatch.setenv("FLOW_SERVICE_URL", f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield svc
    finally:
        svc.done.set()
        await runner.cleanup()


def http(path: str) -> dict[str, str]:
    return {"http": f"${{FLOW_SERVICE_URL}}/{path}", "method": "POST"}


async def test_http_steps(service: Service, settings: Settings) -> None:
    settings = replace(settings, bus="memory")
    workflow = {
        "steps": [
            {"name": "doubled", "target": http("double")},
            {"name": "tripled", "target": http("flaky"), "retry": QUICK_RETRY},
            {"name": "optional_down", "target": http("broken"), "required": False, "retry": QUICK_RETRY},
            {"name": "optional_slow", "target": http("stuck"), "required": False, "timeout_ms": 200},
            {"name": "gated", "target": http("refuse"), "when": "n > 100"},
            {"name": "after", "target": {"handler": "add_one"}},
        ]
    }
    caller = with_workflow(load_contract(TARGETS / "caller.yaml"), workflow)
    async with Host([caller], settings) as host:
        node = host.nodes[0]
        assert isinstance(node, FlowOrchestrator)
        good = await run(node, n=4)
        refused = await run(node, n=101)

    assert good.state == "completed", good.error
    assert good.results["doubled"] == {"value": 8} and good.results["tripled"] == {"value": 12}
    assert statuses(good) == {
        "doubled": ("completed", 1),
        "tripled": ("completed", 2),  # a 503, then the answer
        "optional_down": ("failed", 2),  # retried, then skipped: it is optional
        "optional_slow": ("timed_out", 1),
        "gated": ("skipped", 0),
        "after": ("completed", 1),
    }
    assert "answered 500" in (good.outcomes["optional_down"].error or "")
    assert good.skipped_steps == 3

    # A 4xx is not retried, and fails the workflow when its step is required.
    assert refused.state == "failed" and refused.failed_step == "gated"
    assert statuses(refused)["gated"] == ("failed", 1)
    assert "answered 400" in (refused.error or "")
    assert "after" not in refused.outcomes
    assert service.calls == {
        "double:4": 1,
        "flaky:4": 2,
        "broken:4": 2,
        "stuck:4": 1,
        "double:101": 1,
        "flaky:101": 2,
        "broken:101": 2,
        "stuck:101": 1,
        "refuse:101": 1,
    }


async def test_a_required_http_step_that_times_out_fails_the_workflow(service: Service, settings: Settings) -> None:
    settings = replace(settings, bus="memory")
    workflow = {"steps": [{"name": "slow", "target": http("stuck"), "timeout_ms": 150, "retry": QUICK_RETRY}]}
    caller = with_workflow(load_contract(TARGETS / "caller.yaml"), workflow)
    async with Host([caller], settings) as host:
        node = host.nodes[0]
        assert isinstance(node, FlowOrchestrator)
        result = await run(node, n=1)
    assert result.state == "failed" and result.failed_step == "slow"
    assert statuses(result) == {"slow": ("timed_out", 2)}
    assert service.calls == {"stuck:1": 2}
