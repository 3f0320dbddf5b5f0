"""The seed's reward module, under the seed's own (misspelt) name, so its snippet runs as printed.

``from train_utils.reward_funtion import create_reward_function, RLRewardFunction, calculate_ndcg`` works
from ``src/`` (as ``python src/train_with_trl.py`` runs). Everything here is :mod:`rl4rec.rewards`.
"""

from rl4rec.metrics import calculate_hit, calculate_mixed, calculate_mrr, calculate_ndcg
from rl4rec.rewards import RLRewardFunction, create_reward_function

__all__ = [
    "RLRewardFunction",
    "calculate_hit",
    "calculate_mixed",
    "calculate_mrr",
    "calculate_ndcg",
    "create_reward_function",
]
