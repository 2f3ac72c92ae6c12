# ruff: noqa: ASYNC220, ASYNC240, E501 - a benchmark script: it starts and waits for its child processes itself
"""Load the stamping service and, in the same run, a bare aiohttp endpoint that only hashes the body.

    .venv/bin/python -m bench.stamping [--seconds 5] [--connections 100,1000] [--repeat 3] [--rate 500]

The host (embedded PostgreSQL, embedded Kafka) runs in a child process, as does the bare endpoint; the load
generator is this process (``bench/_http.py``: a lean HTTP/1.1 client on keep-alive connections, so that the
generator takes little of the CPU it shares with the service), all on 127.0.0.1 and the same cores, so the
ratios are what the goals are about, not the absolute numbers. Prints: throughput of /hash and /stamp against the
bare endpoint at each connection count (each round measures all three back to back; ``--repeat`` rounds print the
range of the ratios), errors, /stamp latency at a steady rate, in-process hashing of 1 KB, a 100 MB file against
b3sum, the host's peak RSS, and where the CPU went: the CPU time of each process per answered request (the load
generator, the service, its embedded PostgreSQL and broker, the bare endpoint), read from ``/proc`` around each
phase, the relay's catching up after it included (an external database or broker is not counted).

Fairness: the bare endpoint and /hash hash the same 768 bytes per request; every /stamp request stores new content.
Throughput counts successful answers only; anything but a 200 (or no answer) is an error. Every target is warmed
up first, and each phase starts once the outbox of the one before is published (so the relay's catching up is not
billed to the next phase). The steady phase is open loop: requests are sent when due, on as many connections as
needed, and each latency runs from when the request was due, so a generator or service falling behind shows up as
latency (the printed "sent at" rate says whether the generator kept up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench._common import cpu_by_role, percentile, table
from bench._http import HttpError, LoadClient
from framework.adapters.hashing import hash_bytes, hash_file

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/api/v1/metadata-stamping"
JSON = {"Content-Type": "application/json"}

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


#: A request body by sequence number: every request of a run gets a body of its own where that matters (stamps).
Bodies = Callable[[int], bytes]
_CLIENT_ERRORS = (HttpError, OSError, TimeoutError)


async def load(url: str, bodies: Bodies, connections: int, seconds: float) -> tuple[float, int, list[float]]:
    """Closed loop: ``connections`` workers, each sending one request after the other for ``seconds``. Returns the
    rate of successful (200) answers per second, the number of errors (any other status, or no answer) and the
    sorted latencies of the successful requests."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    client = LoadClient(url)

    async def worker(i: int) -> None:
        nonlocal errors
        n = i
        while time.perf_counter() < stop:
            body = bodies(n)
            n += connections
            started = time.perf_counter()
            try:
                ok = (await client.post(body))[0] == 200
            except _CLIENT_ERRORS:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    try:
        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
    finally:
        await client.close()
    return len(latencies) / elapsed, errors, sorted(latencies)


async def steady(url: str, bodies: Bodies, rate: float, seconds: float) -> tuple[int, float, list[float]]:
    """Open loop: request ``i`` is due at ``i / rate`` s, whether or not earlier ones were answered. Each latency is
    measured from the moment its request was due, not from when the generator got round to sending it, so a
    generator (or a connection pool) that falls behind shows as latency instead of hiding it. Returns errors, the
    rate at which requests were really sent, and the sorted latencies of all requests (a failed request counts as
    an error and with its latency)."""
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    client = LoadClient(url)  # no pool limit: an open loop must not queue requests behind busy connections

    async def one(body: bytes, due: float) -> None:
        nonlocal errors
        try:
            errors += (await client.post(body))[0] != 200
        except _CLIENT_ERRORS:
            errors += 1
        latencies.append(time.perf_counter() - due)

    tasks = []
    try:
        began = time.perf_counter()
        for i in range(total):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies(i), due)))
        sending = time.perf_counter() - began
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return errors, total / max(sending, 1 / rate), sorted(latencies)


async def quiesce(http_base: str, within_s: float = 60.0) -> None:
    """Wait until the service has written and published what the last phase left behind (the hash recorder's queue
    and the outbox are empty, twice in a row: a batch being written is in neither for a moment), then a moment
    more: so that one phase's background work does not run in the next phase's time."""
    deadline = time.monotonic() + within_s
    empty = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline and empty < 2:
            try:
                async with http.get(http_base + PREFIX + "/health") as resp:
                    recorder = (await resp.json())["data"]["recorder"]["pending"]
                async with http.get(http_base + "/health") as resp:
                    outbox = (await resp.json())["data"]["components"]["outbox"]["pending"]
            except (aiohttp.ClientError, OSError, TimeoutError, KeyError, TypeError, ValueError):
                recorder = outbox = None
            empty = empty + 1 if recorder == 0 and outbox == 0 else 0
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)


