"""Ranking metrics against an independent brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rl4rec.errors import ConfigError
from rl4rec.metrics import (
    auc_from_ranks,
    calculate_auc,
    calculate_hit,
    calculate_mixed,
    calculate_mrr,
    calculate_ndcg,
    compute_ranks,
    count_candidates,
    metrics_at,
    reward_from_ranks,
    reward_name,
)


def brute_rank(scores_row, target, history):
    """1 + items other than the target, outside the history, scoring >= the target (pure Python)."""
    masked = set(history) - {target}
    t = scores_row[target - 1]
    return 1 + sum(1 for j, s in enumerate(scores_row, start=1) if j != target and j not in masked and s >= t)


def brute_metrics(rank, k):
    ndcg = 1 / math.log2(rank + 1) if rank <= k else 0.0
    hit = 1.0 if rank <= k else 0.0
    mrr = 1 / rank if rank <= k else 0.0
    return ndcg, hit, mrr


def random_case(rng, batch=12, n_items=40, levels=6):
    scores = rng.integers(0, levels, size=(batch, n_items)).astype(np.float32)  # many ties
    targets = rng.integers(1, n_items + 1, size=batch)
    histories = []
    for b in range(batch):
        hist = list(rng.choice(np.arange(1, n_items + 1), size=rng.integers(0, 8), replace=False))
        if b % 3 == 0:
            hist.append(int(targets[b]))  # target inside its own history (repeat purchase)
        histories.append([int(h) for h in hist])
    return scores, targets, histories


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 5, 10, 1000])
def test_metrics_match_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    scores, targets, histories = random_case(rng)
    ranks = [brute_rank(scores[b].tolist(), int(targets[b]), histories[b]) for b in range(len(targets))]
    expected = np.array([brute_metrics(r, k) for r in ranks])
    assert compute_ranks(scores, targets, histories).tolist() == ranks
    np.testing.assert_allclose(calculate_ndcg(scores, targets, histories, k), expected[:, 0])
    np.testing.assert_allclose(calculate_hit(scores, targets, histories, k), expected[:, 1])
    np.testing.assert_allclose(calculate_mrr(scores, targets, histories, k), expected[:, 2])
    np.testing.assert_allclose(
        calculate_mixed(scores, targets, histories, k, weight=0.7),
        0.7 * expected[:, 0] + 0.3 * expected[:, 1],
    )


def test_torch_input_and_padded_history_give_same_result():
    rng = np.random.default_rng(7)
    scores, targets, histories = random_case(rng)
    width = max(len(h) for h in histories)
    padded = np.zeros((len(histories), width), dtype=np.int64)
    for i, h in enumerate(histories):
        padded[i, : len(h)] = h
    out = calculate_ndcg(torch.from_numpy(scores), torch.from_numpy(targets), torch.from_numpy(padded), 10)
    assert torch.is_tensor(out)
    np.testing.assert_allclose(out.numpy(), calculate_ndcg(scores, targets, histories, 10))


def test_hand_computed_case():
    # item ids 1..4 (columns 0..3); target 2 scores 0.5
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    ranks = compute_ranks(scores, [2, 2, 4], [[], [1, 3], [2]])
    # row 0: item 1 above, item 3 tied (pessimistic) -> rank 3; row 1: both masked -> 1; row 2: all tied, one masked -> 3
    assert ranks.tolist() == [3, 1, 3]
    np.testing.assert_allclose(reward_from_ranks(ranks, "ndcg", 2), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(reward_from_ranks(ranks, "mrr", 3), [1 / 3, 1.0, 1 / 3])
    summary = {name: values.mean() for name, values in metrics_at([1, 3, 30], ks=(5,)).items()}
    assert summary["hit@5"] == pytest.approx(2 / 3)
    assert summary["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 3)


def test_k_larger_than_catalogue_and_no_sort_needed():
    scores = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    ranks = compute_ranks(scores, [1, 2, 3], None)
    assert all(1 <= r <= 5 for r in ranks)
    assert (calculate_hit(scores, [1, 2, 3], None, 1000) == 1.0).all()


@pytest.mark.parametrize(
    ("targets", "histories", "message"),
    [
        ([0, 1], None, "outside 1..4"),
        ([5, 1], None, "outside 1..4"),
        ([1], None, "has 1 entries"),
        ([1, 2], [[1], [9]], "history item id 9"),
        ([1, 2], [[1]], "history_items has 1 rows"),
    ],
)
def test_bad_arguments(targets, histories, message):
    scores = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        compute_ranks(scores, targets, histories)


def test_nan_target_score_and_bad_k():
    scores = np.array([[np.nan, 0.1]], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        compute_ranks(scores, [1], None)
    # NaN elsewhere never outranks the target
    assert compute_ranks(np.array([[0.2, np.nan]], dtype=np.float32), [1], None).tolist() == [1]
    with pytest.raises(ValueError, match="positive integer"):
        calculate_ndcg(np.zeros((1, 2)), [1], None, 0)
    with pytest.raises(ValueError, match="unknown reward_type"):
        reward_from_ranks([1], "precision", 10)


def brute_auc(scores_row, target, history):
    """Fraction of the other non-history items scoring strictly below the target (pure Python)."""
    masked = set(history) - {target}
    t = scores_row[target - 1]
    others = [s for j, s in enumerate(scores_row, start=1) if j != target and j not in masked]
    return sum(1 for s in others if s < t) / len(others)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_with_ties_and_repeats(seed):
    rng = np.random.default_rng(seed)
    scores, targets, histories = random_case(rng)
    histories[1] = histories[1] + histories[1][:2]  # duplicated history ids are masked once
    expected = [brute_auc(scores[b].tolist(), int(targets[b]), histories[b]) for b in range(len(targets))]
    np.testing.assert_allclose(calculate_auc(scores, targets, histories), expected)
    ranks = compute_ranks(scores, targets, histories)
    n = count_candidates(scores.shape[1], targets, histories)
    np.testing.assert_allclose(reward_from_ranks(ranks, "auc", 10, num_candidates=n), expected)
    torch_auc = auc_from_ranks(torch.as_tensor(ranks), torch.as_tensor(n))
    np.testing.assert_allclose(torch_auc.numpy(), expected)


def test_auc_endpoints_and_errors():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    assert calculate_auc(scores, [1], None).tolist() == [1.0]  # best of 4
    assert calculate_auc(scores, [4], None).tolist() == [0.0]  # worst
    assert calculate_auc(scores, [2], [[1]]).tolist() == [1.0]  # item 1 masked: 2 is now first
    assert reward_name("auc", 10) == "auc" and reward_name("ndcg", 10) == "ndcg@10"
    with pytest.raises(ValueError, match="num_candidates"):
        reward_from_ranks(np.array([1]), "auc", 10)
    with pytest.raises(ValueError, match="num_candidates"):
        reward_from_ranks(np.array([1]), "auc_ndcg", 10)
    # auc_ndcg by hand: ranks 1 and 3 of 4 candidates, k 2, w 0.5 -> 0.5 * (1, 0) + 0.5 * (1, 1/3)
    both = reward_from_ranks(
        np.array([1, 3]), "auc_ndcg", 2, mixed_weight=0.5, num_candidates=np.array([4, 4])
    )
    np.testing.assert_allclose(both, [1.0, 0.5 / 3])
    assert reward_name("auc_ndcg", 100) == "auc_ndcg@100"
    with pytest.raises(ConfigError, match="mixed_weight"):
        reward_from_ranks(np.array([1]), "auc_ndcg", 2, mixed_weight=2.0, num_candidates=np.array([4]))
    with pytest.raises(ValueError, match=r"1\.\.num_candidates"):
        auc_from_ranks(np.array([5]), np.array([4]))
