"""Reward throughput on Amazon Beauty (12,101 items): where the time of one reward call goes.

For batches of 8, 64 and 256 generated-like texts (the text of the user's last history item, with
words dropped and an intro added: what a policy that copies the history writes), this measures in
one process:

* the in-process ``RetrievalService.evaluate`` (rewards/s, split into embedding / scoring / ranking);
* the same call through the named Ray actor (overhead per call = Ray time - in-process time for the
  same batch, and Ray time - the actor's own compute time);
* a naive baseline: a Python loop over the texts that embeds each text alone and fully sorts the
  catalogue (``argsort`` per row), and a naive ranking of the service's own score rows (full sort per
  row) whose ranks must equal the service's.

Targets (issue 3): scoring + ranking < 5 % of the reward time; Ray overhead < 5 ms per call.

    .venv/bin/python benchmarks/bench_reward.py            # writes benchmarks/results/bench_reward.json
    .venv/bin/python benchmarks/bench_reward.py --no_ray --reps 2 --batch_sizes 8 64
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    REPO,
    add_threads_flag,
    apply_threads,
    generated_requests,
    private_ray_head,
    summary,
    timed,
    write_result,
)


def default_data_dir() -> str:
    shared = REPO.parent / "shared" / "data"
    return str(shared if (shared / "beauty").is_dir() else REPO / "data")


def make_batches(dataset: Any, sizes: list[int], reps: int, seed: int) -> dict[int, list[dict[str, Any]]]:
    """Real test users (target = last item, history masked) with generated-like texts."""
    rng = random.Random(seed)
    return {size: [generated_requests(dataset, size, rng) for _ in range(reps)] for size in sizes}


def naive_rank_rows(scores: np.ndarray, targets: list[int], histories: list[list[int]]) -> list[int]:
    """The baseline the service replaces: mask the history, sort the whole catalogue, find the target.

    Same tie rule as the service (pessimistic: an item tied with the target ranks above it): after the
    full sort, the rank is the number of items scoring at least the target's score.
    """
    ranks = []
    for row, target, history in zip(scores, targets, histories, strict=True):
        s = row.astype(np.float64).copy()
        s[[h - 1 for h in history if h != target]] = -np.inf
        descending = -np.sort(-s)  # the full sort of the catalogue
        ranks.append(int(np.searchsorted(-descending, -s[target - 1], side="right")))
    return ranks


def naive_full(service: Any, index: Any, batch: dict[str, Any]) -> list[int]:
    """Per-text loop: embed one text, score it against every item, full sort."""
    items = index.embeddings.cpu().numpy()
    ranks = []
    for text, target, history in zip(batch["texts"], batch["targets"], batch["histories"], strict=True):
        q = service.embedder.encode_queries([text]).cpu().numpy()[0]
        ranks += naive_rank_rows((items @ q)[None, :], [target], [history])
    return ranks


def exact_ties(scores: np.ndarray, targets: list[int], histories: list[list[int]]) -> int:
    """Rows whose target score is exactly tied with another unmasked item (rank depends on tie rule)."""
    count = 0
    for row, target, history in zip(scores, targets, histories, strict=True):
        hist = {h for h in history if h != target}
        tied = [j + 1 for j in np.nonzero(row == row[target - 1])[0] if j + 1 != target and j + 1 not in hist]
        count += bool(tied)
    return count


def evaluate_call(call: Any, batch: dict[str, Any]) -> dict[str, Any]:
    return call("evaluate", batch["texts"], "beauty", batch["targets"], batch["histories"], "ndcg", 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", default=default_data_dir())
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--texts_per_size", type=int, default=512, help="texts timed per batch size")
    parser.add_argument("--min_reps", type=int, default=5, help="at least this many calls per batch size")
    parser.add_argument(
        "--naive_max_texts", type=int, default=32, help="texts of the slow naive loop per size"
    )
    parser.add_argument("--no_ray", action="store_true", help="skip the Ray actor part")
    add_threads_flag(
        parser,
        default=None,
        help="torch threads here and CPUs (= threads) of the actor (default: torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_reward")
    args = parser.parse_args(argv)

    import torch

    from rl4rec.data import load_dataset
    from rl4rec.retrieval.client import LocalClient
    from rl4rec.retrieval.service import RetrievalService

    apply_threads(args.torch_threads)
    dataset = load_dataset("beauty", args.data_dir)
    service = RetrievalService(["beauty"], args.data_dir, show_progress=False)
    index = service._index("beauty")
    reps = {b: max(args.min_reps, -(-args.texts_per_size // b)) for b in args.batch_sizes}
    batches = {b: make_batches(dataset, [b], reps[b], args.seed + b)[b] for b in args.batch_sizes}
    local = LocalClient(service)
    evaluate_call(local.call, batches[args.batch_sizes[0]][0])  # warm-up (first-call allocations)

    ray_ctx, ray_client, actor_info = None, None, None
    if not args.no_ray:
        ray_ctx = private_ray_head()
        address = ray_ctx.__enter__()
        from rl4rec.retrieval import ray_service
        from rl4rec.retrieval.client import RayClient

        name = f"RetrievalServiceBench-{os.getpid()}"
        # As many CPUs (hence torch threads) as this process uses, so the comparison is like for like.
        ray_service.start_service(["beauty"], args.data_dir, name=name, address=address,
                                  num_cpus=torch.get_num_threads())  # fmt: skip
        ray_client = RayClient(name, address=address, retry_timeout_s=30)
        actor_info = ray_client.call("ping")
        evaluate_call(ray_client.call, batches[args.batch_sizes[0]][0])
        pings = [timed(lambda: ray_client.call("ping"))[0] for _ in range(50)]

    results: dict[str, Any] = {"batch_sizes": {}}
    try:
        for size in args.batch_sizes:
            rows: dict[str, list[float]] = {
                k: [] for k in ("total", "embed", "score", "rank", "ray", "ray_actor")
            }
            equal_ray = True
            for batch in batches[size]:
                service.reset_timings()
                seconds, local_out = timed(lambda b=batch: evaluate_call(local.call, b))
                t = service.get_timings()
                rows["total"].append(seconds)
                for key in ("embed", "score", "rank"):
                    rows[key].append(t[key])
                if ray_client is not None:
                    before = ray_client.call("get_timings")
                    seconds, ray_out = timed(lambda b=batch: evaluate_call(ray_client.call, b))
                    after = ray_client.call("get_timings")
                    rows["ray"].append(seconds)
                    rows["ray_actor"].append(sum(after[k] - before[k] for k in ("embed", "score", "rank")))
                    equal_ray &= ray_out["rank"] == local_out["rank"]
            # Naive baselines: full sort of every row of the first batches; the per-text loop on a few texts.
            rank_naive_times, rank_equal, ties, checked = [], True, 0, 0
            for batch in batches[size][:3]:
                scores = service.get_scores(batch["texts"], "beauty")
                service.reset_timings()
                ranks = service.rank(batch["texts"], "beauty", batch["targets"], batch["histories"])
                svc_rank_time = service.get_timings()["rank"]
                seconds, naive_ranks = timed(
                    lambda s=scores, b=batch: naive_rank_rows(s, b["targets"], b["histories"])
                )
                rank_naive_times.append(seconds / max(svc_rank_time, 1e-9))
                ties += exact_ties(scores, batch["targets"], batch["histories"])
                rank_equal &= naive_ranks == ranks
                checked += size
            n_naive = min(size, args.naive_max_texts)
            sub = {k: v[:n_naive] for k, v in batches[size][0].items()}
            ranks = service.rank(sub["texts"], "beauty", sub["targets"], sub["histories"])
            naive_seconds, full_ranks = timed(lambda b=sub: naive_full(service, index, b))
            naive_equal = sum(a == b for a, b in zip(full_ranks, ranks, strict=True))
            total = statistics.median(rows["total"])
            entry: dict[str, Any] = {
                "in_process": summary(rows["total"]),
                "rewards_per_s": size / total,
                "split_s": {k: statistics.median(rows[k]) for k in ("embed", "score", "rank")},
                "score_rank_fraction": statistics.median(
                    [(s + r) / t for s, r, t in zip(rows["score"], rows["rank"], rows["total"], strict=True)]
                ),
                "naive_loop": {
                    "texts": n_naive,
                    "seconds": naive_seconds,
                    "rewards_per_s": n_naive / naive_seconds,
                    "speedup_of_service": (size / total) / (n_naive / naive_seconds),
                    "ranks_equal_fraction": naive_equal / n_naive,
                },
                "naive_full_sort_of_service_scores": {
                    "rows_checked": checked,
                    "ranks_equal": rank_equal,
                    "rows_with_exact_ties": ties,
                    "slowdown_vs_vectorised_rank": statistics.median(rank_naive_times),
                },
            }
            entry["target_score_rank_below_5pct"] = entry["score_rank_fraction"] < 0.05
            if ray_client is not None:
                overhead = [r - t for r, t in zip(rows["ray"], rows["total"], strict=True)]
                transport = [r - a for r, a in zip(rows["ray"], rows["ray_actor"], strict=True)]
                entry["ray"] = {
                    **summary(rows["ray"]),
                    "overhead_vs_in_process_ms": 1000 * statistics.median(overhead),
                    "transport_overhead_ms": 1000 * statistics.median(transport),
                    "ranks_equal_to_in_process": equal_ray,
                }
                entry["target_ray_overhead_below_5ms"] = entry["ray"]["transport_overhead_ms"] < 5
            results["batch_sizes"][str(size)] = entry
            print(f"B={size}: {entry['rewards_per_s']:.1f} rewards/s, score+rank "
                  f"{100 * entry['score_rank_fraction']:.2f} %, naive x{entry['naive_loop']['speedup_of_service']:.1f}"
                  + (f", ray overhead {entry['ray']['overhead_vs_in_process_ms']:.1f} ms "
                     f"(transport {entry['ray']['transport_overhead_ms']:.1f} ms)" if ray_client else ""))  # fmt: skip
        if ray_client is not None:
            results["ray_ping_ms"] = {k: 1000 * v for k, v in summary(pings).items() if k != "n"}
            results["ray_actor"] = actor_info
    finally:
        if ray_ctx is not None:
            from rl4rec.retrieval import ray_service

            ray_service.stop_service(f"RetrievalServiceBench-{os.getpid()}", address=address)
            ray_ctx.__exit__(None, None, None)
    results.update(
        dataset={"name": "beauty", "n_items": dataset.n_items, "data_dir": args.data_dir},
        embedder=service.ping()["embedder"],
        in_process_torch_threads=torch.get_num_threads(),
        reps=reps,
        seed=args.seed,
        texts="last history item's text, ~20% of words dropped, random intro (real test users, history masked)",
        reward="ndcg@10",
        finished_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    write_result(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
