"""``make demo`` / ``rl4rec demo``: the main job on the built-in data, end to end on a CPU.

prepare ml-100k -> show a prompt -> train the offline default policy with GRPO -> evaluate it against the
untrained policy and the no-LLM baselines (history-fusion with weights tuned on validation users) on held-out test users -> paired comparison -> report.
Every step is an ordinary rl4rec command; the demo only chooses small, CPU-sized settings and prints
the equivalent command lines so a user can rerun or scale any step.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from rl4rec.cli import main as rl4rec
from rl4rec.config_cli import opt, parse_config
from rl4rec.policy.loading import DEFAULT_POLICY

logger = logging.getLogger(__name__)

#: CPU-sized GRPO settings (see docs/RESULTS.md for how they were chosen and what they reach).
DEMO_TRAIN_FLAGS = [
    "--algorithm", "grpo", "--device", "cpu", "--dataset_name", "ml-100k",
    "--reward_type", "auc", "--learning_rate", "1e-5", "--temperature", "0.8",
    "--batch_size", "8", "--num_generations", "4", "--mini_batch_size", "8", "--ppo_epochs", "1",
    "--max_new_tokens", "32", "--max_length", "256", "--log_with", "none",
]  # fmt: skip
BASELINES = ("random", "popularity", "last-item", "history-mean", "history-fusion")


def _run(argv: list[str]) -> None:
    print(f"\n$ rl4rec {shlex.join(argv)}", flush=True)
    code = rl4rec(argv)
    if code:
        raise SystemExit(code)


@dataclass
class DemoConfig:
    """``rl4rec demo``: each field is a flag (``--name``), with its help text."""

    output_dir: str = opt("outputs/demo")
    data_dir: str = opt("data")
    max_steps: int = opt(20, "GRPO steps (about 25 s each on 2 free cores)")
    eval_users: int = opt(64, "test users for the LLM methods")
    seed: int = opt(0)


def demo_main(argv: list[str]) -> int:
    args = parse_config(DemoConfig, argv, "rl4rec demo", __doc__ or "")
    out = Path(args.output_dir)
    started = time.monotonic()

    if not (Path(args.data_dir) / "ml-100k" / "sequential_data.txt").is_file():
        _run(["prepare", "--dataset", "ml-100k", "--data_dir", args.data_dir])
    _run(["stats", "--dataset", "ml-100k", "--data_dir", args.data_dir])
    _run(["prompts", "show", "--dataset", "ml-100k", "--data_dir", args.data_dir, "--split", "test",
          "--model", DEFAULT_POLICY, "--max_length", "256"])  # fmt: skip

    run_dir = out / "grpo"
    _run(["train", *DEMO_TRAIN_FLAGS, "--data_dir", args.data_dir, "--max_steps", str(args.max_steps),
          "--save_steps", str(max(args.max_steps // 2, 1)), "--checkpoint_dir", str(run_dir),
          "--seed", str(args.seed)])  # fmt: skip

    evals = out / "eval"
    common = [
        "--dataset",
        "ml-100k",
        "--data_dir",
        args.data_dir,
        "--split",
        "test",
        "--seed",
        str(args.seed),
    ]
    # history-fusion's weights are chosen on validation users only, then read by the test evaluation
    fusion = evals / "fusion-history.json"
    _run(["tune-fusion", "--dataset", "ml-100k", "--data_dir", args.data_dir, "--output", str(fusion)])
    for method in BASELINES:
        extra = ["--fusion", str(fusion)] if method == "history-fusion" else []
        _run(["evaluate", *common, "--method", method, "--run_dir", str(evals / method),
              "--output", str(evals / f"{method}.json"), *extra])  # fmt: skip
    llm = ["--num_users", str(args.eval_users), "--max_new_tokens", "32"]
    _run(["evaluate", *common, *llm, "--method", "zero-shot", "--run_dir", str(evals / "zero-shot"),
          "--output", str(evals / "zero-shot.json")])  # fmt: skip
    _run(["evaluate", *common, *llm, "--method", "policy", "--model", str(run_dir / "checkpoint_final"),
          "--run_dir", str(evals / "grpo"), "--output", str(evals / "grpo.json")])  # fmt: skip
    _run(
        [
            "compare",
            str(evals / "zero-shot"),
            str(evals / "grpo"),
            "--output",
            str(evals / "grpo_vs_zero-shot.json"),
        ]
    )
    _run(["report", str(run_dir), *(str(evals / m) for m in (*BASELINES, "zero-shot", "grpo")),
          "--output_dir", str(out / "report")])  # fmt: skip

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first = [m["reward"] for m in metrics[:10] if m.get("reward") is not None]
    last = [m["reward"] for m in metrics[-10:] if m.get("reward") is not None]
    minutes = (time.monotonic() - started) / 60
    print(f"\n=== rl4rec demo finished in {minutes:.1f} min ===")
    if first and last:
        reward = DEMO_TRAIN_FLAGS[DEMO_TRAIN_FLAGS.index("--reward_type") + 1]
        print(f"training reward ({reward}), mean of first 10 steps {sum(first) / len(first):.4f} -> "
              f"last 10 steps {sum(last) / len(last):.4f} (8 completions a step: mostly which users were drawn)")  # fmt: skip
    paired = evals / "grpo_vs_zero-shot.json"
    if paired.is_file():
        diffs = json.loads(paired.read_text())["metrics"]
        print("held-out, trained minus untrained policy (paired 95% CI): " + ", ".join(
            f"{name} {d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            for name, d in diffs.items() if name in ("ndcg@10", "hit@10", "auc")))  # fmt: skip
    print(f"report (open first): {out / 'report' / 'report.md'}")
    print(f"training run:        {run_dir}  (metrics.jsonl, completions.jsonl, checkpoint_final/)")
    print(f"evaluations:         {evals}  (one JSON per method; grpo_vs_zero-shot.json = paired comparison)")
    return 0
