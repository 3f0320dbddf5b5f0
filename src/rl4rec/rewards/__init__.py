"""Rewards stage: the seed's reward API and the TRL adapter (the metrics of :mod:`rl4rec.metrics`, re-exported)."""

from rl4rec.metrics import (
    REWARD_TYPES,
    calculate_auc,
    calculate_hit,
    calculate_mixed,
    calculate_mrr,
    calculate_ndcg,
    compute_ranks,
    reward_from_ranks,
    reward_name,
)
from rl4rec.rewards.base import RLRewardFunction, create_reward_function
from rl4rec.rewards.trl_adapter import to_async_trl_reward, to_trl_reward

__all__ = [
    "REWARD_TYPES",
    "RLRewardFunction",
    "calculate_auc",
    "calculate_hit",
    "calculate_mixed",
    "calculate_mrr",
    "calculate_ndcg",
    "compute_ranks",
    "create_reward_function",
    "reward_from_ranks",
    "reward_name",
    "to_async_trl_reward",
    "to_trl_reward",
]
