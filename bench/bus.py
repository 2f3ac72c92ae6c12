"""Our Kafka event bus against raw aiokafka, in one run: throughput and publish → handler latency.

    .venv/bin/python -m bench.bus [--messages 20000] [--payload-bytes 1024] [--rounds 3] [--rate 500]
                                  [--latency-seconds 4] [--fetch-max-wait-ms 5] [--profile]

Runs against the embedded Tansu broker, or the broker named by ``KAFKA_BOOTSTRAP_SERVERS`` (loopback only).

Three paths do the same work, each with its own topics (3 partitions) and consumer group, in the same process:

- **ours**: ``KafkaEventBus.publish`` of each envelope (awaited, ``asyncio.gather`` over a bounded window), and a
  handler subscribed with ``KafkaEventBus.subscribe`` (default ``DeliveryPolicy``, in-memory processed-event ids);
- **ours-many**: the same bus and handler, publishing each window with one ``KafkaEventBus.publish_many`` (throughput
  phase only: a latency tick publishes one event);
- **raw**: one ``AIOKafkaProducer`` (``acks="all"``, the bus's linger, no idempotence) sending ``envelope.to_json()``
  with ``envelope.kafka_key()`` and the CloudEvents headers of ``binary_headers(envelope)`` — the bytes, key and
  headers the bus sends — with ``send()`` over the same window, then awaiting the acknowledgements (the pattern of
  ``publish_many``); and one
  ``AIOKafkaConsumer`` in a group (the bus's consumer settings) that decodes each value with
  ``OnexEnvelopeV1.from_json`` (the decode a handler needs to read the event: without it raw would skip work every
  real consumer does) and commits once per ``getmany`` batch;
- **raw-each**: the same raw producer and consumer, publishing the way ``publish`` is used: one call per message
  that encodes it, hands it to ``send()`` and awaits its acknowledgement (``send_and_wait``'s body),
  ``asyncio.gather`` over the same window (throughput phase only).

Each pattern is compared with raw aiokafka's same pattern: ``publish`` with raw-each, ``publish_many`` with raw. A
message published with its own awaited call costs a task, a wake-up on its acknowledgement and the lock, in raw
aiokafka as in the bus, so ours/raw (per-message against batched raw) is shown too but is not a measure of the bus.

Both hand each decoded envelope to the same function (count it; in the latency phase read the timestamp) and
build their envelopes the same way, so the difference is what the bus adds: topic checks, one awaited
``send_and_wait`` per message, the header merge, the consume loop, ``decode_message`` (the header scan), the
processed-event check and mark, the ``Message`` and the background commit.

1. Throughput: N envelopes (pre-built, ~``--payload-bytes`` of payload, 16 keys) per path and round are published
   while the consumer consumes them, in ``--slices`` slices of N / slices that alternate between the paths (the
   order reversed from one slice to the next: a b c d | d c b a | ...), so that every path sees the same drift of
   the machine (on the two-core VM the same code moves by 20% and more over a few seconds: one path's whole round
   after another's gave per-round ratios from 64% to 129%). A slice's clock starts once its path's consumer is
   assigned its partitions and warmed up (the group join, ~3 s on Tansu, is outside every timed window) and stops
   when the handler has seen the slice's messages and every publish is acknowledged; a round's rate is its messages
   over the sum of its slices' times. Client CPU is this process's CPU time per message; broker CPU is the
   embedded broker's.
2. Latency: ``--rate`` messages per second, one per timer tick (open loop: a tick does not wait for the previous
   acknowledgement), each carrying ``time.perf_counter_ns()`` taken just before it is built and published; the
   handler reads it back (same process, same clock). Each round is cut into 1 s slices that alternate between the
   paths (ABBA), so both see the same background load. Percentiles are nearest-rank.

Every phase writes to a fresh topic: Tansu's in-memory storage answers fetches and produces more slowly as a
partition grows (60k retained 1.5 KB messages triple the publish → handler latency), which would otherwise make
later rounds slower than earlier ones. Each consumer subscribes once, to all the topics of its phase, untimed.

Every consumer, raw included, uses the bus's default ``fetch_max_wait_ms`` (``DEFAULT_FETCH_MAX_WAIT_MS``, 20 ms)
and the bus's producer batch size (``DEFAULT_MAX_BATCH_SIZE``, 1 MiB) unless told otherwise: the bus's own settings,
public constructor parameters. The latency phase starts a second pair of consumers (ours and raw; another untimed
join) with ``--fetch-max-wait-ms`` (the bus default unless given): Tansu holds a fetch for about its whole max wait
rather than answering when data arrives, so at aiokafka's default of 500 both paths show a p50 of ~130 ms and a p99
of ~250 ms, which drowns a 2 ms difference; at 5 an idle consumer fetches 200 times a second, which costs the
throughput phase a good part of its rate. ``--raw-batch-size`` gives raw aiokafka another producer batch size
(aiokafka's default is 16384), to compare with the baseline as measured before the bus's batch size changed.

Nothing is asserted: it is a measurement. The goals (issue 3) are printed with whether this run met them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from bench._common import (
    KafkaBroker,
    kafka_broker,
    machine_facts,
    percentile,
    process_cpu_seconds,
    spread,
    table,
    version_of,
)
from framework.adapters.embedded_kafka import create_topics
from framework.adapters.kafka_bus import DEFAULT_FETCH_MAX_WAIT_MS, DEFAULT_MAX_BATCH_SIZE, KafkaEventBus
from framework.events.cloudevents import binary_headers
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.event_bus import Message
from framework.runtime.serve import settle_gc

THROUGHPUT_GOAL = 0.80  # ours / raw
P99_OVERHEAD_GOAL_MS = 2.0  # ours p99 - raw p99

PARTITIONS = 3
KEYS = 16
#: Settings both paths share; the bus's own defaults, written out so that raw aiokafka gets exactly the same.
LINGER_MS = 1
MAX_POLL_RECORDS = 500
POLL_TIMEOUT_MS = 500
CONSUMER_SETTINGS: dict[str, Any] = {
    "max_poll_records": MAX_POLL_RECORDS,
    "heartbeat_interval_ms": 1000,
    "session_timeout_ms": 10_000,
    "rebalance_timeout_ms": 30_000,
    "request_timeout_ms": 30_000,
}
JOIN_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
WARMUP_MESSAGES = 2000
WARMUP_LATENCY_S = 1.0
SLICE_S = 1.0


# --- the work both paths share -------------------------------------------------------------------------------------


class Sink:
    """What every handler does with a decoded envelope, identical for both paths: count it if it belongs to the
    current phase and, in a latency phase, record how long ago it was published."""

    def __init__(self) -> None:
        self.phase = ""
        self.target = 0
        self.count = 0
        self.finished_at = 0.0
        self.done = asyncio.Event()
        self.latencies_ns: list[int] | None = None
        self.strays = 0

    def expect(self, phase: str, count: int, *, latency: bool) -> None:
        self.phase, self.target, self.count, self.finished_at = phase, count, 0, 0.0
        self.latencies_ns = [] if latency else None
        self.done.clear()

    def record(self, envelope: OnexEnvelopeV1) -> None:
        now_ns = time.perf_counter_ns()
        payload = envelope.payload
        if payload["phase"] != self.phase:
            self.strays += 1  # a redelivery from an earlier phase; never expected, but never miscounted either
            return
        if self.latencies_ns is not None:
            self.latencies_ns.append(now_ns - payload["sent_ns"])
        self.count += 1
        if self.count == self.target:
            self.finished_at = time.perf_counter()
            self.done.set()


def make_envelope(phase: str, seq: int, filler: str, sent_ns: int = 0) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="bench-event",
        source_node_id="bench",
        source_service="omninode_bridge",
        source_version="1.0.0",
        partition_key=f"key-{seq % KEYS:02d}",
        payload={"phase": phase, "seq": seq, "sent_ns": sent_ns, "data": filler},
    )


class BenchPath(Protocol):
    name: str
    sink: Sink

    async def start(self) -> None:
        """Connect, create the topics, join the group and return once partitions are assigned."""
        ...

    async def stop(self) -> None: ...

    async def publish_window(self, topic: str, envelopes: Sequence[OnexEnvelopeV1]) -> None:
        """Publish ``envelopes`` concurrently and return when all are acknowledged."""
        ...

    async def publish_one(self, topic: str, envelope: OnexEnvelopeV1) -> None:
        """Start publishing ``envelope`` and return without waiting for the acknowledgement."""
        ...

    async def flush(self) -> None:
        """Wait for the acknowledgements of everything ``publish_one`` started."""
        ...


class _AssignedListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    def __init__(self, assigned: asyncio.Event) -> None:
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        if assigned:
            self._assigned.set()


class OursPath:
    """``KafkaEventBus`` publishing (``publish`` per envelope, or ``publish_many`` per window) and a subscribed
    handler."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        group: str,
        sink: Sink,
        fetch_max_wait_ms: int,
        *,
        many: bool = False,
    ) -> None:
        self.name = "ours-many" if many else "ours"
        self.sink = sink
        self._many = many
        self._topics = list(topics)
        self._group = group
        self._bus = KafkaEventBus(
            bootstrap_servers,
            client_id=f"bench-{self.name}",
            linger_ms=LINGER_MS,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_poll_records=MAX_POLL_RECORDS,
            poll_timeout_ms=POLL_TIMEOUT_MS,
            join_timeout_s=JOIN_TIMEOUT_S,
            default_partitions=PARTITIONS,
        )
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._bus.start()
        await self._bus.ensure_topics(self._topics, partitions=PARTITIONS)
        await self._bus.subscribe(self._topics, group=self._group, handler=self._handle)  # returns once assigned

    async def _handle(self, message: Message) -> None:
        self.sink.record(message.envelope)

    async def stop(self) -> None:
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._bus.stop()  # stops the subscription (drain, commit, leave) and the producer

    async def publish_window(self, topic: str, envelopes: Sequence[OnexEnvelopeV1]) -> None:
        if self._many:
            await self._bus.publish_many(topic, envelopes)
            return
        publish = self._bus.publish
        await asyncio.gather(*(publish(topic, envelope) for envelope in envelopes))

    async def publish_one(self, topic: str, envelope: OnexEnvelopeV1) -> None:
        task = asyncio.create_task(self._bus.publish(topic, envelope))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def flush(self) -> None:
        await asyncio.gather(*self._in_flight)


