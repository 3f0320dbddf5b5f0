"""The PPO value function on a tiny random Llama (fast, no files): both modes, and its checkpoint tensors."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rl4rec.training.ppo.value import PolicyAndValue


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def inputs(batch: int = 2, length: int = 7):
    ids = torch.randint(3, 20, (batch, length))
    mask = torch.ones_like(ids)
    return ids, mask, (mask.cumsum(-1) - 1)


@pytest.mark.parametrize("mode", ["head", "separate"])
def test_values_start_at_zero_and_align_with_the_policy_logits(mode):
    policy = tiny_llama()
    model = PolicyAndValue(policy, mode)
    ids, mask, positions = inputs()
    logits, values = model(ids, mask, positions, n_last=3)
    assert logits.shape == (2, 3, 20) and values.shape == (2, 3)
    assert torch.equal(values, torch.zeros(2, 3))  # zero-initialised head: a neutral first baseline
    # Position i predicts completion token i: the logits of positions -4..-2 of the full forward pass.
    full = policy(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    torch.testing.assert_close(logits, full[:, -4:-1])
    only_logits, none = model(ids, mask, positions, n_last=3, with_values=False)
    assert none is None and torch.equal(only_logits, logits)


def test_separate_value_model_does_not_share_the_policy_backbone():
    model = PolicyAndValue(tiny_llama(), "separate")
    with torch.no_grad():
        model.value_head.summary.weight.fill_(0.1)  # non-zero, so gradients reach the value backbone
    _, values = model(*inputs(), n_last=3)
    values.sum().backward()
    assert all(p.grad is None for p in model.policy.parameters())  # value regression leaves the policy alone
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.value_backbone.parameters())


def test_value_state_dict_round_trip_and_mode_mismatch():
    head = PolicyAndValue(tiny_llama(), "head")
    with torch.no_grad():
        head.value_head.summary.weight.fill_(0.5)
    state = head.value_state_dict()
    assert set(state) == {"value_head.summary.weight", "value_head.summary.bias"}
    restored = PolicyAndValue(tiny_llama(), "head")
    restored.load_value_state_dict(state)
    assert torch.equal(restored.value_head.summary.weight, head.value_head.summary.weight)
    separate = PolicyAndValue(tiny_llama(), "separate")
    full_state = separate.value_state_dict()
    assert any(k.startswith("value_backbone.") for k in full_state)
    with pytest.raises(ValueError, match="only a value head"):
        separate.load_value_state_dict(state)
    with pytest.raises(ValueError, match="separate value model"):
        restored.load_value_state_dict(full_state)


@pytest.mark.parametrize("mode", ["head", "separate"])
def test_parameter_groups_split_policy_and_value_weights(mode):
    model = PolicyAndValue(tiny_llama(), mode)
    policy, own = model.parameter_groups()
    assert {id(p) for p in policy}.isdisjoint(id(p) for p in own)
    assert len(policy) + len(own) == sum(1 for p in model.parameters() if p.requires_grad)
    assert {id(p) for p in model.policy.parameters()} == {
        id(p) for p in policy
    }  # the shared backbone is the policy's
    expected = list(model.value_head.parameters())
    if mode == "separate":
        expected += list(model.value_backbone.parameters())
    assert {id(p) for p in expected} == {id(p) for p in own}


def test_optimizer_gives_the_value_function_its_own_rate_and_refuses_one_group_checkpoints(tmp_path):
    from types import SimpleNamespace

    from rl4rec.errors import ConfigError
    from rl4rec.training.ppo import state as S
    from rl4rec.training.ppo.optim import build_optimizer

    model = PolicyAndValue(tiny_llama(), "head")
    config = SimpleNamespace(learning_rate=1e-5, value_learning_rate=None, lr_scheduler="linear")
    optimizer, scheduler = build_optimizer(model, config, total_updates=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-5, 1e-4])
    assert scheduler.get_last_lr() == pytest.approx([1e-5, 1e-4])
    S.load_optimizer(_saved(tmp_path, optimizer), optimizer)  # its own state round-trips
    old = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)  # before d484bf8
    with pytest.raises(ConfigError, match=r"1 parameter group.*start a new run"):
        S.load_optimizer(_saved(tmp_path, old), optimizer)


def _saved(folder, optimizer):
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    return folder
