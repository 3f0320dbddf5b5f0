"""Ranking metrics: the only implementation in rl4rec (training, evaluation and the service call it).

A leaf module: it imports nothing from rl4rec but :mod:`rl4rec.errors`, so every stage may use it.
:data:`RANK_METRICS` is the one map from metric name to function (rewards, evaluation tables and
training logs all read it), and :func:`check_reward_args` the one check of a reward's arguments.

Layout: ``scores[b, j]`` is the score of item id ``j + 1`` for query ``b``; there is no padding
column. Item id ``0`` in a padded history array means "no item".

Rank (1-based) of a target = 1 + the number of *other* items, not in the query's history, whose
score is ``>=`` the target's. Ties are therefore broken pessimistically: an item tied with the
target counts as ranked above it, so a constant score vector gives the worst rank, not a lucky one.
The target itself is never masked, even when it also appears in its own history (repeat purchases).
Ranks are computed by counting, without sorting the catalogue, so any ``k`` costs the same.

From a rank ``r``: NDCG@k = 1/log2(r + 1) if r <= k else 0 (one relevant item, so IDCG = 1);
Hit@k = 1 if r <= k; MRR@k = 1/r if r <= k; mixed = w * NDCG@k + (1 - w) * Hit@k.

AUC = (n - r) / (n - 1), where n is the number of candidates (catalogue minus masked history, the
target included): the fraction of the other candidates ranked below the target. Unlike the @k
metrics it moves with every rank, so a weak policy whose targets all sit far below k still gets a
learning signal (NDCG@10 is exactly 0 for nearly every completion of a 135M model); ``k`` is ignored.

auc_ndcg = w * NDCG@k + (1 - w) * AUC: AUC's signal everywhere plus a bonus at the top of the ranking. A
policy rewarded by AUC alone learns what moves every rank (on ml-100k an era and genres) and not what puts
the target in the top 10 (naming the film); with a large k (e.g. 100) the NDCG term still reaches a weak
policy's targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rl4rec.errors import ConfigError

REWARD_TYPES: tuple[str, ...] = ("ndcg", "hit", "mrr", "mixed", "auc", "auc_ndcg")
# Reward types whose value does not depend on k (named without "@k").
K_FREE_REWARD_TYPES: tuple[str, ...] = ("auc",)
# Reward types that need each rank's number of candidates (see count_candidates).
CANDIDATE_REWARD_TYPES: tuple[str, ...] = ("auc", "auc_ndcg")
DEFAULT_MIXED_WEIGHT = 0.7

ArrayLike = Any  # numpy array, torch tensor, or nested Python sequences


def _as_long_1d(values: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be one id per row (1-D), got shape {tuple(tensor.shape)}.")
    if tensor.dtype.is_floating_point and not torch.all(tensor == tensor.round()):
        raise ValueError(f"{name} must hold integer item ids.")
    return tensor.to(device=device, dtype=torch.long)


def _history_tensor(history_items: ArrayLike | None, batch: int, device: torch.device) -> torch.Tensor:
    """Histories as a ``[B, L]`` long tensor padded with 0 (ragged Python lists accepted)."""
    if history_items is None:
        return torch.zeros((batch, 0), dtype=torch.long, device=device)
    if torch.is_tensor(history_items) or isinstance(history_items, np.ndarray):
        hist = torch.as_tensor(history_items).to(device=device, dtype=torch.long)
        if hist.dim() != 2:
            raise ValueError(
                f"history_items must be 2-D [batch, length] (0 = padding), got {tuple(hist.shape)}."
            )
    else:
        rows = [list(h) if h is not None else [] for h in history_items]
        width = max((len(r) for r in rows), default=0)
        hist = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                hist[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        hist = hist.to(device)
    if hist.shape[0] != batch:
        raise ValueError(f"history_items has {hist.shape[0]} rows but scores has {batch}; they must match.")
    return hist


def compute_ranks(
    scores: ArrayLike, target_items: ArrayLike, history_items: ArrayLike | None = None
) -> ArrayLike:
    """1-based rank of each target among items not in its history (pessimistic ties).

    Returns a numpy array for numpy/list input and a tensor (on the scores' device) for tensor input.
    """
    is_torch = torch.is_tensor(scores)
    s = scores if is_torch else torch.from_numpy(np.ascontiguousarray(np.asarray(scores, dtype=np.float32)))
    if s.dim() != 2:
        raise ValueError(f"scores must be 2-D [batch, n_items], got shape {tuple(s.shape)}.")
    batch, n_items = s.shape
    targets = _as_long_1d(target_items, "target_items", s.device)
    if targets.shape[0] != batch:
        raise ValueError(f"target_items has {targets.shape[0]} entries but scores has {batch} rows.")
    if batch and (targets.min() < 1 or targets.max() > n_items):
        bad = targets[(targets < 1) | (targets > n_items)][0].item()
        raise ValueError(f"target item id {bad} is outside 1..{n_items} (column j of scores is item j+1).")
    hist = _history_tensor(history_items, batch, s.device)
    if hist.numel() and (hist.min() < 0 or hist.max() > n_items):
        bad = hist[(hist < 0) | (hist > n_items)][0].item()
        raise ValueError(f"history item id {bad} is outside 1..{n_items} (0 is padding).")

    target_scores = s.gather(1, (targets - 1).unsqueeze(1))
    if torch.isnan(target_scores).any():
        row = int(torch.isnan(target_scores).squeeze(1).nonzero()[0])
        raise ValueError(f"the score of the target in row {row} is NaN; scores must be finite.")
    at_or_above = s >= target_scores  # NaN scores compare False: they never outrank the target
    if hist.numel():
        # Mask history items, except the target itself (it stays, even when repeated in the history).
        valid = (hist > 0) & (hist != targets.unsqueeze(1))
        rows = torch.arange(batch, device=s.device).unsqueeze(1).expand_as(hist)[valid]
        at_or_above[rows, hist[valid] - 1] = False
    ranks = at_or_above.sum(dim=1)
    return ranks if is_torch else ranks.cpu().numpy()


def count_candidates(
    n_items: int, target_items: ArrayLike, history_items: ArrayLike | None = None
) -> np.ndarray:
    """Number of items each target is ranked among: the catalogue minus its distinct masked history.

    Mirrors :func:`compute_ranks`: padding (0) and the target itself are never masked.
    """
    targets = np.asarray(target_items, dtype=np.int64).reshape(-1)
    counts = np.full(targets.shape[0], int(n_items), dtype=np.int64)
    if history_items is None:
        return counts
    for row, (target, hist) in enumerate(zip(targets, history_items, strict=True)):
        h = np.asarray([] if hist is None else hist, dtype=np.int64).reshape(-1)
        counts[row] -= np.unique(h[(h > 0) & (h != target)]).size
    return counts


def auc_from_ranks(ranks: ArrayLike, num_candidates: ArrayLike) -> ArrayLike:
    """Per-row AUC: the fraction of the other candidates ranked below the target (1 = first)."""
    if torch.is_tensor(ranks):
        r = ranks.double()
        n = torch.as_tensor(num_candidates, dtype=torch.float64, device=r.device)
        if bool((r > n).any()) or bool((n < 1).any()):
            raise ValueError("every rank must lie in 1..num_candidates.")
        return torch.where(n > 1, (n - r) / (n - 1).clamp(min=1.0), torch.ones_like(r))
    r = np.asarray(ranks, dtype=np.float64)
    n = np.broadcast_to(np.asarray(num_candidates, dtype=np.float64), r.shape)
    if np.any(r > n) or np.any(n < 1):
        raise ValueError("every rank must lie in 1..num_candidates.")
    return np.where(n > 1, (n - r) / np.maximum(n - 1, 1.0), 1.0)


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"{name} must be a positive integer, got {k!r}.")
    return int(k)


def _check_weight(mixed_weight: Any, name: str = "mixed_weight") -> float:
    try:
        ok = 0.0 <= float(mixed_weight) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be a number in [0, 1], got {mixed_weight!r}.")
    return float(mixed_weight)


def _unknown_reward_type(reward_type: Any, flag: str = "") -> ConfigError:
    return ConfigError(
        f"unknown reward_type {reward_type!r}: {flag}reward_type must be one of {', '.join(REWARD_TYPES)}."
    )


def check_reward_args(
    reward_type: Any, k: Any, mixed_weight: Any = DEFAULT_MIXED_WEIGHT, flag: str = ""
) -> None:
    """Raise :class:`ConfigError` unless ``reward_type``, ``k`` and ``mixed_weight`` are valid.

    The one check of a reward's arguments, called where they enter: the retrieval service,
    ``RLRewardFunction`` and the run config (``flag="--"`` names them as command-line flags).
    """
    if not isinstance(reward_type, str) or reward_type not in REWARD_TYPES:
        raise _unknown_reward_type(reward_type, flag)
    _check_k(k, f"{flag}k")
    _check_weight(mixed_weight, f"{flag}mixed_weight")


def ndcg_from_ranks(ranks: ArrayLike, k: int) -> ArrayLike:
    k = _check_k(k)
    if torch.is_tensor(ranks):
        r = ranks.double()
        return torch.where(r <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r))
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def hit_from_ranks(ranks: ArrayLike, k: int) -> ArrayLike:
    k = _check_k(k)
    if torch.is_tensor(ranks):
        return (ranks <= k).double()
    return (np.asarray(ranks) <= k).astype(np.float64)


def mrr_from_ranks(ranks: ArrayLike, k: int) -> ArrayLike:
    k = _check_k(k)
    if torch.is_tensor(ranks):
        r = ranks.double()
        return torch.where(r <= k, 1.0 / r, torch.zeros_like(r))
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r <= k, 1.0 / r, 0.0)


#: Metric name -> ``f(ranks, k)``: the one registry of rank metrics (``metrics_at`` names them ``name@k``).
RANK_METRICS: dict[str, Callable[[ArrayLike, int], ArrayLike]] = {
    "hit": hit_from_ranks,
    "ndcg": ndcg_from_ranks,
    "mrr": mrr_from_ranks,
}


def metrics_at(ranks: ArrayLike, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """``{"hit@10": per-row values, "ndcg@10": ..., "mrr@10": ...}`` for every k in ``ks`` (float64)."""
    r = np.asarray(ranks, dtype=np.int64)
    return {
        f"{name}@{k}": np.asarray(fn(r, k), dtype=np.float64) for k in ks for name, fn in RANK_METRICS.items()
    }


def reward_from_ranks(
    ranks: ArrayLike,
    reward_type: str,
    k: int,
    mixed_weight: float = DEFAULT_MIXED_WEIGHT,
    num_candidates: ArrayLike | None = None,
) -> ArrayLike:
    """The reward of each rank under ``reward_type`` (``ndcg``, ``hit``, ``mrr``, ``mixed``, ``auc``,
    ``auc_ndcg``; ``mixed_weight`` is NDCG@k's weight in ``mixed`` and ``auc_ndcg``).

    ``auc`` and ``auc_ndcg`` need ``num_candidates`` (see :func:`count_candidates`).
    """
    if reward_type in CANDIDATE_REWARD_TYPES:
        if num_candidates is None:
            raise ValueError(f"reward_type {reward_type!r} needs num_candidates (see count_candidates).")
        auc = auc_from_ranks(ranks, num_candidates)
        if reward_type == "auc":
            return auc
        weight = _check_weight(mixed_weight)
        return weight * ndcg_from_ranks(ranks, k) + (1.0 - weight) * auc
    if reward_type == "mixed":
        mixed_weight = _check_weight(mixed_weight)
        return mixed_weight * ndcg_from_ranks(ranks, k) + (1.0 - mixed_weight) * hit_from_ranks(ranks, k)
    if isinstance(reward_type, str) and reward_type in RANK_METRICS:
        return RANK_METRICS[reward_type](ranks, k)
    raise _unknown_reward_type(reward_type)


def calculate_ndcg(
    scores: ArrayLike, target_items: ArrayLike, history_items: ArrayLike | None, k: int
) -> ArrayLike:
    """NDCG@k per row (the seed's name and signature)."""
    return ndcg_from_ranks(compute_ranks(scores, target_items, history_items), k)


def calculate_hit(
    scores: ArrayLike, target_items: ArrayLike, history_items: ArrayLike | None, k: int
) -> ArrayLike:
    """Hit@k per row."""
    return hit_from_ranks(compute_ranks(scores, target_items, history_items), k)


def calculate_mrr(
    scores: ArrayLike, target_items: ArrayLike, history_items: ArrayLike | None, k: int
) -> ArrayLike:
    """MRR@k per row."""
    return mrr_from_ranks(compute_ranks(scores, target_items, history_items), k)


def calculate_mixed(
    scores: ArrayLike,
    target_items: ArrayLike,
    history_items: ArrayLike | None,
    k: int,
    weight: float = DEFAULT_MIXED_WEIGHT,
) -> ArrayLike:
    """``weight * NDCG@k + (1 - weight) * Hit@k`` per row."""
    return reward_from_ranks(compute_ranks(scores, target_items, history_items), "mixed", k, weight)


def calculate_auc(scores: ArrayLike, target_items: ArrayLike, history_items: ArrayLike | None) -> ArrayLike:
    """AUC per row: the fraction of non-history items scored below the target."""
    ranks = compute_ranks(scores, target_items, history_items)
    n = count_candidates(np.shape(scores)[1], np.asarray(target_items), history_items)
    return auc_from_ranks(ranks, n if not torch.is_tensor(ranks) else torch.from_numpy(n))


def reward_name(reward_type: str, k: int) -> str:
    """Column name of a reward in logs: ``ndcg@10``, or ``auc`` for k-free rewards."""
    return reward_type if reward_type in K_FREE_REWARD_TYPES else f"{reward_type}@{k}"