class RawPath:
    """Plain aiokafka doing the same per-message work, the way a careful hand-written client would."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        group: str,
        sink: Sink,
        fetch_max_wait_ms: int,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        each: bool = False,
    ) -> None:
        self.name = "raw-each" if each else "raw"
        self.sink = sink
        self._max_batch_size = max_batch_size
        # Publish the way ``publish`` is used: one awaited send_and_wait per message, concurrently.
        self._each = each
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._group = group
        self._producer: Any = None
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._acks: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        await create_topics(self._bootstrap, self._topics, partitions=PARTITIONS)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"bench-{self.name}",
            acks="all",
            enable_idempotence=False,
            linger_ms=LINGER_MS,
            max_batch_size=self._max_batch_size,
            request_timeout_ms=CONSUMER_SETTINGS["request_timeout_ms"],
        )
        await self._producer.start()
        settings = {**CONSUMER_SETTINGS, "fetch_max_wait_ms": self._fetch_max_wait_ms}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"bench-{self.name}",
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **settings,
        )
        await self._consumer.start()
        assigned = asyncio.Event()
        self._consumer.subscribe(self._topics, listener=_AssignedListener(assigned))
        self._task = asyncio.create_task(self._run(), name=f"bench {self.name} consumer")
        joined = asyncio.ensure_future(assigned.wait())
        try:
            await asyncio.wait({joined, self._task}, timeout=JOIN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._task.done():
            raise RuntimeError(f"{self.name} consumer failed while joining: {self._task.exception()!r}")
        if not assigned.is_set():
            raise RuntimeError(f"{self.name} consumer was not assigned partitions within {JOIN_TIMEOUT_S} s")

    async def _run(self) -> None:
        consumer, record, decode = self._consumer, self.sink.record, OnexEnvelopeV1.from_json
        while not self._stopping:
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if not batch:
                continue
            offsets = {}
            for tp, records in batch.items():
                for message in records:
                    record(decode(message.value))
                offsets[tp] = records[-1].offset + 1
            await consumer.commit(offsets)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            # Let the loop finish its batch and commit (cancelling a commit leaves aiokafka's inner task failing
            # once the connection closes); getmany returns within the poll timeout.
            done, _ = await asyncio.wait({self._task}, timeout=POLL_TIMEOUT_MS / 1000 + 10)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for future in self._acks:
            future.cancel()
        try:
            if self._consumer is not None:
                await self._consumer.stop()
        finally:
            if self._producer is not None:
                await self._producer.stop()

    async def publish_window(self, topic: str, envelopes: Sequence[OnexEnvelopeV1]) -> None:
        producer = self._producer
        if self._each:
            send = producer.send

            async def publish(envelope: OnexEnvelopeV1) -> None:
                # Encoded in the call, as a per-message publisher does: encoding every argument first (in the
                # gather's generator) would do all the encoding in one hot loop, about 5 µs a message cheaper here
                # than interleaved with the sends, which is a difference of the benchmark, not of the library.
                # send_and_wait's own body, inlined: the bus's publish has no coroutine more than this either.
                ack = await send(topic, envelope.to_json(), key=envelope.kafka_key(), headers=binary_headers(envelope))
                await ack

            await asyncio.gather(*(publish(envelope) for envelope in envelopes))
            return
        send = producer.send
        acks = [
            await send(topic, envelope.to_json(), key=envelope.kafka_key(), headers=binary_headers(envelope))
            for envelope in envelopes
        ]
        await asyncio.gather(*acks)

    async def publish_one(self, topic: str, envelope: OnexEnvelopeV1) -> None:
        ack = await self._producer.send(
            topic, envelope.to_json(), key=envelope.kafka_key(), headers=binary_headers(envelope)
        )
        self._acks.append(ack)

    async def flush(self) -> None:
        acks, self._acks = self._acks, []
        await asyncio.gather(*acks)


# --- phases --------------------------------------------------------------------------------------------------------


@dataclass
class ThroughputRound:
    path: str
    messages: int
    consumed: int
    seconds: float  # publish start → last handler call and last acknowledgement
    publish_seconds: float  # publish start → last acknowledgement
    client_cpu_s: float
    broker_cpu_s: float | None

    @property
    def complete(self) -> bool:
        return self.consumed == self.messages

    @property
    def rate(self) -> float:
        return self.consumed / self.seconds if self.seconds > 0 else 0.0


async def throughput_round(
    path: BenchPath,
    topic: str,
    envelopes: Sequence[OnexEnvelopeV1],
    phase: str,
    window: int,
    deadline_s: float,
    broker_pid: int | None,
) -> ThroughputRound:
    sink = path.sink
    sink.expect(phase, len(envelopes), latency=False)
    broker_cpu = process_cpu_seconds(broker_pid)
    cpu = time.process_time()
    began = published = time.perf_counter()
    try:
        async with asyncio.timeout(deadline_s):
            for start in range(0, len(envelopes), window):
                await path.publish_window(topic, envelopes[start : start + window])
            published = time.perf_counter()
            await sink.done.wait()
    except TimeoutError:
        print(
            f"  ! {path.name} throughput round {phase} hit its {deadline_s:g} s deadline: "
            f"{sink.count} of {len(envelopes)} handled",
            file=sys.stderr,
        )
        if published == began:
            published = time.perf_counter()
    finished = max(published, sink.finished_at or time.perf_counter())
    broker_after = process_cpu_seconds(broker_pid)
    return ThroughputRound(
        path=path.name,
        messages=len(envelopes),
        consumed=sink.count,
        seconds=finished - began,
        publish_seconds=published - began,
        client_cpu_s=time.process_time() - cpu,
        broker_cpu_s=None if broker_cpu is None or broker_after is None else broker_after - broker_cpu,
    )


def _combined(pieces: Sequence[ThroughputRound]) -> ThroughputRound:
    """The slices of one path in one round, as one round: their sums."""
    broker = [p.broker_cpu_s for p in pieces]
    return ThroughputRound(
        path=pieces[0].path,
        messages=sum(p.messages for p in pieces),
        consumed=sum(p.consumed for p in pieces),
        seconds=sum(p.seconds for p in pieces),
        publish_seconds=sum(p.publish_seconds for p in pieces),
        client_cpu_s=sum(p.client_cpu_s for p in pieces),
        broker_cpu_s=None if any(b is None for b in broker) else sum(b or 0.0 for b in broker),
    )


async def latency_slice(
    path: BenchPath, topic: str, phase: str, rate: float, seconds: float, filler: str, deadline_s: float
) -> list[int]:
    """Publish ``rate`` messages a second for ``seconds``; return the publish → handler latencies (ns)."""
    count = max(1, round(rate * seconds))
    sink = path.sink
    sink.expect(phase, count, latency=True)
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    try:
        async with asyncio.timeout(seconds + deadline_s):
            start = loop.time()
            for seq in range(count):
                delay = start + seq * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await path.publish_one(topic, make_envelope(phase, seq, filler, time.perf_counter_ns()))
            await path.flush()
            await sink.done.wait()
    except TimeoutError:
        print(
            f"  ! {path.name} latency slice {phase} hit its deadline: {sink.count} of {count} handled", file=sys.stderr
        )
    return list(sink.latencies_ns or [])


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    value_bytes: int
    throughput: dict[str, list[ThroughputRound]] = field(
        default_factory=lambda: {"ours": [], "ours-many": [], "raw": [], "raw-each": []}
    )
    orders: list[str] = field(default_factory=list)
    latencies_ns: dict[str, list[int]] = field(default_factory=lambda: {"ours": [], "raw": []})
    round_p99_ms: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "raw": []})
    strays: int = 0
    diagnostics: str = ""


def _ordered(paths: Sequence[BenchPath], number: int) -> list[BenchPath]:
    """The paths for step ``number``: as given when even, reversed when odd, so steps run a b c | c b a | ..."""
    return list(paths) if number % 2 == 0 else list(reversed(paths))


@contextlib.asynccontextmanager
async def started_paths(
    bootstrap: str,
    stage: str,
    tags: Sequence[str],
    fetch_max_wait_ms: int,
    raw_batch_size: int,
    *,
    with_many: bool,
) -> AsyncIterator[tuple[dict[str, BenchPath], dict[str, dict[str, str]]]]:
    """The paths by name (ours, raw; ours-many and raw-each when ``with_many``), each with a topic per tag
    (``topics[path][tag]``) and its group joined: stopped on exit."""
    run_id = uuid.uuid4().hex[:10]
    # Each path next to the one it is compared with, so that the two see the same moment of the machine.
    names = ["ours", "raw-each", "ours-many", "raw"] if with_many else ["ours", "raw"]
    topics = {name: {tag: f"bench.bus.{run_id}.{stage}.{name}.{tag}" for tag in tags} for name in names}
    group = f"bench-{run_id}-{stage}"
    paths: dict[str, BenchPath] = {}
    for name in names:
        args = (bootstrap, list(topics[name].values()), f"{group}-{name}", Sink(), fetch_max_wait_ms)
        if name.startswith("raw"):
            paths[name] = RawPath(*args, max_batch_size=raw_batch_size, each=name == "raw-each")
        else:
            paths[name] = OursPath(*args, many=name == "ours-many")
    async with contextlib.AsyncExitStack() as stack:
        for path in paths.values():
            stack.push_async_callback(_stop_bounded, path)
        # The groups join at once (Tansu takes ~3 s per join, whatever is asked); none of it is timed. A failing
        # start cancels the others before all are stopped.
        async with asyncio.TaskGroup() as group_starts:
            for path in paths.values():
                group_starts.create_task(path.start())
        yield paths, topics


async def run(args: argparse.Namespace, broker: KafkaBroker) -> Results:
    filler = ("0123456789abcdef" * (args.payload_bytes // 16 + 1))[: args.payload_bytes]
    deadline_s = args.deadline
    results = Results(value_bytes=len(make_envelope("x", 0, filler, time.perf_counter_ns()).to_json()))

    tags = ["warm", *(f"tp{n}" for n in range(args.rounds))]
    if args.profile:
        tags += ["profile"]
    async with started_paths(
        broker.bootstrap_servers, "tp", tags, DEFAULT_FETCH_MAX_WAIT_MS, args.raw_batch_size, with_many=True
    ) as (by_name, topics):
        paths: list[BenchPath] = list(by_name.values())
        # Warm-up: connections, metadata, fetch positions, first commits, code paths. Not recorded.
        for path in paths:
            envelopes = [make_envelope(f"warm-{path.name}", seq, filler) for seq in range(WARMUP_MESSAGES)]
            await throughput_round(
                path, topics[path.name]["warm"], envelopes, f"warm-{path.name}", args.window, deadline_s, None
            )
        settle_gc()  # as `onex up` / `onex run` do once started; one process, so every path sees the same policy
        per_slice = max(1, args.messages // args.slices)
        for number in range(args.rounds):
            results.orders.append(" → ".join(path.name for path in _ordered(paths, number)) + " ...")
            timed: dict[str, list[ThroughputRound]] = {path.name: [] for path in paths}
            for piece in range(args.slices):
                for path in _ordered(paths, number + piece):
                    phase = f"tp{number}.{piece}-{path.name}"
                    envelopes = [make_envelope(phase, seq, filler) for seq in range(per_slice)]
                    topic = topics[path.name][f"tp{number}"]  # the slices of a round grow one topic, as one run did
                    timed[path.name].append(
                        await throughput_round(path, topic, envelopes, phase, args.window, deadline_s, broker.pid)
                    )
            for name, pieces in timed.items():
                results.throughput[name].append(_combined(pieces))
        if args.profile:
            results.diagnostics = await diagnose(paths, topics, args, filler, deadline_s)
        results.strays += sum(path.sink.strays for path in paths)

    tags = ["warm", *(f"lat{n}" for n in range(args.rounds))]
    async with started_paths(
        broker.bootstrap_servers, "lat", tags, args.fetch_max_wait_ms, args.raw_batch_size, with_many=False
    ) as (by_name, topics):
        paths = list(by_name.values())
        for path in paths:
            await latency_slice(
                path, topics[path.name]["warm"], f"warm-{path.name}", args.rate, WARMUP_LATENCY_S, filler, deadline_s
            )
        slices = max(1, round(args.latency_seconds / SLICE_S))
        for number in range(args.rounds):
            samples: dict[str, list[int]] = {path.name: [] for path in paths}
            for piece in range(slices):
                # a b | b a | a b ...: the order flips each slice, so neither path always follows the other.
                for path in _ordered(paths, number * slices + piece):
                    samples[path.name] += await latency_slice(
                        path,
                        topics[path.name][f"lat{number}"],
                        f"lat{number}.{piece}-{path.name}",
                        args.rate,
                        args.latency_seconds / slices,
                        filler,
                        deadline_s,
                    )
            for name, values in samples.items():
                results.latencies_ns[name] += values
                if values:
                    results.round_p99_ms[name].append(percentile(sorted(values), 99) / 1e6)
        results.strays += sum(path.sink.strays for path in paths)
    return results


async def _stop_bounded(path: BenchPath) -> None:
    try:
        await asyncio.wait_for(path.stop(), STOP_TIMEOUT_S)
    except TimeoutError:
        print(f"  ! {path.name} did not stop within {STOP_TIMEOUT_S:g} s", file=sys.stderr)


async def diagnose(
    paths: Sequence[BenchPath],
    topics: dict[str, dict[str, str]],
    args: argparse.Namespace,
    filler: str,
    deadline_s: float,
) -> str:
    """``--profile``: one more throughput round of each path under cProfile."""
    out = io.StringIO()
    for path in paths:
        phase = f"profile-{path.name}"
        envelopes = [make_envelope(phase, seq, filler) for seq in range(args.messages)]
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            result = await throughput_round(
                path, topics[path.name]["profile"], envelopes, phase, args.window, deadline_s, None
            )
        finally:
            profiler.disable()
        print(
            f"\n=== cProfile of a {path.name} throughput round: {args.messages:,} messages, "
            f"{result.rate:,.0f} msgs/s under the profiler (everything this process ran meanwhile) ===",
            file=out,
        )
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(r"framework", args.profile_lines)
    return out.getvalue()


# --- the report ----------------------------------------------------------------------------------------------------


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def report(
    args: argparse.Namespace, broker: KafkaBroker, results: Results, wall_s: float, machine: list[tuple[str, str]]
) -> None:
    print("OmniNode Bridge: KafkaEventBus vs raw aiokafka (publish → consume → handler, one process, loopback)")
    fetch_wait = f"fetch_max_wait_ms {DEFAULT_FETCH_MAX_WAIT_MS} (the bus's default)"
    if args.fetch_max_wait_ms != DEFAULT_FETCH_MAX_WAIT_MS:
        fetch_wait += f" for throughput, {args.fetch_max_wait_ms} for latency (the bus's fetch_max_wait_ms parameter)"
    batch = f"max_batch_size {DEFAULT_MAX_BATCH_SIZE:,} B (the bus's default)"
    if args.raw_batch_size != DEFAULT_MAX_BATCH_SIZE:
        batch = f"max_batch_size ours {DEFAULT_MAX_BATCH_SIZE:,} B (the bus's default), raw {args.raw_batch_size:,} B"
    facts = [
        *machine,
        ("aiokafka", f"{aiokafka.__version__}; pydantic {version_of('pydantic')}"),
        ("broker", broker.description),
        (
            "workload",
            f"{args.messages:,} msgs per throughput round, payload {args.payload_bytes:,} B "
            f"(value {results.value_bytes:,} B + 7 CloudEvents headers), {KEYS} keys, {PARTITIONS} partitions, "
            "a fresh topic per phase",
        ),
        (
            "clients (both paths)",
            f"producer acks=all, linger {LINGER_MS} ms, {batch}, no idempotence, {args.window} publishes per "
            "window; "
            f"consumer max_poll_records {MAX_POLL_RECORDS}, {fetch_wait}",
        ),
        (
            "fairness",
            "raw does the same per-message work: to_json, kafka_key, CloudEvents headers on publish; "
            "OnexEnvelopeV1.from_json on consume, then the same handler function; one commit per batch",
        ),
        ("timing", "clocks start after the consumers are assigned and warmed up (group join excluded)"),
    ]
    for name, value in facts:
        print(f"  {name:<22} {value}")

    names = ("ours", "raw-each", "ours-many", "raw")
    runs = results.throughput
    # (numerator, denominator): each pattern against raw aiokafka's same pattern, then the cross comparison.
    pairs = (("ours", "raw-each"), ("ours-many", "raw"), ("ours", "raw"))
    rows: list[list[object]] = []
    for number in range(len(runs["ours"])):
        rounds = [runs[name][number] for name in names]
        rows.append(
            [
                number + 1,
                results.orders[number],
                *(f"{t.rate:,.0f}" + ("" if t.complete else " (incomplete)") for t in rounds),
                *(_share(runs[a][number].rate, runs[b][number].rate) for a, b in pairs),
                " / ".join(f"{t.messages / t.publish_seconds:,.0f}" for t in rounds),
                " / ".join(f"{t.client_cpu_s / t.messages * 1e6:.0f}" for t in rounds),
                _broker_cpu(*rounds),
            ]
        )
    medians = {name: statistics.median(t.rate for t in runs[name]) for name in names}
    # A round's paths ran in alternating slices, so each round's ratio compares like with like: the ratio reported
    # (and held to the goal) is the median of the rounds' ratios, not a ratio of medians taken from different rounds.
    ratios = {
        (a, b): statistics.median(x.rate / y.rate if y.rate else 0.0 for x, y in zip(runs[a], runs[b], strict=True))
        for a, b in pairs
    }
    rows.append(
        ["median", "", *(f"{medians[name]:,.0f}" for name in names), *(f"{ratios[p]:.0%}" for p in pairs), "", "", ""]
    )
    rows.append(["min-max", "", *(spread([t.rate for t in runs[name]]) for name in names), "", "", "", "", "", ""])
    print(
        f"\nThroughput, msgs/s end to end ({args.rounds} rounds of {args.slices} slices per path, the order of the "
        "paths reversed from one slice to the next)"
    )
    headers = [
        "round",
        "order",
        *names,
        "ours/raw-each",
        "many/raw",
        "ours/raw",
        "acked/s " + " / ".join(names),
        "client µs CPU/msg",
        "broker µs CPU/msg",
    ]
    print(table(headers, rows, left=2))

    print(
        f"\nLatency publish → handler, ms ({args.rate:g} msg/s, one per tick, {args.latency_seconds:g} s per path "
        f"and round in {SLICE_S:g} s slices alternating between the paths, {args.rounds} rounds)"
    )
    lat_rows: list[list[object]] = []
    p99: dict[str, float] = {}
    for name in ("ours", "raw"):
        samples = sorted(results.latencies_ns[name])
        if not samples:
            lat_rows.append([name, 0, "-", "-", "-", "-", "-"])
            continue
        p99[name] = percentile(samples, 99)
        lat_rows.append(
            [
                name,
                f"{len(samples):,}",
                _ms(percentile(samples, 50)),
                _ms(percentile(samples, 90)),
                _ms(p99[name]),
                _ms(samples[-1]),
                " / ".join(f"{value:.2f}" for value in results.round_p99_ms[name]),
            ]
        )
    print(table(["path", "samples", "p50", "p90", "p99", "max", "p99 per round"], lat_rows))
    overhead_ms = (p99["ours"] - p99["raw"]) / 1e6 if len(p99) == 2 else float("nan")
    round_overheads = [o - r for o, r in zip(results.round_p99_ms["ours"], results.round_p99_ms["raw"], strict=False)]

    def ratio_row(metric: str, a: str, b: str, goal: bool) -> list[str]:
        value = ratios[(a, b)]
        met = all(t.complete for t in runs[a] + runs[b]) and value >= THROUGHPUT_GOAL
        each = ", ".join(_share(x.rate, y.rate) for x, y in zip(runs[a], runs[b], strict=True))
        return [
            metric,
            f">= {THROUGHPUT_GOAL:.0%}" if goal else "-",
            f"{value:.0%}, median of the rounds ({each})",
            ("yes" if met else "NO") if goal else "not a goal: different patterns",
        ]

    latency_met = len(p99) == 2 and overhead_ms < P99_OVERHEAD_GOAL_MS
    # When the rounds disagree by more than the goal, background load decides the verdict, not the bus.
    noisy = len(round_overheads) > 1 and max(round_overheads) - min(round_overheads) > P99_OVERHEAD_GOAL_MS
    print("\nGoals (issue 3)")
    goal_rows = [
        ratio_row("throughput, per-message publish: ours / raw-each", "ours", "raw-each", goal=True),
        ratio_row("throughput, batched: ours-many / raw", "ours-many", "raw", goal=True),
        ratio_row("per-message ours / batched raw", "ours", "raw", goal=False),
        [
            "p99 latency overhead ours - raw",
            f"< {P99_OVERHEAD_GOAL_MS:g} ms",
            f"{overhead_ms:+.2f} ms (rounds {', '.join(f'{value:+.2f}' for value in round_overheads)})",
            ("yes" if latency_met else "NO")
            + (" (inconclusive: rounds differ by more than the goal)" if noisy else ""),
        ],
    ]
    print(table(["metric", "goal", "measured", "met"], goal_rows, left=4))
    notes = [f"wall time {wall_s:.1f} s", f"load average at end {_load()}"]
    if results.strays:
        notes.append(f"{results.strays} redelivered messages from earlier phases were seen and ignored")
    print("\n" + "; ".join(notes))
    if results.diagnostics:
        print(results.diagnostics)


def _share(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.0%}" if denominator else "-"


def _broker_cpu(*rounds: ThroughputRound) -> str:
    if any(t.broker_cpu_s is None for t in rounds):
        return "n/a"
    return " / ".join(f"{(t.broker_cpu_s or 0.0) / t.messages * 1e6:.0f}" for t in rounds)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=_positive(int), default=20_000, help="messages per path and round")
    parser.add_argument(
        "--slices", type=_positive(int), default=4, help="throughput: slices per round, alternating the paths"
    )
    parser.add_argument("--payload-bytes", type=_positive(int), default=1024, help="size of the payload's filler")
    parser.add_argument("--rounds", type=_positive(int), default=3, help="rounds of each phase, per path")
    parser.add_argument("--window", type=_positive(int), default=500, help="publishes in flight per window")
    parser.add_argument("--rate", type=_positive(float), default=500.0, help="latency phase: messages per second")
    parser.add_argument("--latency-seconds", type=_positive(float), default=4.0, help="latency: per path and round")
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=_positive(int),
        default=DEFAULT_FETCH_MAX_WAIT_MS,
        help=f"latency phase: fetch_max_wait_ms of both consumers (default: the bus's, {DEFAULT_FETCH_MAX_WAIT_MS})",
    )
    parser.add_argument(
        "--raw-batch-size",
        type=_positive(int),
        default=DEFAULT_MAX_BATCH_SIZE,
        help=f"max_batch_size of raw aiokafka's producer (default: the bus's, {DEFAULT_MAX_BATCH_SIZE}; "
        "aiokafka's own is 16384)",
    )
    parser.add_argument("--deadline", type=_positive(float), default=120.0, help="seconds allowed per round")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, one cProfiled throughput round per path, and raw publishing the way the bus does",
    )
    parser.add_argument("--profile-lines", type=_positive(int), default=30, help="lines per cProfile listing")
    return parser.parse_args(argv)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    machine = machine_facts()  # now, so that the load average is the one the run started with
    began = time.perf_counter()
    async with kafka_broker() as broker:
        results = await run(args, broker)
    report(args, broker, results, time.perf_counter() - began, machine)


if __name__ == "__main__":
    asyncio.run(main())
