"""The OnexTree intelligence client against a small HTTP service on 127.0.0.1 that this test starts and steers:
answers, server errors, slowness and client errors, counted call by call. It never raises: every failure is an
answer without intelligence, and only the service's own failures count against its circuit breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from framework.adapters.circuit_breaker import CircuitBreaker
from framework.adapters.onextree_client import OnexTreeClient
from tests.onextree import OnexTree, serve


@pytest.fixture
async def service() -> AsyncIterator[tuple[OnexTree, str]]:
    async with serve() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


REQUEST = {"file_hash": "a" * 64}


async def test_a_server_error_is_retried_then_answered_without_intelligence(
    service: tuple[OnexTree, str], session: aiohttp.ClientSession
) -> None:
    steered, url = service
    steered.status = 503
    client = OnexTreeClient(session, url, attempts=3, backoff_s=0.001)
    answer = await client.intelligence(REQUEST)
    assert not answer.available and answer.reason == f"POST {url}/intelligence answered 503"
    assert steered.calls == 3
    steered.status = 200
    answer = await client.intelligence(REQUEST)
    assert answer.available and answer.data == {"file_hash": "a" * 64, "patterns": ["config"]} and steered.calls == 4


async def test_a_slow_service_is_given_up_after_the_timeout_of_each_attempt(
    service: tuple[OnexTree, str], session: aiohttp.ClientSession
) -> None:
    steered, url = service
    steered.delay_s = 2.0
    client = OnexTreeClient(session, url, timeout_s=0.1, attempts=2, backoff_s=0.001)
    answer = await client.intelligence(REQUEST)  # the service would answer well, after 2 s
    assert not answer.available and answer.reason == f"POST {url}/intelligence timed out after 0.1 s"
    assert steered.calls == 2


async def test_the_circuit_opens_fails_fast_and_closes_after_a_good_probe(
    service: tuple[OnexTree, str], session: aiohttp.ClientSession
) -> None:
    steered, url = service
    steered.status = 500
    now = [0.0]  # the breaker's clock, moved by hand
    breaker = CircuitBreaker("onextree-test", failure_threshold=2, reset_timeout_s=5.0, clock=lambda: now[0])
    client = OnexTreeClient(session, url, attempts=2, backoff_s=0.001, breaker=breaker)
    await client.intelligence(REQUEST)
    assert breaker.state == "open" and steered.calls == 2
    now[0] = 4.9
    answer = await client.intelligence(REQUEST)  # fails fast: the service is not called
    assert not answer.available and "onextree-test" in (answer.reason or "") and steered.calls == 2
    steered.status = 200
    now[0] = 5.1  # past the reset timeout: one probe goes through
    answer = await client.intelligence(REQUEST)
    assert answer.available and steered.calls == 3 and breaker.state == "closed"


async def test_a_client_error_or_a_bad_answer_is_not_the_services_failure(
    service: tuple[OnexTree, str], session: aiohttp.ClientSession
) -> None:
    steered, url = service
    steered.status = 400
    breaker = CircuitBreaker("onextree-test", failure_threshold=1, reset_timeout_s=60)
    client = OnexTreeClient(session, url, attempts=3, breaker=breaker)
    for _ in range(3):
        answer = await client.intelligence(REQUEST)
        assert not answer.available and "answered unusably: ValueError" in (answer.reason or "")
    assert steered.calls == 3 and breaker.state == "closed"  # not retried, and the circuit stays closed


async def test_no_url_means_no_call_and_says_so(session: aiohttp.ClientSession) -> None:
    answer = await OnexTreeClient(session, None).intelligence(REQUEST)
    assert not answer.available and answer.reason == "ONEXTREE_URL is not configured"
