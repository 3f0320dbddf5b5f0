"""PPO's arithmetic as pure tensor functions: KL-shaped rewards, GAE, whitening, clipped losses, KL control.

Shapes: ``[batch, T]`` over completion tokens; ``mask`` is 1 for real tokens (up to and including EOS)
and 0 after it. Every function ignores masked positions, so a padded batch gives the same numbers as
the sequences one by one. Kept free of models and I/O so each can be checked against hand arithmetic
(tests/test_ppo_losses.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over unmasked entries (over ``dim``, or over everything)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over unmasked entries (Bessel-corrected by default, as in the PPO implementations)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise to unit variance (and zero mean if ``shift_mean``) over the unmasked entries.

    Whitening advantages per rollout batch makes the step size independent of the reward's scale
    (NDCG@10 is ~0.01, a length reward may be ~10); masked entries come back as 0.
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The per-token KL estimate of the sampled token, log pi(a|s) - log pi_ref(a|s) (Ziegler et al.)."""
    return logprobs - ref_logprobs


def shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``-kl_coef * KL`` with each sequence's score added at its last real token.

    Returns ``(rewards, kl)``, both ``[batch, T]`` and zero after the last real token.
    """
    maskf = mask.to(logprobs.dtype)
    kl = kl_per_token(logprobs, ref_logprobs) * maskf
    rewards = -kl_coef * kl
    last = (maskf.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * (maskf.sum(1) > 0).to(rewards.dtype)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens; returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the value
    after the last real token is 0 (the episode ends there). ``returns = A + V`` are the value targets.
    """
    maskf = mask.to(values.dtype)
    values = values * maskf
    rewards = rewards * maskf
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * maskf[:, t]
        advantages[:, t] = next_adv
    returns = advantages + values
    return advantages, returns * maskf


@dataclass
class PolicyLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor
    ratio: torch.Tensor


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> PolicyLossOut:
    """PPO-clip: ``mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))`` over real tokens, r = pi / pi_old."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return PolicyLossOut(loss, clip_fraction.detach(), approx_kl.detach(), masked_mean(ratio, mask).detach())


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` with V_clip within ``cliprange_value`` of the old V.

    Returns ``(loss, clip_fraction)``.
    """
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    clip_fraction = masked_mean((loss_clipped > loss_unclipped).to(values.dtype), mask)
    return loss, clip_fraction.detach()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's categorical distribution, ``[..., vocab] -> [...]``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over real tokens: 1 = perfect value predictions, <= 0 = no better than a constant."""
    var_returns = masked_var(returns, mask)
    if var_returns.item() == 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_returns)


class KLController:
    """The KL coefficient: fixed, or adaptive towards ``target`` (Ziegler et al. 2019, sec. 2.2).

    Adaptive update after each rollout batch of ``n_steps`` sequences with mean KL ``current``:
    ``e = clip(current / target - 1, -0.2, 0.2)``, ``beta <- beta * (1 + e * n_steps / horizon)``.
    """

    def __init__(self, init_kl_coef: float, target: float | None = None, horizon: int = 10000) -> None:
        if init_kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {init_kl_coef}")
        self.value = float(init_kl_coef)
        self.target, self.horizon = target, horizon

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def update(self, current: float, n_steps: int) -> float:
        if self.target is not None and math.isfinite(current):
            error = min(max(current / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"kl_coef": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["kl_coef"])
