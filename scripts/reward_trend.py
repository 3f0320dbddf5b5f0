"""Did the training reward rise? First-N vs last-N steps of a run's metrics.jsonl, with the noise.

python scripts/reward_trend.py outputs/accept/grpo/metrics.jsonl [--window 10]

Each step's reward is the mean over one small rollout batch (8 completions of 2-8 users), so most of
its variance is *which users were drawn*, not learning. Besides the two means this prints a 95 %
bootstrap interval of their difference, resampling the fresh rollout batches of each window (a step
that reuses a batch, as GRPO does with --ppo_epochs > 1, repeats its reward and adds no information).
A difference whose interval contains 0 is not evidence of learning, whichever way it points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def fresh_rewards(rows: list[dict]) -> np.ndarray:
    """Reward of each fresh rollout batch (steps that reused a batch are dropped)."""
    return np.array([r["reward"] for r in rows if r.get("new_rollouts", True)], dtype=np.float64)


def trend(rows: list[dict], window: int, samples: int = 10_000, seed: int = 0) -> dict[str, float]:
    if len(rows) < 2 * window:
        raise SystemExit(f"need at least {2 * window} logged steps, got {len(rows)}.")
    first, last = rows[:window], rows[-window:]
    a, b = fresh_rewards(first), fresh_rewards(last)
    lo = hi = float("nan")  # fewer than 5 fresh batches a side: too few to resample
    if min(a.size, b.size) >= 5:
        rng = np.random.default_rng(seed)
        boot = rng.choice(b, (samples, b.size)).mean(1) - rng.choice(a, (samples, a.size)).mean(1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
    first_mean = float(np.mean([r["reward"] for r in first]))
    last_mean = float(np.mean([r["reward"] for r in last]))
    return {
        "steps": len(rows),
        "first_mean": first_mean,
        "last_mean": last_mean,
        "first_batches": int(a.size),
        "last_batches": int(b.size),
        "diff": last_mean - first_mean,
        "diff_ci95_low": float(lo),
        "diff_ci95_high": float(hi),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("metrics", type=Path, help="a run's metrics.jsonl")
    parser.add_argument("--window", type=int, default=10, help="steps at each end (default 10)")
    args = parser.parse_args()
    if not args.metrics.is_file():
        raise SystemExit(f"{args.metrics}: no such file; pass a training run's metrics.jsonl.")
    rows = [json.loads(line) for line in args.metrics.read_text().splitlines() if line.strip()]
    t = trend(rows, args.window)
    print(
        f"{args.metrics}: {t['steps']} steps; mean reward of the first {args.window} steps "
        f"{t['first_mean']:.4f} ({t['first_batches']} fresh batches) -> last {args.window} "
        f"{t['last_mean']:.4f} ({t['last_batches']}); difference {t['diff']:+.4f}, "
        + (
            f"95% bootstrap CI [{t['diff_ci95_low']:+.4f}, {t['diff_ci95_high']:+.4f}]"
            if np.isfinite(t["diff_ci95_low"])
            else "no interval (fewer than 5 fresh rollout batches in a window)"
        )
    )
    print(json.dumps(t))


if __name__ == "__main__":
    main()
