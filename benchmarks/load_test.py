"""Load test of the Ray RetrievalService: N client processes, mixed datasets and batch sizes.

Each client process connects to the named actor by itself and calls ``evaluate`` (rewards and ranks)
back to back for a bounded time, cycling through its own fixed requests (real test users of each
dataset, generated-like texts, batch sizes drawn from ``--batch_sizes``). Two phases run against the
same private Ray head, one after the other:

* ``baseline``: the plain actor (``max_concurrency=1``, no request batching): calls queue up;
* ``default``: what ``rl4rec serve`` starts (``max_concurrency=8``, concurrent calls' texts merged
  into shared embedder batches).

Afterwards an in-process ``RetrievalService`` recomputes every request; each served rank must equal
it. Merged batches pad differently, so a vector may differ in its last float bit (~1e-7): a rank may
then differ only where the target's score is that close to another item's. Such cases are counted
as ``float_tie_differences`` (with the score gap shown); ``unexplained_differences`` must be 0.

    .venv/bin/python benchmarks/load_test.py                       # 8 clients, 30 s per phase
    .venv/bin/python benchmarks/load_test.py --clients 3 --duration_s 5 --phases default
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, generated_requests, percentile, private_ray_head, write_result

PHASES = {"baseline": {"max_concurrency": 1, "batch_requests": False},
          "default": {"max_concurrency": 8, "batch_requests": True}}  # fmt: skip
TIE_TOLERANCE = 1e-5


def parse_datasets(values: list[str]) -> dict[str, str]:
    """``name=data_dir`` pairs (``name`` alone: data_dir ``data``)."""
    out = {}
    for value in values:
        name, _, data_dir = value.partition("=")
        out[name] = data_dir or str(REPO / "data")
    return out


def default_datasets() -> list[str]:
    shared = REPO.parent / "shared" / "data"
    beauty = shared if (shared / "beauty").is_dir() else REPO / "data"
    return [f"ml-100k={REPO / 'data'}", f"beauty={beauty}"]


def build_workload(datasets: dict[str, Any], clients: int, per_client: int, sizes: list[int], seed: int):
    workload = []
    for c in range(clients):
        rng = random.Random(seed * 1000 + c)
        requests = []
        for _ in range(per_client):
            name = rng.choice(sorted(datasets))
            requests.append(
                {"dataset": name, **generated_requests(datasets[name], rng.choice(sizes), rng, 50)}
            )
        workload.append(requests)
    return workload


# -- one client process ---------------------------------------------------------------------------------
def worker(config_path: str, out_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    from rl4rec.retrieval.client import RayClient

    client = RayClient(config["name"], address=config["address"], retry_timeout_s=30)
    client.call("ping")
    Path(out_path + ".ready").touch()
    go = Path(config["go_file"])
    deadline = time.monotonic() + 600
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    requests, records = config["requests"], []
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < config["duration_s"]:
        req = requests[i % len(requests)]
        t0 = time.perf_counter()
        try:
            out = client.call(
                "evaluate", req["texts"], req["dataset"], req["targets"], req["histories"], "ndcg", 10
            )
            record = {"rank": out["rank"], "reward": out["reward"], "error": None}
        except Exception as exc:  # every failure is counted, none may stop the run
            record = {"rank": None, "reward": None, "error": f"{type(exc).__name__}: {exc}"[:500]}
        record.update(req=i % len(requests), latency_s=time.perf_counter() - t0, texts=len(req["texts"]))
        records.append(record)
        i += 1
    Path(out_path).write_text(json.dumps({"records": records, "wall_s": time.monotonic() - start}))
    return 0


# -- the parent -----------------------------------------------------------------------------------------
def run_phase(phase: str, address: str, datasets: dict[str, str], workload: list, args: Any, tmp: Path):
    import ray

    from rl4rec.retrieval import ray_service

    name = f"RetrievalServiceLoad-{os.getpid()}-{phase}"
    first, *rest = datasets
    handle = ray_service.start_service([first], datasets[first], name=name, address=address,
                                       num_cpus=args.actor_cpus, **PHASES[phase])  # fmt: skip
    try:
        for other in rest:
            ray.get(handle.add_dataset.remote(other, str(Path(datasets[other]).resolve())))
        for requests in workload:  # warm-up: first calls allocate
            ray.get(
                handle.evaluate.remote(requests[0]["texts"], requests[0]["dataset"], requests[0]["targets"])
            )
        ray.get(handle.reset_timings.remote())
        go = tmp / f"go-{phase}"
        procs, outs = [], []
        for c, requests in enumerate(workload):
            config = tmp / f"{phase}-{c}.json"
            config.write_text(json.dumps({"name": name, "address": address, "go_file": str(go),
                                          "duration_s": args.duration_s, "requests": requests}))  # fmt: skip
            outs.append(tmp / f"{phase}-{c}.out.json")
            cmd = [sys.executable, __file__, "--worker", str(config), str(outs[-1])]
            with open(tmp / f"{phase}-{c}.err", "w") as err:
                procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + 600
        while not all(Path(str(o) + ".ready").exists() for o in outs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"load clients failed to start: see {tmp}/*.err")
            time.sleep(0.1)
        go.touch()
        for p in procs:
            p.wait(timeout=args.duration_s + 600)
        timings = ray.get(handle.get_timings.remote())
        info = ray.get(handle.ping.remote())
    finally:
        ray_service.stop_service(name, address=address)
    results = []
    for c, (p, out) in enumerate(zip(procs, outs, strict=True)):
        if p.returncode != 0 or not out.exists():
            raise RuntimeError(f"load client {c} failed: {(tmp / f'{phase}-{c}.err').read_text()[-2000:]}")
        results.append(json.loads(out.read_text()))
    return results, timings, info


def compare(reference_service: Any, workload: list, results: list) -> dict[str, Any]:
    """Served ranks vs in-process ranks; differences only on float near-ties are reported apart."""
    import numpy as np

    cache: dict[tuple[int, int], dict[str, Any]] = {}
    equal = ties = unexplained = rows = 0
    gaps: list[float] = []
    for c, phase_result in enumerate(results):
        for record in phase_result["records"]:
            if record["error"]:
                continue
            key = (c, record["req"])
            req = workload[c][record["req"]]
            if key not in cache:
                ref = reference_service.evaluate(
                    req["texts"], req["dataset"], req["targets"], req["histories"], "ndcg", 10
                )
                cache[key] = ref
            ref = cache[key]
            for row, (got, want) in enumerate(zip(record["rank"], ref["rank"], strict=True)):
                rows += 1
                if got == want:
                    equal += 1
                    continue
                scores = reference_service.get_scores([req["texts"][row]], req["dataset"])[0]
                target = req["targets"][row]
                masked = {h for h in req["histories"][row] if h != target}
                others = np.array([j for j in range(len(scores)) if j + 1 != target and j + 1 not in masked])
                gap = float(np.sort(np.abs(scores[others] - scores[target - 1]))[abs(got - want) - 1])
                gaps.append(gap)
                if gap <= TIE_TOLERANCE:
                    ties += 1
                else:
                    unexplained += 1
    return {"rows_compared": rows, "rows_equal": equal, "float_tie_differences": ties,
            "unexplained_differences": unexplained, "tie_score_gaps": gaps[:20],
            "unique_requests_checked": len(cache)}  # fmt: skip


def summarise(results: list) -> dict[str, Any]:
    records = [r for res in results for r in res["records"]]
    ok = [r for r in records if not r["error"]]
    latencies = [r["latency_s"] for r in ok]
    wall = max(res["wall_s"] for res in results)
    return {
        "calls": len(records),
        "errors": len(records) - len(ok),
        "error_examples": sorted({r["error"] for r in records if r["error"]})[:5],
        "texts": sum(r["texts"] for r in ok),
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else None,
        "calls_per_s": len(ok) / wall,
        "texts_per_s": sum(r["texts"] for r in ok) / wall,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration_s", type=float, default=30.0, help="calling time per phase")
    parser.add_argument("--datasets", nargs="+", default=default_datasets(), help="name=data_dir ...")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--requests_per_client", type=int, default=12)
    parser.add_argument("--phases", nargs="+", default=["baseline", "default"], choices=sorted(PHASES))
    parser.add_argument("--actor_cpus", type=float, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="load_test")
    parser.add_argument("--results_dir", default=None, help="default: benchmarks/results")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)

    from rl4rec.data import load_dataset
    from rl4rec.retrieval import ray_service
    from rl4rec.retrieval.service import RetrievalService

    datasets = parse_datasets(args.datasets)
    loaded = {name: load_dataset(name, d) for name, d in datasets.items()}
    workload = build_workload(loaded, args.clients, args.requests_per_client, args.batch_sizes, args.seed)
    # The in-process reference is built first: it fills the item-embedding cache with every core, where the
    # actor (num_cpus=1, so one torch thread) would embed a large catalogue at half the speed.
    reference = RetrievalService([], show_progress=False)
    for name, d in datasets.items():
        reference.add_dataset(name, d)
    phases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rl4rec-load-") as tmp, private_ray_head() as address:
        ray_service.connect(address)
        for phase in args.phases:
            results, timings, info = run_phase(phase, address, datasets, workload, args, Path(tmp))
            phases[phase] = {"results": results, "summary": summarise(results),
                             "actor_timings": timings, "actor": info, **PHASES[phase]}  # fmt: skip
            if timings.get("encode_batches"):
                phases[phase]["summary"]["mean_texts_per_encoder_batch"] = (
                    timings["encoded_texts"] / timings["encode_batches"]
                )
            print(f"{phase}: {json.dumps(phases[phase]['summary'])}")
    payload: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration_s, "seed": args.seed,
                               "datasets": sorted(datasets), "batch_sizes": args.batch_sizes,
                               "requests_per_client": args.requests_per_client, "actor_cpus": args.actor_cpus,
                               "phases": {}}  # fmt: skip
    for phase, data in phases.items():
        data["equality"] = compare(reference, workload, data.pop("results"))
        payload["phases"][phase] = data
        print(f"{phase}: {json.dumps(data['equality'])}")
    if {"baseline", "default"} <= set(phases):
        base, new = phases["baseline"]["summary"], phases["default"]["summary"]
        payload["throughput_ratio_default_vs_baseline"] = new["texts_per_s"] / base["texts_per_s"]
        payload["p50_ratio_default_vs_baseline"] = new["p50_ms"] / base["p50_ms"]
    payload["zero_errors"] = all(p["summary"]["errors"] == 0 for p in payload["phases"].values())
    payload["results_equal"] = all(
        p["equality"]["unexplained_differences"] == 0 for p in payload["phases"].values()
    )
    payload["ranks_identical"] = all(
        p["equality"]["rows_equal"] == p["equality"]["rows_compared"] for p in payload["phases"].values()
    )
    write_result(args.out, payload, Path(args.results_dir) if args.results_dir else None)
    return 0 if payload["zero_errors"] and payload["results_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
