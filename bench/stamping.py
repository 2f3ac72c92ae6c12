# ruff: noqa: ASYNC220, ASYNC240, E501 - a benchmark script: it starts and waits for its child processes itself
"""Load the stamping service and, in the same run, a bare aiohttp endpoint that only hashes the body.

    .venv/bin/python -m bench.stamping [--seconds 5] [--connections 100,1000]

The host (embedded PostgreSQL, embedded Kafka) runs in a child process, as does the bare endpoint; the load
generator is this process (aiohttp client, keep-alive connections), all on 127.0.0.1 and the same cores, so the
ratios are what the goals are about, not the absolute numbers. Prints: throughput of /hash and /stamp against the
bare endpoint at each connection count, errors, /stamp latency at a steady 500 req/s, in-process hashing of 1 KB,
a 100 MB file against b3sum, and the host's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench._common import percentile, table
from framework.adapters.hashing import hash_bytes, hash_file

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/api/v1/metadata-stamping"

BARE = """
import sys
from aiohttp import web
from blake3 import blake3
async def h(request):
    body = await request.read()
    return web.json_response({"file_hash": blake3(body).hexdigest(), "file_size": len(body)})
app = web.Application(); app.router.add_post("/hash", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, bodies: list[bytes], connections: int, seconds: float) -> tuple[float, int, list[float]]:
    """Closed loop: ``connections`` workers, each sending one request after the other. Returns req/s, errors and
    latencies."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def worker(i: int) -> None:
            nonlocal errors
            n = i
            while time.perf_counter() < stop:
                body = bodies[n % len(bodies)]
                n += connections
                started = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, errors, sorted(latencies)


async def steady(url: str, bodies: list[bytes], rate: float, seconds: float) -> tuple[int, list[float]]:
    """Open loop at ``rate`` requests/s."""
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(body: bytes) -> None:
            nonlocal errors
            started = time.perf_counter()
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                errors += resp.status != 200
            latencies.append(time.perf_counter() - started)

        tasks = []
        began = time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
    return errors, sorted(latencies)


def wait_for_endpoints(path: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        if proc.poll() is not None:
            raise SystemExit(f"the host exited with {proc.returncode}")
        time.sleep(0.2)
    raise SystemExit("the host did not start")


def micro() -> list[tuple[str, str]]:
    rows = []
    data = os.urandom(1024)
    samples = []
    for _ in range(20_000):
        started = time.perf_counter_ns()
        hash_bytes(data)
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    rows.append(
        (
            "in-process hash of 1 KB, p50 / p99",
            f"{percentile(samples, 50):.1f} / {percentile(samples, 99):.1f} µs (goal p99 < 20)",
        )
    )
    b3sum = shutil.which("b3sum")
    with tempfile.NamedTemporaryFile(dir="/tmp") as handle:
        handle.write(os.urandom(100 * 1024 * 1024))
        handle.flush()
        ours = min(_timed(lambda: hash_file(handle.name)) for _ in range(3))
        if b3sum:
            theirs = min(
                _timed(lambda: subprocess.run([b3sum, handle.name], check=True, capture_output=True)) for _ in range(3)
            )
            rows.append(
                (
                    "100 MB file: onex / b3sum",
                    f"{ours * 1000:.0f} ms / {theirs * 1000:.0f} ms = {theirs / ours:.0%} of b3sum's speed (goal >= 90%)",
                )
            )
        else:
            rows.append(("100 MB file: onex", f"{ours * 1000:.0f} ms (b3sum not installed)"))
    return rows


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="100,1000")
    args = parser.parse_args()
    levels = [int(c) for c in args.connections.split(",")]
    data_dir = Path(tempfile.mkdtemp(prefix="onex-bench-stamping-", dir="/tmp"))
    data_dir.chmod(0o755)
    env = {**os.environ, "SERVICE_PORT": "0", "ONEX_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    host = subprocess.Popen(
        [sys.executable, "-m", "nodes.metadata_stamping"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
    try:
        endpoints = wait_for_endpoints(data_dir / "endpoints.json", host)
        base = endpoints["http"] + PREFIX
        await asyncio.sleep(1.0)
        hash_bodies = [json.dumps({"content": os.urandom(384).hex()}).encode() for _ in range(64)]
        bare_bodies = [os.urandom(768) for _ in range(64)]
        run = uuid.uuid4().hex[:8]
        stamp_bodies = [
            json.dumps({"content": f"{run}-{i}-" + os.urandom(380).hex(), "namespace": "bench.stamping"}).encode()
            for i in range(200_000)
        ]
        rows = []
        for connections in levels:
            bare_rps, bare_err, _ = await load(
                f"http://127.0.0.1:{bare_port}/hash", bare_bodies, connections, args.seconds
            )
            hash_rps, hash_err, hash_lat = await load(base + "/hash", hash_bodies, connections, args.seconds)
            stamp_rps, stamp_err, stamp_lat = await load(base + "/stamp", stamp_bodies, connections, args.seconds)
            rows.append((connections, "bare", f"{bare_rps:,.0f}", "100%", bare_err, "-"))
            rows.append(
                (
                    connections,
                    "/hash",
                    f"{hash_rps:,.0f}",
                    f"{hash_rps / bare_rps:.0%}",
                    hash_err,
                    f"{percentile(hash_lat, 99) * 1000:.1f}",
                )
            )
            rows.append(
                (
                    connections,
                    "/stamp",
                    f"{stamp_rps:,.0f}",
                    f"{stamp_rps / bare_rps:.0%}",
                    stamp_err,
                    f"{percentile(stamp_lat, 99) * 1000:.1f}",
                )
            )
        print(table(["conns", "target", "req/s", "of bare", "errors", "p99 ms"], rows, left=2))
        print("goals: /hash >= 80% of bare, /stamp >= 40%, no errors at 1,000 connections\n")
        errors, lat = await steady(base + "/stamp", stamp_bodies[100_000:], 500, args.seconds)
        print(
            f"/stamp at a steady 500 req/s: p95 {percentile(lat, 95) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
            f"{errors} errors (goal p95 < 10 ms, p99 < 25 ms)"
        )
        print(f"host peak RSS: {rss_mb(host.pid):.0f} MB (goal < 256 MB)\n")
        for name, value in micro():
            print(f"{name}: {value}")
    finally:
        for proc in (host, bare):
            proc.send_signal(signal.SIGTERM)
        for proc in (host, bare):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
