"""rl4rec: reinforcement learning for LLM-written recommendation queries.

The pipeline, one subpackage per stage: ``data`` (sequences, splits, item text, prompts) ->
``policy`` (model loading, generation) -> ``retrieval`` (embedder, item index, service) ->
``rewards`` (ranking metrics, reward functions) -> ``training`` (TRL GRPO/RLOO, PPO) ->
``evaluation`` (metrics with confidence intervals, baselines, reports).

Imports are lazy so that ``rl4rec stats`` does not pay for torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
