"""PPO with a value model (``--algorithm ppo``): the seed's algorithm, on transformers + accelerate.

TRL removed its PPOTrainer (1.13) and never accepted a reward *function*; this package implements PPO
itself and shares everything else with the GRPO path: prompts, the reward function and its TRL
adapter, metrics.jsonl / completions.jsonl, the checkpoint layout and ``--resume``.

``run_ppo`` is imported lazily so that the pure tensor code (``losses``) loads without accelerate.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PPORun", "run_ppo"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rl4rec.training.ppo import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
