"""PPO's own flags (``--algorithm ppo``), beside the trainer that reads them."""

from __future__ import annotations

from dataclasses import dataclass

from rl4rec.config_cli import opt

VALUE_MODELS = ("head", "separate")


@dataclass
class PPOFlags:
    gamma: float = opt(1.0, "PPO discount factor.", at_least=0, at_most=1)
    lam: float = opt(0.95, "PPO GAE lambda.", at_least=0, at_most=1)
    cliprange: float = opt(0.2, "PPO policy ratio clip range.", above=0)
    cliprange_value: float = opt(0.2, "PPO value clip range.", above=0)
    vf_coef: float = opt(0.1, "PPO value loss coefficient.", at_least=0)
    kl_coef: float = opt(
        0.05, "PPO initial KL penalty coefficient (per-token reward -kl_coef * KL).", at_least=0
    )
    kl_target: float | None = opt(
        None,
        "PPO adaptive KL: target KL per sequence (nats); kl_coef moves towards it (Ziegler et al.). "
        "Unset = fixed kl_coef.",
        above=0,
    )
    kl_horizon: int = opt(10000, "PPO adaptive KL horizon (sequences over which kl_coef adapts).", at_least=1)
    value_model: str = opt(
        "head",
        "PPO value function: 'head' (scalar head on the policy) or 'separate' (own model).",
        one_of=VALUE_MODELS,
    )
    whiten_advantages: bool = opt(True, "PPO: normalise advantages per batch.")
    value_learning_rate: float | None = opt(
        None,
        "PPO: learning rate of the value function's own weights (the head; the separate model). "
        "Unset = 10 x --learning_rate: at the policy's rate a zero-initialised head needs dozens of steps "
        "to reach the mean return.",
        above=0,
    )
