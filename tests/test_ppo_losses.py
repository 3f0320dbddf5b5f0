"""PPO arithmetic against small hand-computed references (fast, no models)."""

from __future__ import annotations

import math

import pytest
import torch

from rl4rec.training.ppo import losses as L
from rl4rec.training.ppo.rollout import mask_after_eos, token_logprobs


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def reference_gae(rewards, values, gamma, lam):
    """Textbook GAE over one unpadded episode (independent of the implementation)."""
    n = len(rewards)
    out = []
    for s in range(n):
        total = 0.0
        for k in range(s, n):
            next_v = values[k + 1] if k + 1 < n else 0.0
            delta = rewards[k] + gamma * next_v - values[k]
            total += (gamma * lam) ** (k - s) * delta
        out.append(total)
    return out


def test_gae_matches_hand_computation_and_ignores_padding():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = t([[0.5, 0.2, 0.1], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # Row 0: deltas 0.18-0.5, 0.09-0.2, 1-0.1; A2 = 0.9, A1 = -0.11 + 0.45 * 0.9, A0 = -0.32 + 0.45 * A1.
    assert adv[0].tolist() == pytest.approx([-0.18725, 0.295, 0.9])
    assert ret[0].tolist() == pytest.approx([0.31275, 0.495, 1.0])
    # Row 1 ends after two tokens: the masked reward 5 and value 9 must not leak in.
    assert adv[1].tolist() == pytest.approx([0.35, 1.0, 0.0])
    assert ret[1].tolist() == pytest.approx([1.35, 2.0, 0.0])
    for row, n in ((0, 3), (1, 2)):
        want = reference_gae(rewards[row, :n].tolist(), values[row, :n].tolist(), 0.9, 0.5)
        assert adv[row, :n].tolist() == pytest.approx(want)


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = t([[0.1, -0.2, 0.3, 1.0]])
    values = t([[0.4, 0.3, 0.2, 0.1]])
    adv, ret = L.gae(rewards, values, torch.ones(1, 4), gamma=1.0, lam=1.0)
    to_go = [1.2, 1.1, 1.3, 1.0]
    assert ret[0].tolist() == pytest.approx(to_go)
    assert adv[0].tolist() == pytest.approx([g - v for g, v in zip(to_go, values[0].tolist(), strict=True)])


def test_kl_shaped_rewards_put_the_score_on_the_last_real_token():
    logprobs = t([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = t([[-1.5, -2.0, -2.0], [-2.0, -1.0, -7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = L.shaped_rewards(t([1.0, 0.5]), logprobs, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, t([[0.5, 0.0, -1.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, t([[-0.05, 0.0, 1.1], [-0.1, 0.5, 0.0]]))
    no_kl, _ = L.shaped_rewards(t([1.0, 0.5]), logprobs, ref, mask, kl_coef=0.0)
    torch.testing.assert_close(no_kl, t([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0]]))


def test_whitening_uses_only_real_tokens():
    values = t([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased variance 1
    assert L.masked_whiten(values, mask).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    assert L.masked_whiten(values, mask, shift_mean=False).tolist()[0] == pytest.approx(
        [1.0, 2.0, 3.0, 0.0], abs=1e-6
    )
    assert float(L.masked_mean(values, mask)) == pytest.approx(2.0)
    assert float(L.masked_var(values, mask)) == pytest.approx(1.0)
    assert float(L.masked_var(values, mask, unbiased=False)) == pytest.approx(2.0 / 3.0)


def test_clipped_policy_loss():
    old = t([[0.0, 0.0, 0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5), math.log(1.1), 5.0]])
    adv = t([[1.0, -1.0, 2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = L.clipped_policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(0.5, 0.8) = 0.8 (clipped); token 3: -2.2
    assert float(out.loss) == pytest.approx((-1.2 + 0.8 - 2.2) / 3)
    assert float(out.clip_fraction) == pytest.approx(2 / 3)
    assert float(out.approx_kl) == pytest.approx(
        0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    )
    # Gradient of the clipped tokens is zero; the unclipped one gets -A * ratio / n.
    new_param = new.clone().requires_grad_(True)
    L.clipped_policy_loss(new_param, old, adv, mask, cliprange=0.2).loss.backward()
    assert new_param.grad[0].tolist() == pytest.approx([0.0, 0.0, -2.0 * 1.1 / 3, 0.0])


def test_clipped_value_loss():
    old = t([[0.0, 0.0, 0.0, 0.0]])
    values = t([[0.5, -0.1, 0.3, 7.0]])
    returns = t([[1.0, 1.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, frac = L.clipped_value_loss(values, old, returns, mask, cliprange_value=0.2)
    # token 1: max(0.25, 0.64) = 0.64 (clipped); token 2: 1.21; token 3: max(1.69, 1.44) = 1.69
    assert float(loss) == pytest.approx(0.5 * (0.64 + 1.21 + 1.69) / 3)
    assert float(frac) == pytest.approx(1 / 3)


def test_adaptive_kl_controller_follows_ziegler_et_al():
    ctl = L.KLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(12.0, n_steps=100) == pytest.approx(0.1 * 1.002)  # error clipped to +0.2
    assert ctl.update(3.0, n_steps=100) == pytest.approx(0.1 * 1.002 * 0.998)  # error clipped to -0.2
    assert ctl.update(6.6, n_steps=100) == pytest.approx(0.1 * 1.002 * 0.998 * 1.001)  # error 0.1
    fixed = L.KLController(0.05)
    assert fixed.update(100.0, 1000) == 0.05 and not fixed.adaptive
    restored = L.KLController(0.05, target=6.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_explained_variance_and_entropy():
    returns = t([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert L.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert L.explained_variance(torch.full_like(returns, 2.0), returns, mask) == pytest.approx(0.0)
    assert math.isnan(L.explained_variance(returns, t([[1.0, 1.0, 1.0, 0.0]]), mask))
    assert L.entropy_from_logits(torch.zeros(2, 4)).tolist() == pytest.approx([math.log(4)] * 2)


def test_mask_after_eos_and_temperature_logprobs():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    cleaned, mask = mask_after_eos(ids, [2], pad_id=0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert cleaned.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    assert token_logprobs(logits, torch.tensor([[0]]), 1.0).item() == pytest.approx(math.log(0.5))
    # T = 0.5 squares the probabilities before renormalising: 0.25 / (0.25 + 2 * 0.0625)
    assert token_logprobs(logits, torch.tensor([[0]]), 0.5).item() == pytest.approx(math.log(0.25 / 0.375))


def test_rollout_stream_covers_each_epoch_once_and_splits_across_processes():
    from rl4rec.training.ppo.rollout import stream_indices

    n, batch = 10, 4
    stream = [i for step in range(1, 6) for i in stream_indices(step, n, batch, batch, rank=0, seed=3)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new permutation per epoch
    assert stream_indices(4, n, batch, batch, 0, 3) == stream[12:16]  # a function of the step alone
    halves = stream_indices(2, n, batch, 2, 0, 3) + stream_indices(2, n, batch, 2, 1, 3)
    assert halves == stream_indices(2, n, batch, batch, 0, 3)
