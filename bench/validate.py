"""How long validation takes: 200 generated contracts validated as a set, and one contract loaded for running.

Run with ``.venv/bin/python -m bench.validate``. The contracts are generated into a temporary directory: all five
node kinds, models of different sizes, FSMs inline and through ``$ref`` (some with a ``#/pointer``), event catalogs
chaining every node to the next, workflows, aggregations and retry policies. The baseline, measured in the same run,
is parsing the same files with PyYAML's C loader and nothing else.

Goal (ARCHITECTURE, issue 2): under 1 s for the 200 contracts on a 2-core machine, as a first run in a fresh
process, which is what ``onex validate`` does in CI. So the headline is measured in fresh subprocesses (the median
of a few, as this machine is shared); best of 5 in one process is printed beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import framework
from framework.contract.validate import load_contract, validate_paths

COUNT = 200
GOAL_S = 1.0
FRESH_RUNS = 3

#: Run in a fresh interpreter: imports only what ``onex validate`` needs, then times one call. argv: mode, path.
CHILD = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path
from framework.contract.validate import load_contract, validate_paths
imported = time.perf_counter()
if sys.argv[1] == "validate":
    report = validate_paths([Path(sys.argv[2])])
    assert report.files > 0 and not report.findings, [f.format() for f in report.findings[:5]]
else:
    load_contract(sys.argv[2])
done = time.perf_counter()
print(json.dumps({"import": imported - start, "run": done - imported}))
"""

KINDS = ["COMPUTE", "EFFECT", "REDUCER", "ORCHESTRATOR", "REGISTRY"]

SHARED = {
    "fsm/pipeline.yaml": {
        "kind": "fsm",
        "state_machine_name": "pipeline",
        "initial_state": "pending",
        "states": [
            {"name": "pending"},
            {"name": "running", "on_entry": [{"set": {"attempts": "attempts + 1"}}]},
            {"name": "done", "terminal": True},
            {"name": "failed", "terminal": True},
        ],
        "transitions": [
            {"name": "start", "from": "pending", "to": "running", "trigger": "start"},
            {"name": "finish", "from": "running", "to": "done", "trigger": "finish", "guard": "done_steps == total"},
            {"name": "fail", "from": ["pending", "running"], "to": "failed", "trigger": "fail"},
        ],
    },
    "retry/policies.yaml": {
        "kind": "retry",
        "max_attempts": 3,
        "backoff": {"initial_ms": 100, "multiplier": 2.0, "max_ms": 5000, "jitter": 0.1},
        "dead_letter": True,
    },
    "aggregation/totals.yaml": {
        "kind": "aggregation",
        "aggregation_name": "totals",
        "strategies": [
            {"type": "NAMESPACE_GROUPING", "group_by": "namespace"},
            {"type": "TIME_WINDOW", "group_by": "namespace", "window_ms": 60000},
            {"type": "SIZE_BUCKETS", "group_by": "size", "buckets": [1024, 65536, 1048576]},
        ],
    },
    "events/common.yaml": {
        "kind": "events",
        "catalog_name": "common",
        "models": {
            "Heartbeat": {
                "type": "object",
                "required": ["node_id", "health"],
                "properties": {
                    "node_id": {"type": "string"},
                    "health": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                    "uptime_s": {"type": "number", "minimum": 0},
                },
            }
        },
        "events": [{"name": "node-heartbeat", "payload_model": "Heartbeat", "external_consumers": True}],
    },
}


def payload_model(i: int, fields: int) -> dict[str, Any]:
    types = ["string", "integer", "number", "boolean"]
    props: dict[str, Any] = {f"field_{i}_{j}": {"type": types[(i + j) % 4]} for j in range(fields)}
    props["id"] = {"type": "string", "format": "uuid"}
    props["tags"] = {"type": "array", "items": {"type": "string", "maxLength": 64}}
    return {"type": "object", "required": ["id"], "properties": props}


def inline_fsm(i: int) -> dict[str, Any]:
    steps = 3 + i % 5
    names = [f"step_{k}" for k in range(steps)]
    states: list[dict[str, Any]] = [{"name": n} for n in names] + [{"name": "finished", "terminal": True}]
    transitions: list[dict[str, Any]] = [
        {"name": f"advance_{k}", "from": names[k], "to": names[k + 1], "trigger": "next", "guard": f"progress >= {k}"}
        for k in range(steps - 1)
    ]
    transitions.append(
        {
            "name": "finish",
            "from": names[-1],
            "to": "finished",
            "trigger": "next",
            "actions": [{"emit": f"node-{i}-done", "payload": {"id": "id"}}],
        }
    )
    transitions.append({"name": "abort", "from": names[:-1], "to": "finished", "trigger": "abort"})
    return {"state_machine_name": f"flow_{i}", "initial_state": names[0], "states": states, "transitions": transitions}


