"""What each CPU lever does to a GRPO step: generation / reward / update split, same process, real pipeline.

Runs rl4rec's own ``TRLTrainer`` (TRL ``GRPOTrainer``, the offline SmolLM2-135M policy, the retrieval reward)
with the demo's settings (2 users x 4 completions per step, 32 new tokens, prompt budget 256, mini-batch 8,
AUC reward) for a few steps per configuration, one configuration after another in one process, and reads
the per-step split that training logs to ``metrics.jsonl`` (``time/generation``, ``time/reward``,
``time/update``) plus each step's wall time. Step 1 of every run pays warm-ups and is excluded. The
baseline runs first and again last, so drift of the machine's load shows up as the difference of the two.

Levers: ``--bf16 on`` (CPU autocast; see bench_precision.py), LoRA (``--use_peft``), the prompt budget
(``--max_length``), the completion length (``--max_new_tokens``), and reuse of each generated batch: TRL's
``steps_per_generation`` (one generate call for several optimizer steps, patched into the GRPOConfig here since
rl4rec has no flag for it) and ``--ppo_epochs`` (TRL ``num_iterations``: several optimizer steps on the same
completions). With reuse, generation happens every other step, so the per-step *mean* over steps 2..N (one
full cycle) is the number to compare, not the median.

    .venv/bin/python benchmarks/bench_levers.py      # writes benchmarks/results/bench_levers.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import wall_clock_callback
from common import REPO, RESULTS, add_threads_flag, apply_threads, write_result

#: name -> (extra flags, TRL GRPOConfig overrides)
CONFIGS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "baseline": ([], {}),
    "bf16": (["--bf16", "on"], {}),
    "lora": (["--use_peft"], {}),
    "bf16_lora": (["--bf16", "on", "--use_peft"], {}),
    "max_length_128": (["--max_length", "128"], {}),
    "max_new_tokens_16": (["--max_new_tokens", "16"], {}),
    "max_new_tokens_64": (["--max_new_tokens", "64"], {}),
    "steps_per_generation_2": ([], {"steps_per_generation": 2}),
    "ppo_epochs_2": (["--ppo_epochs", "2"], {}),
    "baseline_repeat": ([], {}),
}
PARTS = ("generation", "reward", "update")


@contextlib.contextmanager
def grpo_overrides(overrides: dict[str, Any]) -> Iterator[None]:
    """Pass extra GRPOConfig fields through rl4rec's trl_args (for levers that have no rl4rec flag)."""
    from rl4rec.training import trl_backend

    original = trl_backend.GRPOConfig
    if overrides:
        trl_backend.GRPOConfig = functools.partial(original, **overrides)  # type: ignore[misc]
    try:
        yield
    finally:
        trl_backend.GRPOConfig = original  # type: ignore[misc]


def run_config(name: str, args: Any, tmp: Path) -> dict[str, Any]:
    from rl4rec.training.config import parse_train_args
    from rl4rec.training.trainer import TRLTrainer

    extra, overrides = CONFIGS[name]
    flags = [
        "--algorithm", "grpo", "--dataset_name", args.dataset, "--data_dir", args.data_dir, "--device", "cpu",
        "--reward_type", "auc", "--learning_rate", "1e-5", "--temperature", "0.8",
        "--batch_size", "8", "--num_generations", "4", "--mini_batch_size", "8", "--ppo_epochs", "1",
        "--max_new_tokens", "32", "--max_length", "256", "--bf16", "off",
        "--max_steps", str(args.steps), "--save_steps", "100000", "--checkpoint_dir", str(tmp / name),
        "--log_with", "none", "--seed", str(args.seed), "--train_users", "64", "--log_completions", "0",
        *extra,
    ]  # fmt: skip
    clock = wall_clock_callback()
    t0 = time.perf_counter()
    with grpo_overrides(overrides):
        result = TRLTrainer(parse_train_args(flags), callbacks=[clock]).train()
    total = time.perf_counter() - t0
    records = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    steps = []
    for record, wall in zip(records, clock.steps, strict=True):
        split = {f"{p}_s": record[f"time/{p}"] for p in PARTS}
        steps.append({"step": record["step"], "wall_s": wall, **split,
                      "other_s": max(wall - sum(split.values()), 0.0), "reward": record.get("reward"),
                      "completion_length": record.get("completion_length")})  # fmt: skip
    out: dict[str, Any] = {"steps": steps, "first_step_s": steps[0]["wall_s"], "run_total_s": total}
    later = steps[1:] or steps
    print(f"{name}: mean of steps 2..{len(steps)} {statistics.fmean(s['wall_s'] for s in later):.1f}s "
          f"(generation {statistics.fmean(s['generation_s'] for s in later):.1f}s, "
          f"update {statistics.fmean(s['update_s'] for s in later):.1f}s)", flush=True)  # fmt: skip
    return out


