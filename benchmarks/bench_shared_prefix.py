"""Shared-prefix computation against the plain one: whole training steps, ABAB in one process.

For each setting one real training run (``TRLTrainer``: TRL's GRPO, or rl4rec's PPO; the offline
SmolLM2-135M policy; the real retrieval reward) alternates ``--shared_prefix`` between steps: a
warm-up step in each mode, then ``--rounds`` x (plain, shared). The run trains on exactly
``batch_size / num_generations`` users, so every step sees the same prompts (only the samples
differ), and the learning rate is tiny, so the policy, and with it the completion lengths, stay
put. Reported per mode: the median whole step (wall clock, optimizer step included), its
generation / reward / update split (PPO: the scoring forwards apart), and the tokens the plain
computation processes per token of the shared one (``token_ratio``, the ideal speed-up of the
prompt-bound parts) beside the measured speed-up.

    .venv/bin/python benchmarks/bench_shared_prefix.py                 # every setting (about 30 min)
    .venv/bin/python benchmarks/bench_shared_prefix.py --settings demo  # one setting
    .venv/bin/python benchmarks/bench_shared_prefix.py --settings beauty-cand10-g4 --out bench_shared_prefix_candidates
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

#: name -> (algorithm, dataset, completions per prompt, new tokens, mini-batch size)
SETTINGS: dict[str, tuple[str, str, int, int, int]] = {
    "demo": ("grpo", "ml-100k", 4, 32, 8),  # make demo's step: 2 prompts x 4, 32 new tokens, one micro-batch
    "beauty-g4": ("grpo", "beauty", 4, 48, 4),  # scripts/beauty_recipe.sh grpo: 48 new tokens, micro-batch 4
    "beauty-g8": ("grpo", "beauty", 8, 48, 8),
    "ppo-g4": ("ppo", "ml-100k", 4, 32, 8),
    "ppo-g8": ("ppo", "ml-100k", 8, 32, 16),
    # candidate-aware prompts (10 recall candidates, about 3x the tokens of a history prompt): what sharing saves there
    "beauty-cand10-g4": ("grpo", "beauty", 4, 48, 4),
}
#: Flags a setting adds to (or overrides in) the common ones.
EXTRA_FLAGS: dict[str, list[str]] = {"beauty-cand10-g4": ["--candidates", "10", "--max_length", "512"]}
PROMPTS_PER_STEP = 2


def alternate(config: Any, schedule: list[bool]) -> Any:
    """A callback that sets ``config.shared_prefix`` for each coming step (TRL and PPO call it between steps)."""
    from transformers import TrainerCallback

    class Alternate(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.walls: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.walls.append(time.perf_counter() - self.started)
            if state.global_step < len(schedule):
                config.shared_prefix = schedule[state.global_step]
            return control

    return Alternate()


def run_setting(name: str, args: argparse.Namespace, data_dirs: dict[str, str]) -> dict[str, Any]:
    from rl4rec.training.config import parse_train_args
    from rl4rec.training.trainer import TRLTrainer

    algorithm, dataset, group, new_tokens, mini = SETTINGS[name]
    batch = PROMPTS_PER_STEP * group
    schedule = [False, True] + [shared for _ in range(args.rounds) for shared in (False, True)]
    with tempfile.TemporaryDirectory(prefix="rl4rec-bench-sp-") as tmp:
        flags = [
            "--algorithm", algorithm, "--dataset_name", dataset, "--data_dir", data_dirs[dataset],
            "--device", "cpu", "--batch_size", str(batch), "--num_generations", str(group),
            "--mini_batch_size", str(mini), "--ppo_epochs", "1", "--max_new_tokens", str(new_tokens),
            "--max_length", "256", "--reward_type", "auc", "--learning_rate", "1e-9", "--temperature", "0.8",
            "--train_users", str(PROMPTS_PER_STEP), "--num_epochs", "1000", "--max_steps", str(len(schedule)),
            "--save_steps", "100000", "--checkpoint_dir", str(Path(tmp) / "run"), "--log_with", "none",
            "--seed", "0", "--bf16", args.bf16, "--shared_prefix", "false", *EXTRA_FLAGS.get(name, []),
        ]  # fmt: skip
        config = parse_train_args(flags)
        clock = alternate(config, schedule)
        result = TRLTrainer(config, callbacks=[clock]).train()
        records = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    parts = ["generation", "reward", "update"] + (["score"] if algorithm == "ppo" else [])
    steps = []
    for i, (record, shared) in enumerate(zip(records, schedule, strict=True)):
        wall = record["time/step"] if algorithm == "ppo" else clock.walls[i]
        steps.append({
            "step": record["step"], "shared_prefix": shared, "warmup": i < 2, "wall_s": wall,
            **{f"{p}_s": record[f"time/{p}"] for p in parts},
            "completion_length": record.get("completion_length"),
            "token_ratio": record.get("shared_prefix/token_ratio"),
        })  # fmt: skip
    modes: dict[str, Any] = {}
    for label, shared in (("plain", False), ("shared", True)):
        chosen = [s for s in steps if s["shared_prefix"] is shared and not s["warmup"]]
        modes[label] = {
            "step_s": statistics.median(s["wall_s"] for s in chosen),
            **{f"{p}_s": statistics.median(s[f"{p}_s"] for s in chosen) for p in parts},
            "completion_length": statistics.fmean(s["completion_length"] for s in chosen),
            "n_steps": len(chosen),
        }
    ratios = [s["token_ratio"] for s in steps if s["token_ratio"] is not None]
    speedup = {
        "step": modes["plain"]["step_s"] / modes["shared"]["step_s"],
        **{p: modes["plain"][f"{p}_s"] / max(modes["shared"][f"{p}_s"], 1e-9)
           for p in parts if p != "reward"},
    }  # fmt: skip
    return {
        "algorithm": algorithm, "dataset": dataset, "num_generations": group, "max_new_tokens": new_tokens,
        "prompts_per_step": PROMPTS_PER_STEP, "batch_size": batch, "mini_batch_size": mini,
        "max_length": config.max_length, "candidates": config.candidates,
        "token_ratio": statistics.median(ratios) if ratios else None, "speedup": speedup, **modes, "steps": steps,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3, help="(plain, shared) pairs after the warm-up steps")
    parser.add_argument(
        "--bf16", default="auto", choices=["auto", "on", "off"], help="as `rl4rec train --bf16`"
    )
    parser.add_argument("--ml100k_dir", default=str(REPO / "data"))
    parser.add_argument("--beauty_dir", default=str(REPO.parent / "shared" / "data"))
    add_threads_flag(parser, default=0)
    parser.add_argument("--out", default="bench_shared_prefix")
    args = parser.parse_args(argv)
    apply_threads(args.torch_threads)
    if not (Path(args.ml100k_dir) / "ml-100k" / "sequential_data.txt").is_file():
        from rl4rec.data.recbole import prepare_recbole

        prepare_recbole("ml-100k", None, Path(args.ml100k_dir) / "ml-100k")
    data_dirs = {"ml-100k": args.ml100k_dir, "beauty": args.beauty_dir}
    results = {}
    for name in args.settings:  # the file is rewritten after every setting: a stop keeps what finished
        results[name] = run_setting(name, args, data_dirs)
        row = results[name]
        print(json.dumps({name: {"speedup": row["speedup"], "token_ratio": row["token_ratio"],
                                 "plain_step_s": row["plain"]["step_s"], "shared_step_s": row["shared"]["step_s"]}}),
              flush=True)  # fmt: skip
        write_result(args.out, {"config": vars(args), "settings": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
