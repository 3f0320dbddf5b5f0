"""PNG plots for ``rl4rec report`` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: metrics.jsonl keys plotted per training run (missing keys are skipped, e.g. KL when beta = 0).
CURVES = (
    ("reward", "reward (mean per step)"),
    ("completion_length", "completion length (tokens)"),
    ("kl", "KL"),
)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> list[str]:
    """One panel per curve, one line per run; returns the curves that had data."""
    present = [(k, label) for k, label in CURVES if any(_series(recs, k)[0] for recs in runs.values())]
    if not present:
        return []
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], present, strict=True):
        for name, records in runs.items():
            steps, values = _series(records, key)
            if steps:
                ax.plot(steps, values, label=name, linewidth=1)
                if key == "reward" and len(values) >= 5:  # a running mean shows the trend under the noise
                    w = max(len(values) // 10, 3)
                    smooth = [sum(values[max(0, i - w + 1) : i + 1]) / len(values[max(0, i - w + 1) : i + 1])
                              for i in range(len(values))]  # fmt: skip
                    ax.plot(steps, smooth, linewidth=2, alpha=0.7, label=f"{name} (mean of {w})")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [k for k, _ in present]


def methods_chart(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Horizontal bars of ``metric`` with 95 % intervals, one bar per evaluation run."""
    labels = [r["label"] for r in rows]
    means = [r["metrics"][metric]["mean"] for r in rows]
    lo = [m - r["metrics"][metric]["ci95"][0] for m, r in zip(means, rows, strict=True)]
    hi = [r["metrics"][metric]["ci95"][1] - m for m, r in zip(means, rows, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    ax.barh(labels, means, xerr=[lo, hi], capsize=3, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (95% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def heldout_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> bool:
    """The held-out curve of each run beside its training reward: AUC and NDCG@10 of the validation users.

    The band is step 0's value plus the 95 % paired-bootstrap interval of the difference to step 0 (the
    same users at every step), so a curve whose band leaves step 0's line has moved beyond noise.
    Returns False when no run logged held-out evaluations.
    """
    heldout = {
        name: [r for r in recs if isinstance(r.get("eval/auc"), (int, float))] for name, recs in runs.items()
    }
    heldout = {name: recs for name, recs in heldout.items() if recs}
    if not heldout:
        return False
    panels = [
        ("reward", "training reward (running mean)"),
        ("auc", "held-out AUC"),
        ("ndcg@10", "held-out NDCG@10"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for name, evals in heldout.items():
            if key == "reward":
                steps, values = _series(runs[name], "reward")
                if steps:
                    w = max(len(values) // 10, 1)
                    smooth = [sum(values[max(0, i - w + 1) : i + 1]) / len(values[max(0, i - w + 1) : i + 1])
                              for i in range(len(values))]  # fmt: skip
                    ax.plot(steps, smooth, label=name, linewidth=1.5)
                continue
            for prefix, style in (("", "-"), ("fused/", "--")):
                steps, values = _series(evals, f"eval/{prefix}{key}")
                if not steps:
                    continue
                line = ax.plot(
                    steps, values, style, marker="o", markersize=3, label=f"{name} {prefix or 'text '}"
                )[0]
                start = values[0] if steps[0] == 0 else None
                lo_s, lo = _series(evals, f"eval/{prefix}{key}_vs_step0_lo")
                hi_s, hi = _series(evals, f"eval/{prefix}{key}_vs_step0_hi")
                if start is not None and lo_s and lo_s == hi_s:
                    ax.fill_between([0, *lo_s], [start, *(start + v for v in lo)], [start, *(start + v for v in hi)],
                                    color=line.get_color(), alpha=0.15, linewidth=0)  # fmt: skip
                    ax.axhline(start, color=line.get_color(), linewidth=0.6, alpha=0.5)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