def pooled_stats(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / mean per step over steps 2..N of every round, and the mean split as fractions of the step."""
    later = [s for r in rounds for s in (r["steps"][1:] or r["steps"])]
    out: dict[str, Any] = {"n_steps": len(later)}
    for stat, fn in (("median", statistics.median), ("mean", statistics.fmean)):
        out[stat] = {"step_s": fn(s["wall_s"] for s in later),
                     **{f"{p}_s": fn(s[f"{p}_s"] for s in later) for p in (*PARTS, "other")}}  # fmt: skip
    out["fraction_of_step"] = {p: out["mean"][f"{p}_s"] / out["mean"]["step_s"] for p in (*PARTS, "other")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--steps", type=int, default=3, help="GRPO steps per configuration (step 1 is excluded)"
    )
    parser.add_argument("--seed", type=int, default=0)
    add_threads_flag(parser)
    parser.add_argument("--out", default="bench_levers")
    parser.add_argument("--reverse", action="store_true", help="run --configs in reverse order")
    parser.add_argument(
        "--merge", action="store_true",
        help="add this run as another round to --out's JSON (pooling steps; e.g. a second round with --reverse)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    apply_threads(args.torch_threads)

    started = time.perf_counter()
    runs: dict[str, Any] = {}
    previous = RESULTS / f"{args.out}.json"
    old = json.loads(previous.read_text()) if args.merge and previous.is_file() else {}
    for position, (name, run) in enumerate(old.get("runs", {}).items()):
        rounds = run.get("rounds") or [  # a file written before rounds existed: its run is round 1
            {"command": old.get("command"), "date": old.get("machine", {}).get("date"), "position": position,
             **{k: run[k] for k in ("steps", "first_step_s", "run_total_s")}}
        ]  # fmt: skip
        runs[name] = {
            "flags": run["flags"],
            "grpo_config_overrides": run["grpo_config_overrides"],
            "rounds": rounds,
        }
    previous_rounds = old.get("rounds") or ([{
        "command": old.get("command"), "date": old.get("machine", {}).get("date"), "order": list(old.get("runs", {})),
        "load_average_1m_at_end": old.get("machine", {}).get("load_average_1m")}] if old else [])  # fmt: skip
    this_round = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                  "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
    order = args.configs[::-1] if args.reverse else args.configs
    with tempfile.TemporaryDirectory(prefix="rl4rec-bench-levers-") as tmp:
        for position, name in enumerate(order):
            result = run_config(name, args, Path(tmp))
            extra, overrides = CONFIGS[name]
            entry = runs.setdefault(name, {"flags": extra, "grpo_config_overrides": overrides, "rounds": []})
            entry["rounds"].append({**this_round, "position": position, **result})
    for run in runs.values():
        run.update(pooled_stats(run["rounds"]))
    comparison = {}
    base_rounds = [
        r for name in ("baseline", "baseline_repeat") for r in runs.get(name, {}).get("rounds", [])
    ]
    if base_rounds:
        base = pooled_stats(base_rounds)
        for name, run in runs.items():
            comparison[name] = {
                "step_speedup_vs_baseline_mean": base["mean"]["step_s"] / run["mean"]["step_s"],
                "step_speedup_vs_baseline_median": base["median"]["step_s"] / run["median"]["step_s"],
                **{f"{p}_s_mean": run["mean"][f"{p}_s"] for p in PARTS},
            }  # fmt: skip
    payload = {
        "config": {**vars(args), "policy": "smollm2-135m-instruct", "algorithm": "grpo", "reward": "auc",
                   "per_step": "2 prompts x 4 completions, 32 new tokens, prompt budget 256, mini-batch 8"},
        "rounds": [*previous_rounds, {**this_round, "order": order, "load_average_1m_at_end": os.getloadavg()[0]}],
        "runs": runs,
        "comparison": comparison,
        "run_total_s": time.perf_counter() - started,
        "note": "per-step statistics over steps 2..N of each run (step 1 pays warm-ups), pooled over rounds; the "
        "baseline of the comparison pools baseline and baseline_repeat; with generation reuse "
        "(steps_per_generation, ppo_epochs) only every other step generates, so compare the means",
    }  # fmt: skip
    print(
        json.dumps({k: round(v["step_speedup_vs_baseline_mean"], 2) for k, v in comparison.items()}, indent=1)
    )
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
