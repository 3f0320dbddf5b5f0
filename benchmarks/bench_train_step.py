"""Where a GRPO step's time goes on CPU: generation / reward / update, as fractions of the step.

Runs the real ``TRLTrainer`` (TRL's GRPOTrainer, the offline SmolLM2-135M policy, the real retrieval
reward) for a few steps and reads the per-step split that training logs to ``metrics.jsonl``
(``time/generation``, ``time/reward``, ``time/update`` = forward and backward of the loss) plus the wall
time of each whole step (optimizer step and bookkeeping included), taken by a callback. Step 1 pays
one-off warm-ups and is reported apart; the fractions are medians over the later steps.

    .venv/bin/python benchmarks/bench_train_step.py     # writes benchmarks/results/bench_train_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, add_threads_flag, apply_threads, write_result


def wall_clock_callback() -> Any:
    from transformers import TrainerCallback

    class WallClock(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.steps: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.steps.append(time.perf_counter() - self.started)

    return WallClock()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--batch_size", type=int, default=8, help="completions per step")
    parser.add_argument("--num_generations", type=int, default=4)
    parser.add_argument("--mini_batch_size", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--retrieval", default="local", choices=["local", "ray"])
    add_threads_flag(parser)
    parser.add_argument("--out", default="bench_train_step")
    args = parser.parse_args(argv)

    apply_threads(args.torch_threads)

    from rl4rec.training.config import parse_train_args
    from rl4rec.training.trainer import TRLTrainer

    with tempfile.TemporaryDirectory(prefix="rl4rec-bench-train-") as tmp:
        flags = [
            "--algorithm", "grpo", "--dataset_name", args.dataset, "--data_dir", args.data_dir, "--device", "cpu",
            "--batch_size", str(args.batch_size), "--num_generations", str(args.num_generations),
            "--mini_batch_size", str(args.mini_batch_size), "--ppo_epochs", "1",
            "--max_new_tokens", str(args.max_new_tokens), "--max_length", "256", "--k", "1000",
            "--max_steps", str(args.steps), "--save_steps", "100000", "--checkpoint_dir", str(Path(tmp) / "run"),
            "--log_with", "none", "--temperature", "0.9", "--seed", "0", "--train_users", "64",
            "--retrieval", args.retrieval,
        ]  # fmt: skip
        clock = wall_clock_callback()
        t0 = time.perf_counter()
        result = TRLTrainer(parse_train_args(flags), callbacks=[clock]).train()
        total = time.perf_counter() - t0
        records = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    parts = ("generation", "reward", "update")
    steps = []
    for record, wall in zip(records, clock.steps, strict=True):
        split = {p: record[f"time/{p}"] for p in parts}
        steps.append({"step": record["step"], "wall_s": wall, **{f"{p}_s": v for p, v in split.items()},
                      "other_s": max(wall - sum(split.values()), 0.0),
                      "completion_length": record.get("completion_length"), "reward": record.get("reward")})  # fmt: skip
    later = steps[1:] or steps
    fractions = {p: statistics.median(s[f"{p}_s"] / s["wall_s"] for s in later) for p in (*parts, "other")}
    payload = {
        "config": {
            **vars(args),
            "policy": "smollm2-135m-instruct",
            "algorithm": "grpo",
            "reward": "ndcg@1000",
        },
        "steps": steps,
        "median_step_s": statistics.median(s["wall_s"] for s in later),
        "fraction_of_step": fractions,
        "first_step_s": steps[0]["wall_s"],
        "run_total_s": total,
        "note": "fractions are medians over steps 2..N (step 1 includes warm-ups); update = forward+backward of "
        "the GRPO loss; other = optimizer step, logging and data loading",
    }
    print(json.dumps({"median_step_s": payload["median_step_s"], "fraction_of_step": fractions}, indent=1))
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
