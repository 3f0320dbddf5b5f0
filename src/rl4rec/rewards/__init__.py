"""Rewards stage: the seed's reward API and the one boundary every reward passes (:mod:`.boundary`)."""

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
from rl4rec.rewards.boundary import TrainingReward, build_reward, sync_training_reward, training_reward

__all__ = [
    "REWARD_TYPES",
    "RLRewardFunction",
    "TrainingReward",
    "build_reward",
    "calculate_auc",
    "calculate_hit",
    "calculate_mixed",
    "calculate_mrr",
    "calculate_ndcg",
    "compute_ranks",
    "create_reward_function",
    "reward_from_ranks",
    "reward_name",
    "sync_training_reward",
    "training_reward",
]