#: Roles of the processes whose CPU time is read, by command name, for the descendants of the service's process.
ROLES = ("generator", "service", "postgres", "broker", "bare")


def _child_role(name: str) -> str:
    return "postgres" if name.startswith("postgres") else "broker" if name.startswith("tansu") else "service"


def cpu_per_request(before: dict[str, float], after: dict[str, float], answered: int) -> dict[str, float]:
    """Milliseconds of CPU per answered request, by role, between two readings of ``cpu_by_role``."""
    return {role: (after[role] - before[role]) * 1000 / max(answered, 1) for role in ROLES}


def medians(per_request: list[dict[str, float]]) -> dict[str, float]:
    """Each role's median over rounds of its CPU per request."""
    return {role: statistics.median(r[role] for r in per_request) for role in ROLES}


def cpu_rows(label: str, per_request: list[dict[str, float]]) -> tuple[object, ...]:
    """A table row: the median over rounds of each role's CPU per request, and of their total."""
    total = statistics.median(sum(r.values()) for r in per_request)
    return (label, *(f"{m:.3f}" for m in medians(per_request).values()), f"{total:.3f}")


def bounds(cpu: dict[tuple[int, str], list[dict[str, float]]]) -> str:
    """An estimate of what the CPU figures allow: on cores that the load saturates, throughput goes as 1 / CPU per
    request. Were the service's own process as cheap per request as the bare endpoint's (which does no database or
    broker work), and the generator's cost as low as with the bare endpoint, a target would still cost PostgreSQL
    and the broker what it costs them now: its share of the bare endpoint's throughput could then be at most the
    bare endpoint's CPU per request (its process and the generator) divided by that floor."""
    lines = ["estimated ceiling of the share of bare, with the service's process as cheap as the bare endpoint's:"]
    for connections in sorted({c for c, _ in cpu}):
        bare = medians(cpu[connections, "bare"])
        for target in ("/hash", "/stamp"):
            if (connections, target) not in cpu:
                continue
            ours = medians(cpu[connections, target])
            generator = min(ours["generator"], bare["generator"])
            floor = generator + ours["postgres"] + ours["broker"] + bare["bare"]
            lines.append(f"  {connections:>5} {target:<6} {(bare['generator'] + bare['bare']) / floor:.0%}")
    return "\n".join(lines) + "\n"


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
        hash_file(handle.name)  # the file in the page cache for both
        if b3sum:
            # Alternated, seven of each, medians: one run of either swings by a quarter on a shared machine.
            pairs = [
                (
                    _timed(lambda: hash_file(handle.name)),
                    _timed(lambda: subprocess.run([b3sum, handle.name], check=True, capture_output=True)),
                )
                for _ in range(7)
            ]
            ours = statistics.median(o for o, _ in pairs)
            theirs = statistics.median(t for _, t in pairs)
            rows.append(
                (
                    "100 MB file: onex / b3sum (medians of 7)",
                    f"{ours * 1000:.0f} ms / {theirs * 1000:.0f} ms = {theirs / ours:.0%} of b3sum's speed (goal >= 90%)",
                )
            )
        else:
            ours = statistics.median(_timed(lambda: hash_file(handle.name)) for _ in range(7))
            rows.append(("100 MB file: onex", f"{ours * 1000:.0f} ms (b3sum not installed)"))
    return rows


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def _bodies() -> tuple[Bodies, Bodies, Bodies]:
    """Bodies of the bare endpoint, /hash and /stamp. The bare endpoint and /hash hash the same amount: 768 bytes
    (raw for the bare one; the 768 characters of ``content`` for /hash, whose JSON around it is the service's own
    work). Stamps are fresh content each (an insert, as a new file would be), unique across the whole run."""
    bare = [os.urandom(768) for _ in range(64)]
    hashes = [json.dumps({"content": os.urandom(384).hex()}).encode() for _ in range(64)]
    run = uuid.uuid4().hex[:8]
    counter = iter(range(1 << 62))

    def stamp(_: int) -> bytes:
        # 768 characters of content, like the others; a run-unique prefix so every request stores a new stamp.
        prefix = f"{run}-{next(counter):09d}-"
        return json.dumps(
            {"content": prefix + os.urandom(384).hex()[len(prefix) :], "namespace": "bench.stamping"}
        ).encode()

    return (lambda n: bare[n % 64]), (lambda n: hashes[n % 64]), stamp