def contract(i: int) -> dict[str, Any]:
    kind = KINDS[i % len(KINDS)]
    done, previous = f"node-{i}-done", f"node-{i - 1}-done" if i else "kickoff"
    catalog = {
        "catalog_name": f"node_{i}",
        "models": {f"Done{i}": payload_model(i, 2 + i % 9), f"Input{i}": payload_model(i + 1, 1 + i % 4)},
        "events": [
            {"name": done, "payload_model": f"Done{i}", "partition_key": "id", "external_consumers": i == COUNT - 1},
            {"name": previous, "payload_model": f"Input{i}", "class": "cmd", "external_producers": i == 0},
        ],
    }
    subcontracts: dict[str, Any] = {
        "events": [catalog, {"$ref": "../shared/events/common.yaml"}],
        "retry": {"$ref": "../shared/retry/policies.yaml"} if i % 2 else {"max_attempts": 1 + i % 5},
    }
    publishes = [done, "node-heartbeat"]
    body: dict[str, Any] = {}
    if i % 3 == 0:
        subcontracts["fsm"] = inline_fsm(i)
    elif i % 3 == 1:
        subcontracts["fsm"] = {"$ref": "../shared/fsm/pipeline.yaml"}
    if kind == "EFFECT":
        body["effects"] = [
            {"name": "save", "adapter": "postgres", "table": f"table_{i}", "operation": "upsert", "key": ["id"]},
            {"name": "announce", "adapter": "kafka", "event": done},
            {"name": "fingerprint", "adapter": "blake3"},
            {"name": "notify", "adapter": "http", "url": "${HOOK_URL}/done", "method": "POST"},
        ]
    elif kind == "REDUCER":
        subcontracts["aggregation"] = {"$ref": "../shared/aggregation/totals.yaml"}
        subcontracts["state"] = {"table": f"totals_{i}", "key": ["namespace", "group_key"]}
    elif kind == "ORCHESTRATOR":
        subcontracts["workflow"] = {
            "workflow_name": f"workflow_{i}",
            "steps": [
                {"name": "validate", "target": {"handler": "validate"}, "timeout_ms": 100},
                {
                    "name": "work",
                    "target": {"node": f"node_{i - 1}", "handler": "handle"},
                    "retry": {"$ref": "../shared/retry/policies.yaml"},
                },
                {
                    "name": "enrich",
                    "target": {"http": "${ENRICH_URL}/x"},
                    "required": False,
                    "when": "enrich",
                    "parallel_group": "side",
                },
                {"name": "audit", "target": {"handler": "audit"}, "parallel_group": "side"},
            ],
        }
    return {
        "contract_version": "1.0",
        "name": f"node_{i}",
        "version": {"major": 1, "minor": i % 7, "patch": i % 3},
        "node_type": kind,
        "description": f"Generated node {i} of {COUNT}.",
        "models": {f"Request{i}": payload_model(i + 2, 3 + i % 6), f"Result{i}": payload_model(i + 3, 2)},
        "input_model": f"Request{i}",
        "output_model": f"Result{i}",
        "subscriptions": [{"event": previous, "handler": "on_previous"}],
        "publishes": publishes,
        **body,
        "subcontracts": subcontracts,
    }


def generate(root: Path) -> list[Path]:
    for name, data in SHARED.items():
        path = root / "shared" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    paths = []
    (root / "contracts").mkdir()
    for i in range(COUNT):
        path = root / "contracts" / f"node_{i:03d}.yaml"
        path.write_text(yaml.safe_dump(contract(i), sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of ``runs`` calls, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fresh(mode: str, path: Path) -> dict[str, float]:
    """One call in a new interpreter: its import time, the call's time, and the whole process's wall time. The child
    imports the same ``framework`` as this process, not one that happens to be in the working directory."""
    source = str(Path(framework.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-c", CHILD, mode, str(path)]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=path.parent, env=env)
    times: dict[str, float] = json.loads(out.stdout)
    times["process"] = time.perf_counter() - start
    return times


def median_of(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="onex-bench-") as tmp:
        root = Path(tmp)
        paths = generate(root)
        contracts_dir = root / "contracts"

        report = validate_paths([contracts_dir])
        if report.files != COUNT or report.findings:
            for finding in report.findings[:20]:
                print(finding.format())
            print(f"generated contracts are not clean: {report.files} files, {len(report.findings)} findings")
            return 1

        first = [fresh("validate", contracts_dir) for _ in range(FRESH_RUNS)]
        best = best_of(5, lambda: validate_paths([contracts_dir]))
        baseline = best_of(5, lambda: [yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader) for p in paths])

        one = paths[1]  # an EFFECT node with $refs
        first_load = [fresh("load", one) for _ in range(FRESH_RUNS)]
        load_contract(one)
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            load_contract(one)
            samples.append(time.perf_counter() - start)
        median = statistics.median(samples)

    def verdict(seconds: float) -> str:
        return f"goal < {GOAL_S:.0f} s: {'met' if seconds < GOAL_S else 'NOT MET'}"

    cold = median_of(first, "run")
    spread = ", ".join(f"{s['run']:.3f}" for s in first)
    print(f"validate {COUNT} contracts (validate_paths)")
    print(f"  first run in a fresh process, median of {FRESH_RUNS}: {cold:.3f} s ({spread}); {verdict(cold)}")
    print(
        f"    before it, importing the validator: {median_of(first, 'import'):.3f} s; the whole process, interpreter "
        f"start to exit: {median_of(first, 'process'):.3f} s"
    )
    print(f"  best of 5 in one process: {best:.3f} s; {verdict(best)}")
    print(f"  per contract: {cold / COUNT * 1000:.2f} ms (first run), {best / COUNT * 1000:.2f} ms (best)")
    print(
        f"  baseline, PyYAML's C loader alone on the same files: {baseline:.3f} s; validation (best) takes "
        f"{best / baseline:.1f}x as long"
    )
    print(f"load one contract (load_contract): {median * 1000:.2f} ms (median of {len(samples)} in one process)")
    print(
        f"  first in a fresh process, median of {FRESH_RUNS}: {median_of(first_load, 'run') * 1000:.2f} ms, after "
        f"{median_of(first_load, 'import'):.3f} s of imports"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
