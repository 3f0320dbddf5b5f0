"""Users per second of evaluation: the last-item baseline vs the zero-shot LLM, in one run.

Both rank the full catalogue for held-out test users (leave-one-out, history masked) through the same
in-process ``RetrievalService``; they differ in where the query text comes from:

* ``last_item``: the text of the user's last history item (no model);
* ``zero_shot``: the offline SmolLM2-135M-Instruct policy writes a description from the prompt
  (greedy, ``--max_new_tokens``, the prompts ``rl4rec evaluate`` builds), then it is ranked.

Both are the method objects of :mod:`rl4rec.evaluation.methods`, so this times what ``rl4rec evaluate`` runs.

Reports users/s of each, the zero-shot / last-item ratio and how the zero-shot time splits between
generation and retrieval. Hit/NDCG on so few users are printed for orientation only.

    .venv/bin/python benchmarks/bench_eval.py      # writes benchmarks/results/bench_eval.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, add_threads_flag, apply_threads, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--baseline_users", type=int, default=256)
    parser.add_argument("--llm_users", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8, help="prompts generated together")
    parser.add_argument("--seed", type=int, default=0)
    add_threads_flag(parser)
    parser.add_argument("--out", default="bench_eval")
    args = parser.parse_args(argv)

    apply_threads(args.torch_threads)

    from rl4rec.data import leave_one_out, load_dataset
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.methods import LastItemQuery, make_method
    from rl4rec.retrieval.service import RetrievalService
    from rl4rec.statistics import per_user

    def mean_metrics(ranks: list[int]) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in per_user(ranks, [10]).items()}

    data = load_dataset(args.dataset, args.data_dir)
    examples = leave_one_out(data.sequences, "test").examples
    random.Random(args.seed).shuffle(examples)
    service = RetrievalService([args.dataset], args.data_dir, show_progress=False)
    last_item = LastItemQuery(service, data)  # the methods `rl4rec evaluate` runs
    last_item.rank(examples[:1])  # warm-up

    base = examples[: args.baseline_users]
    t0 = time.perf_counter()
    base_ranks, _ = last_item.rank(base)
    base_s = time.perf_counter() - t0

    config = EvalConfig(dataset=args.dataset, data_dir=args.data_dir, method="zero-shot", device="cpu",
                        backend="hf", max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # fmt: skip
    zero_shot = make_method(config, data, service)
    settings = zero_shot.generator.settings
    llm = examples[: args.llm_users]
    zero_shot.queries(llm[:1])  # warm-up
    t0 = time.perf_counter()
    generated = zero_shot.queries(llm)  # split the method's rank() to time generation and retrieval
    t1 = time.perf_counter()
    llm_ranks = service.rank(
        generated, args.dataset, [ex.target for ex in llm], [list(ex.history) for ex in llm]
    )
    t2 = time.perf_counter()

    base_rate, llm_rate = len(base) / base_s, len(llm) / (t2 - t0)
    payload = {
        "dataset": args.dataset,
        "n_items": data.n_items,
        "protocol": "leave-one-out test target, full catalogue, history masked, pessimistic ties",
        "generation": {
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "decoding": "greedy",
            "cache_implementation": settings.cache_implementation,
        },
        "last_item": {
            "users": len(base),
            "seconds": base_s,
            "users_per_s": base_rate,
            "metrics": mean_metrics(base_ranks),
        },
        "zero_shot": {
            "users": len(llm),
            "seconds": t2 - t0,
            "users_per_s": llm_rate,
            "generation_s": t1 - t0,
            "retrieval_s": t2 - t1,
            "generation_fraction": (t1 - t0) / (t2 - t0),
            "metrics": mean_metrics(llm_ranks),
            "example": generated[0],
        },
        "zero_shot_vs_last_item_speed": llm_rate / base_rate,
        "seed": args.seed,
    }
    print(f"last-item {base_rate:.1f} users/s; zero-shot {llm_rate:.2f} users/s "
          f"(x{llm_rate / base_rate:.4f}); generation {100 * payload['zero_shot']['generation_fraction']:.1f} %")  # fmt: skip
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
