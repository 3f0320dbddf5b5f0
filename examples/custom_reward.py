"""The seed's custom reward example: NDCG@k plus a diversity bonus.

Run it against the in-process service on the built-in data:

    python examples/custom_reward.py --dataset ml-100k --data_dir data

Train with it in place of the built-in reward (from the repository root):

    rl4rec train --reward_fn examples.custom_reward:CustomRewardFunction --dataset_name ml-100k --device cpu

or in Python: ``TRLTrainer(config, reward_fn=CustomRewardFunction).train()`` (see README).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from rl4rec.rewards import RLRewardFunction, calculate_ndcg


def calculate_diversity(generated_texts: Sequence[str]) -> np.ndarray:
    """Per-text share of words not used by any other text in the batch (0 = all shared, 1 = all unique)."""
    words = [set(t.lower().split()) for t in generated_texts]
    bonus = []
    for i, own in enumerate(words):
        others = set().union(*(w for j, w in enumerate(words) if j != i)) if len(words) > 1 else set()
        bonus.append(len(own - others) / len(own) if own else 0.0)
    return np.asarray(bonus, dtype=np.float64)


class CustomRewardFunction(RLRewardFunction):
    """NDCG@k of the retrieval ranking plus ``diversity_weight`` x a diversity bonus."""

    diversity_weight = 0.1

    def __call__(self, generated_texts, target_items, history_items, **kwargs):
        scores = self.get_scores(generated_texts)
        diversity_bonus = calculate_diversity(generated_texts)
        ndcg = calculate_ndcg(scores, target_items, history_items, k=self.k)
        rewards = ndcg + self.diversity_weight * diversity_bonus
        return rewards.tolist()


def main() -> None:
    from rl4rec.data import leave_one_out, load_dataset

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default="data")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, args.data_dir)
    examples = leave_one_out(dataset.sequences, "test").examples[:4]
    reward_fn = CustomRewardFunction(dataset_name=args.dataset, backend="local", data_dir=args.data_dir, k=10)
    texts = [dataset.item_text(e.history[-1]) for e in examples]  # last item's text as a stand-in query
    rewards = reward_fn(texts, [e.target for e in examples], [list(e.history) for e in examples])
    for text, reward in zip(texts, rewards, strict=True):
        print(f"{reward:.4f}  {text}")


if __name__ == "__main__":
    main()