async def main() -> None:
    parser = argparse.ArgumentParser(
        description="Throughput of /hash and /stamp against a bare aiohttp endpoint that only hashes the body, "
        "measured in the same run; /stamp latency at a steady rate."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    parser.add_argument(
        "--connections",
        default="100,1000",
        help="closed-loop connection counts, comma-separated (empty: only the steady phase)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the throughput phases (ranges are printed)")
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the steady /stamp phase")
    parser.add_argument("--skip-micro", action="store_true", help="skip the in-process hashing figures")
    args = parser.parse_args()
    levels = [int(c) for c in args.connections.split(",") if c.strip()]
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
        bare_url = f"http://127.0.0.1:{bare_port}/hash"
        bare_bodies, hash_bodies, stamp_bodies = _bodies()
        # Warm up (connections, prepared statements, the relay's first batches); not measured.
        for url, bodies in ((bare_url, bare_bodies), (base + "/hash", hash_bodies), (base + "/stamp", stamp_bodies)):
            await load(url, bodies, 20, 1.0)
        await quiesce(endpoints["http"])
        roots = {os.getpid(): "generator", host.pid: "service", bare.pid: "bare"}
        ratios: dict[tuple[int, str], list[float]] = {}
        cpu: dict[tuple[int, str], list[dict[str, float]]] = {}
        rows = []
        for round_ in range(1, args.repeat + 1):
            for connections in levels:
                measured: dict[str, tuple[float, int, list[float]]] = {}
                for target, url, bodies in (
                    ("bare", bare_url, bare_bodies),
                    ("/hash", base + "/hash", hash_bodies),
                    ("/stamp", base + "/stamp", stamp_bodies),
                ):
                    before = cpu_by_role(roots, _child_role)
                    measured[target] = await load(url, bodies, connections, args.seconds)
                    await quiesce(endpoints["http"])
                    answered = len(measured[target][2])
                    cpu.setdefault((connections, target), []).append(
                        cpu_per_request(before, cpu_by_role(roots, _child_role), answered)
                    )
                bare_rps = measured["bare"][0]
                for target, (rps, errors, lat) in measured.items():
                    ratio = rps / bare_rps if bare_rps else float("nan")
                    ratios.setdefault((connections, target), []).append(ratio)
                    p99 = f"{percentile(lat, 99) * 1000:.1f}" if lat else "-"
                    rows.append((round_, connections, target, f"{rps:,.0f}", f"{ratio:.0%}", errors, p99))
        if rows:
            print(table(["round", "conns", "target", "req/s", "of bare", "errors", "p99 ms"], rows, left=3))
            if args.repeat > 1:
                print("\nrange over rounds, share of the bare endpoint's req/s:")
                for (connections, target), values in ratios.items():
                    if target != "bare":
                        print(f"  {connections:>5} {target:<6} {min(values):.0%}-{max(values):.0%}")
            print("goals: /hash >= 80% of bare, /stamp >= 40%, no errors at 1,000 connections\n")
            print("CPU per answered request, ms (medians over rounds; all processes share the same cores):")
            print(table(["conns / target", *ROLES, "total"], [cpu_rows(f"{c} {t}", v) for (c, t), v in cpu.items()]))
            print(bounds(cpu))
        before = cpu_by_role(roots, _child_role)
        errors, sent_rate, lat = await steady(base + "/stamp", stamp_bodies, args.rate, args.seconds)
        await quiesce(endpoints["http"])
        answered = len(lat) - errors  # a failed request has a latency too
        steady_cpu = cpu_rows(
            f"steady {args.rate:g}/s /stamp", [cpu_per_request(before, cpu_by_role(roots, _child_role), answered)]
        )
        print(
            f"/stamp at a steady {args.rate:g} req/s (sent at {sent_rate:,.0f}/s): p50 {percentile(lat, 50) * 1000:.1f} ms, "
            f"p95 {percentile(lat, 95) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, {errors} errors "
            "(goal p95 < 10 ms, p99 < 25 ms)"
        )
        print(table(["CPU per request, ms", *ROLES, "total"], [steady_cpu]))
        print(f"host peak RSS: {rss_mb(host.pid):.0f} MB (goal < 256 MB)\n")
        if not args.skip_micro:
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
