"""Bootstrap confidence intervals for ranking metrics, unpaired and paired.

Ranking metrics on a few hundred users are noisy (the original project saw ±50 % between seeds), so
every mean comes with a 95 % percentile-bootstrap interval over users, and two methods are compared
on the *same* users with a paired bootstrap of the per-user differences, which is far tighter than
comparing two independent intervals. Per-user values come from :mod:`rl4rec.metrics`, the
only metric implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rl4rec.metrics import auc_from_ranks, metrics_at


def per_user(
    ranks: Sequence[int] | np.ndarray, ks: Sequence[int], candidates: Sequence[int] | np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``{"ndcg@10": array over users, ...}`` for every metric and k, plus ``auc`` given candidates.

    AUC uses every rank, not only the top k, so on a few hundred users it separates two weak methods
    whose NDCG@10 intervals both sit on zero.
    """
    r = np.asarray(ranks, dtype=np.int64)
    out = metrics_at(r, ks)
    if candidates is not None:
        out["auc"] = np.asarray(auc_from_ranks(r, np.asarray(candidates, dtype=np.int64)), dtype=np.float64)
    return out


def bootstrap_means(values: np.ndarray, samples: int, seed: int, chunk: int = 100) -> np.ndarray:
    """Means of ``samples`` resamples (with replacement) of ``values``; chunked to bound memory."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start : start + size] = values[idx].mean(axis=1)
    return out


def interval(values: np.ndarray, samples: int = 1000, seed: int = 0) -> dict[str, object]:
    """Mean and 95 % percentile-bootstrap interval of per-user values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "ci95": [float("nan"), float("nan")]}
    means = bootstrap_means(values, samples, seed)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(lo), float(hi)]}


def metric_table(
    ranks: Sequence[int] | np.ndarray,
    ks: Sequence[int],
    samples: int = 1000,
    seed: int = 0,
    candidates: Sequence[int] | np.ndarray | None = None,
) -> dict[str, dict[str, object]]:
    """Every metric@k (and AUC given candidates) with its interval, resampled with the same users."""
    return {name: interval(v, samples, seed) for name, v in per_user(ranks, ks, candidates).items()}


def paired_difference(
    ranks_a: Sequence[int] | np.ndarray,
    ranks_b: Sequence[int] | np.ndarray,
    ks: Sequence[int],
    samples: int = 1000,
    seed: int = 0,
    candidates: Sequence[int] | np.ndarray | None = None,
) -> dict[str, dict[str, object]]:
    """B minus A per metric on the same users: mean difference, paired 95 % interval, and the share of
    bootstrap resamples in which B is not better (a one-sided bootstrap p-value for "B > A")."""
    a, b = per_user(ranks_a, ks, candidates), per_user(ranks_b, ks, candidates)
    out: dict[str, dict[str, object]] = {}
    for name in a:
        diff = b[name] - a[name]
        means = bootstrap_means(diff, samples, seed)
        lo, hi = np.percentile(means, [2.5, 97.5])
        out[name] = {
            "a": float(a[name].mean()),
            "b": float(b[name].mean()),
            "diff": float(diff.mean()),
            "ci95": [float(lo), float(hi)],
            "p_b_not_better": float((means <= 0).mean()),
        }
    return out
