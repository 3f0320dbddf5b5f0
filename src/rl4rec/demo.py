"""``make demo`` / ``rl4rec demo``: the main job on the built-in data, end to end on a CPU.

prepare ml-100k -> show a prompt -> train the offline default policy with GRPO, the held-out curve on validation
users printed as it trains -> evaluate the trained policy against the policy it started from, paired on the same
seeded test users, and against the no-LLM baselines (history-fusion with weights tuned on validation users) on all
test users -> report. Every step is an ordinary rl4rec command; the demo only chooses small, CPU-sized settings and
prints the equivalent command lines so a user can rerun or scale any step.
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
from rl4rec.io import read_jsonl
from rl4rec.policy.loading import DEFAULT_POLICY
from rl4rec.policy.precision import cpu_supports_bf16

logger = logging.getLogger(__name__)

#: The recipe that made the policy better on held-out ml-100k users (GRPO rewarded on the AUC of each user's next 5
#: training items, 4 users x 4 completions, the 5 most recent history items in the prompt), cut to 40 steps at a
#: constant rate (a linear schedule cut short learns at half its rate on average) of 2e-5, chosen on validation users
#: among 1e-5, 1e-5 without per-group std scaling and 2e-5 (scripts/experiments.py, ml-h5-const40*;
#: docs/experiments/2026-12-07-demo-budget.md). A CPU without native bf16 steps half as fast and runs 16 of them,
#: which on such a CPU (fp32 training) end inside an early dip: docs/experiments/2026-12-08-demo-without-native-bf16.md.
DEMO_PROMPTS, DEMO_GROUP = 4, 4
DEMO_PROMPT_FLAGS = ["--max_length", "256", "--max_history_items", "5"]
DEMO_TRAIN_FLAGS = [
    "--algorithm", "grpo", "--device", "cpu", "--dataset_name", "ml-100k",
    "--reward_type", "auc", "--next_items", "5", "--learning_rate", "2e-5", "--lr_scheduler", "constant",
    "--temperature", "0.8",
    "--batch_size", str(DEMO_PROMPTS * DEMO_GROUP), "--num_generations", str(DEMO_GROUP),
    "--mini_batch_size", str(DEMO_PROMPTS * DEMO_GROUP), "--ppo_epochs", "1",
    "--max_new_tokens", "32", *DEMO_PROMPT_FLAGS, "--log_with", "none",
]  # fmt: skip
BASELINES = ("random", "popularity", "last-item", "history-mean", "history-fusion")
#: (GRPO steps, paired test users) that fit 15 minutes on 2 cores: with native bf16 (AVX-512 BF16 / AMX) a step takes
#: about 13 s and a test query 0.5 s, so more test users narrow the paired interval; without it 29 s and 0.85 s.
SIZE_NATIVE_BF16, SIZE_OTHER_CPU = (40, 192), (16, 128)
#: The step from which the recipe's validation curve read above 0 in fp32 (ml-h5-const16to40-lr2e-5).
EARLY_DIP_STEPS = 24


def demo_size(native_bf16: bool) -> tuple[int, int]:
    """The default (steps, test users) for this CPU: the same recipe, sized to the 15-minute budget."""
    return SIZE_NATIVE_BF16 if native_bf16 else SIZE_OTHER_CPU


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
    max_steps: int | None = opt(
        None,
        "GRPO steps of 4 users x 4 completions (about 29 s each on 2 free cores without AVX-512, 13 s with AVX-512 "
        f"BF16). Default: {SIZE_NATIVE_BF16[0]} on a CPU with native bf16, {SIZE_OTHER_CPU[0]} elsewhere",
        at_least=1,
    )
    eval_steps: int = opt(20, "held-out evaluation on validation users every N steps", at_least=1)
    heldout_users: int = opt(48, "validation users of the held-out curve", at_least=2)
    eval_users: int | None = opt(
        None,
        "test users on which the trained and the starting policy are paired. Default: "
        f"{SIZE_NATIVE_BF16[1]} on a CPU with native bf16, {SIZE_OTHER_CPU[1]} elsewhere",
        at_least=2,
    )
    seed: int = opt(42, "training seed and the seeded sample of test users (the recipe search's seed)")


def curve_lines(metrics_file: Path) -> list[str]:
    """The held-out curve as printable lines (AUC and NDCG@10 of the validation users, paired with step 0)."""
    lines = []
    for record in read_jsonl(metrics_file):
        if "eval/auc" not in record:
            continue
        delta = ""
        if "eval/auc_vs_step0" in record:
            delta = (f"  (AUC - step 0: {record['eval/auc_vs_step0']:+.4f} [{record['eval/auc_vs_step0_lo']:+.4f}, "
                     f"{record['eval/auc_vs_step0_hi']:+.4f}])")  # fmt: skip
        lines.append(
            f"  step {record['step']:>3}: AUC {record['eval/auc']:.4f}  NDCG@10 {record['eval/ndcg@10']:.4f}{delta}"
        )
    return lines


def verdict(diffs: dict[str, dict], steps: int) -> str:
    """What the demo's own test reading shows, read from its interval (never assumed: a short run may land either
    side of 0), and where the full-length recipe is."""
    auc = diffs.get("auc")
    full = ("The same 40 steps as a separate run (seed 42, a CPU with AVX-512 BF16), read on all 943 test users: "
            "AUC +0.0414 [+0.0242, +0.0591] over the untrained policy, NDCG@10 +0.0012 (about 9 min of steps):\n"
            "  python scripts/experiments.py run ml-h5-const40-lr2e-5 && python scripts/experiments.py test "
            "ml-h5-const40-lr2e-5 --test_users all   (docs/experiments/2026-12-07-demo-budget.md)")  # fmt: skip
    if auc is None:
        return f"No paired test reading was written. {full}"
    if auc["ci95"][0] > 0:
        return (f"{steps} steps of {DEMO_PROMPTS} users made the policy better for these test users on AUC (interval "
                f"above 0); NDCG@10 is the harder target. {full}")  # fmt: skip
    short = ""
    if steps < EARLY_DIP_STEPS:
        short = (" Runs this short end inside the recipe's early dip: trained in fp32 (a CPU without native bf16), "
                 "its validation curve read below 0 at steps 8 and 16 in four runs; continued, it read above 0 from "
                 f"step {EARLY_DIP_STEPS} and +0.067 with its interval above 0 at step 40. "
                 "`rl4rec demo --max_steps 40` runs past the dip (24 min on such a CPU; "
                 "docs/experiments/2026-12-08-demo-without-native-bf16.md).")  # fmt: skip
    return (f"{steps} steps of {DEMO_PROMPTS} users show the pipeline, not a better policy: the AUC interval contains "
            f"{'0' if auc['ci95'][1] >= 0 else 'only values below 0'}.{short} {full}")  # fmt: skip


def demo_main(argv: list[str]) -> int:
    args = parse_config(DemoConfig, argv, "rl4rec demo", __doc__ or "")
    native_bf16 = cpu_supports_bf16()
    steps, users = demo_size(native_bf16)
    args.max_steps = args.max_steps or steps
    args.eval_users = args.eval_users or users
    print(f"rl4rec demo: {args.max_steps} GRPO steps, {args.eval_users} paired test users "
          f"({'native bf16' if native_bf16 else 'no native bf16'} on this CPU; --max_steps / --eval_users "
          "change them)", flush=True)  # fmt: skip
    out = Path(args.output_dir)
    started = time.monotonic()

    if not (Path(args.data_dir) / "ml-100k" / "sequential_data.txt").is_file():
        _run(["prepare", "--dataset", "ml-100k", "--data_dir", args.data_dir])
    _run(["stats", "--dataset", "ml-100k", "--data_dir", args.data_dir])
    _run(["prompts", "show", "--dataset", "ml-100k", "--data_dir", args.data_dir, "--split", "test",
          "--model", DEFAULT_POLICY, *DEMO_PROMPT_FLAGS])  # fmt: skip

    run_dir = out / "grpo"
    _run(["train", *DEMO_TRAIN_FLAGS, "--data_dir", args.data_dir, "--max_steps", str(args.max_steps),
          "--save_steps", str(max(args.max_steps // 2, 1)), "--checkpoint_dir", str(run_dir), "--seed", str(args.seed),
          "--eval_steps", str(args.eval_steps), "--eval_users", str(args.heldout_users), "--eval_split", "valid",
          "--resume"])  # fmt: skip

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
    if not fusion.is_file():
        _run(["tune-fusion", "--dataset", "ml-100k", "--data_dir", args.data_dir, "--output", str(fusion)])
    for method in BASELINES:
        extra = ["--fusion", str(fusion)] if method == "history-fusion" else []
        _run(["evaluate", *common, "--method", method, "--run_dir", str(evals / method),
              "--output", str(evals / f"{method}.json"), *extra])  # fmt: skip
    # the trained checkpoint's prompt settings are read from its run config; the untrained policy gets the same
    llm = ["--num_users", str(args.eval_users), "--max_new_tokens", "32", "--batch_size", "64",
           *DEMO_PROMPT_FLAGS]  # fmt: skip
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

    records = read_jsonl(run_dir / "metrics.jsonl")
    steps = [r for r in records if r.get("reward") is not None]
    minutes = (time.monotonic() - started) / 60
    print(f"\n=== rl4rec demo finished in {minutes:.1f} min ===")
    if steps:
        step_s = sorted(r["time/step"] for r in steps)[len(steps) // 2]
        print(f"GRPO: {len(steps)} steps of {DEMO_PROMPTS} users x {DEMO_GROUP} completions, median {step_s:.1f} s a step "
              "(shared-prefix computation on; `--shared_prefix false` for the plain one)")  # fmt: skip
    print(
        f"held-out curve ({args.heldout_users} validation users, greedy queries, paired with step 0, 95% CI):"
    )
    print("\n".join(curve_lines(run_dir / "metrics.jsonl")))
    paired = evals / "grpo_vs_zero-shot.json"
    diffs = json.loads(paired.read_text())["metrics"] if paired.is_file() else {}
    if diffs:
        print(f"test, trained minus the policy it started from ({args.eval_users} users, paired 95% CI): " + ", ".join(
            f"{name} {d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            for name, d in diffs.items() if name in ("auc", "ndcg@10", "hit@10")))  # fmt: skip
    print(verdict(diffs, args.max_steps))
    print(f"report (open first): {out / 'report' / 'report.md'}")
    print(
        f"training run:        {run_dir}  (metrics.jsonl with the held-out curve, heldout/, checkpoint_final/)"
    )
    print(f"evaluations:         {evals}  (one JSON per method; grpo_vs_zero-shot.json = paired comparison)")
    return 0
