"""Shared-prefix computation equals the plain one: log-probs, GRPO and PPO gradients, generation.

Batches have prompts of different lengths (left padding), groups of G in {1, 2, 4}, completions of
different lengths (right padding) and chunks that split a group. Tolerances are those of the
shared-prefix issue: log-probs within 1e-4 (fp32), gradient cosine >= 0.9999, relative norm
difference <= 1e-3.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rl4rec.policy.shared_prefix import (
    applicable,
    find_groups,
    forward_with_shared_prefix,
    generate_with_shared_prefix,
    token_ratio,
)

PAD = 0


def tiny_llama(vocab: int = 64, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=PAD,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return LlamaForCausalLM(config).train()


def grouped_batch(
    lengths: list[int], group: int, n_tokens: int, vocab: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Left-padded prompts (each ``group`` times in a row) and right-padded completions of varied length."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    rows = len(lengths) * group
    prompt_ids = torch.full((rows, width), PAD)
    prompt_mask = torch.zeros(rows, width, dtype=torch.long)
    for i, length in enumerate(lengths):
        tokens = torch.randint(3, vocab, (length,), generator=gen)
        for g in range(group):
            prompt_ids[i * group + g, width - length :] = tokens
            prompt_mask[i * group + g, width - length :] = 1
    completion_ids = torch.randint(3, vocab, (rows, n_tokens), generator=gen)
    completion_mask = torch.ones(rows, n_tokens, dtype=torch.long)
    for r in range(rows):
        ends = int(torch.randint(1, n_tokens + 1, (1,), generator=gen))
        completion_mask[r, ends:] = 0
        completion_ids[r, ends:] = PAD
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def plain_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    n = completion_ids.shape[1]
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=n + 1).logits[:, :-1]
    return (
        torch.log_softmax(logits.float(), -1).gather(-1, completion_ids[..., None])[..., 0] * completion_mask
    )


def shared_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    out = forward_with_shared_prefix(
        model, prompt_ids, prompt_mask, completion_ids, completion_mask, prefix_kwargs={"logits_to_keep": 1}
    )
    return (
        torch.log_softmax(out.logits.float(), -1).gather(-1, completion_ids[..., None])[..., 0]
        * completion_mask
    )


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten().double() for p in model.parameters() if p.grad is not None])


def assert_shared_equals_plain(model, batch, advantages) -> None:
    """Per-token log-probs within 1e-4 and the same gradient of a policy-gradient loss, shared vs plain."""
    results = []
    for compute in (plain_logps, shared_logps):
        model.zero_grad()
        logps = compute(model, *batch)
        (-(logps * advantages).sum() / batch[3].sum()).backward()
        results.append((logps.detach(), flat_grad(model)))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-4, rtol=0)
    assert_same_gradient(results[0][1], results[1][1])


def assert_same_gradient(a: torch.Tensor, b: torch.Tensor) -> None:
    cosine = float(torch.dot(a, b) / (a.norm() * b.norm()))
    relative = float((a.norm() - b.norm()).abs() / a.norm())
    assert cosine >= 0.9999 and relative <= 1e-3, (cosine, relative)


def test_find_groups_and_group_order():
    prompt_ids, prompt_mask, *_ = grouped_batch([5, 3, 5], group=3, n_tokens=4, vocab=64)
    groups = find_groups(prompt_ids, prompt_mask)
    assert groups.n_unique == 3 and groups.n_rows == 9 and groups.shares
    assert torch.equal(groups.inverse[groups.first], torch.arange(3))
    assert len(set(groups.inverse[[0, 1, 2]].tolist())) == 1 and groups.inverse[3] != groups.inverse[0]
    order = groups.order(torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(9))
    blocks = groups.inverse[order].view(3, 3)
    assert all(len(set(b.tolist())) == 1 for b in blocks)  # each prompt's rows stay together
    # A prompt that differs only in padding is another prompt; one completion per prompt shares nothing.
    single = find_groups(*grouped_batch([4, 6], group=1, n_tokens=2, vocab=64)[:2])
    assert not single.shares and not applicable(prompt_mask[:2], single)


def test_token_ratio_counts_the_prompt_once_per_group():
    prompt_ids, prompt_mask, _, completion_mask = grouped_batch([8, 8], 4, 4, 64)
    completion_mask[:] = 1
    groups = find_groups(prompt_ids, prompt_mask)
    assert token_ratio(prompt_mask, completion_mask, groups) == pytest.approx(
        (8 * 8 + 8 * 4) / (2 * 8 + 8 * 4)
    )


@pytest.mark.parametrize("group", [1, 2, 4])
def test_log_probs_and_gradients_equal_the_plain_forward(group):
    model = tiny_llama()
    batch = grouped_batch([11, 7, 4], group, n_tokens=6, vocab=64, seed=group)
    advantages = torch.randn(batch[0].shape[0], 1, generator=torch.Generator().manual_seed(0))
    assert_shared_equals_plain(model, batch, advantages)


def test_position_ids_given_explicitly_match_the_plain_forward():
    """PPO passes generate()'s position ids (real tokens counted from 0); the split must keep them."""
    model = tiny_llama()
    prompt_ids, prompt_mask, completion_ids, completion_mask = grouped_batch([9, 5], 3, 5, 64)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids = torch.cat([prompt_ids, completion_ids], 1)
    plain = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -6:-1]
    shared = forward_with_shared_prefix(
        model, prompt_ids, prompt_mask, completion_ids, completion_mask, position_ids=positions
    ).logits
    torch.testing.assert_close(shared * completion_mask[..., None], plain * completion_mask[..., None],
                               atol=1e-4, rtol=0)  # fmt: skip


def test_greedy_and_sampled_generation_equal_the_plain_generate():
    model = tiny_llama().eval()
    prompt_ids, prompt_mask, *_ = grouped_batch([7, 4], 4, 1, 64)
    kwargs = {"max_new_tokens": 6, "pad_token_id": PAD, "eos_token_id": 2}
    plain = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=False, **kwargs)
    shared = generate_with_shared_prefix(model, prompt_ids, prompt_mask, do_sample=False, **kwargs)
    assert torch.equal(plain, shared)
    sampled = []
    for fn in ("plain", "shared"):
        torch.manual_seed(3)
        call = dict(
            input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, top_k=0, top_p=0.95, **kwargs
        )
        sampled.append(
            model.generate(**call) if fn == "plain" else generate_with_shared_prefix(model, **call)
        )
    assert torch.equal(sampled[0], sampled[1])


@pytest.mark.parametrize("mode", ["head", "separate"])
def test_ppo_losses_have_the_same_gradient(mode):
    from rl4rec.training.ppo import losses as L
    from rl4rec.training.ppo.rollout import token_logprobs
    from rl4rec.training.ppo.value import PolicyAndValue

    model = PolicyAndValue(tiny_llama(), mode)
    with torch.no_grad():
        model.value_head.summary.weight.normal_(0, 0.1)  # non-zero, so the value loss reaches the backbone
    prompt_ids, prompt_mask, completion_ids, completion_mask = grouped_batch([10, 6], 4, 5, 64)
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    gen = torch.Generator().manual_seed(0)
    advantages, returns = torch.randn(8, 5, generator=gen), torch.rand(8, 5, generator=gen)
    results = []
    for shared in (False, True):
        model.zero_grad()
        logits, values = model(ids, mask, positions, 5, shared_prefix=shared)
        logprobs = token_logprobs(logits, completion_ids, 0.8)
        old = logprobs.detach() + 0.05 * torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
        policy = L.clipped_policy_loss(logprobs, old, advantages, completion_mask, 0.2)
        value_loss, _ = L.clipped_value_loss(values, values.detach() * 0.9, returns, completion_mask, 0.2)
        (policy.loss + 0.1 * value_loss).backward()
        results.append(
            (logprobs.detach() * completion_mask, values.detach() * completion_mask, flat_grad(model))
        )
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-4, rtol=0)
    assert_same_gradient(results[0][2], results[1][2])


# -- TRL: the GRPO trainer's own log-prob function and loss ------------------------------------------------


@pytest.fixture(scope="module")
def grpo_trainer(policy_tokenizer, tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig

    from rl4rec.training.trl_backend import build_trainer

    model = tiny_llama(vocab=len(policy_tokenizer))
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo")), use_cpu=True, bf16=False, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=6, report_to=[], loss_type="dapo", logging_steps=1,
        activation_checkpointing=False,  # checkpointed layers drop the cache: sharing would fall back
    )  # fmt: skip
    trainer = build_trainer(
        "grpo", SimpleNamespace(shared_prefix=True), model, policy_tokenizer, args,
        Dataset.from_list([{"prompt": "a b c"}] * 8), [lambda completions, **_: [0.0] * len(completions)],
    )  # fmt: skip
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; compute_loss reads it
    return trainer


@pytest.mark.parametrize("group,chunk", [(1, 6), (2, 6), (4, 3), (4, 12)])
def test_grpo_log_probs_and_loss_gradients_equal_trl(grpo_trainer, group, chunk, monkeypatch):
    """``chunk`` 3 with groups of 4 splits every group across micro-batches; chunks without a repeat fall back."""
    from rl4rec.policy.shared_prefix import gradient_checkpointing_on
    from rl4rec.training import trl_backend

    calls = []
    real = trl_backend.forward_with_shared_prefix
    monkeypatch.setattr(
        trl_backend, "forward_with_shared_prefix", lambda *a, **k: calls.append(1) or real(*a, **k)
    )

    trainer, model = grpo_trainer, grpo_trainer.model
    assert not gradient_checkpointing_on(
        model
    )  # else the shared path would fall back and compare plain to plain
    vocab = model.config.vocab_size
    prompt_ids, prompt_mask, completion_ids, completion_mask = grouped_batch(
        [9, 5, 12], group, 6, vocab, group
    )
    rows = prompt_ids.shape[0]
    ids, mask = torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1)
    inputs = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
        "completion_mask": completion_mask, "advantages": torch.randn(rows, generator=torch.Generator().manual_seed(2)),
        "old_per_token_logps": None, "ref_per_token_logps": None, "importance_sampling_ratio": None,
        "num_items_in_batch": completion_mask.sum(),
    }  # fmt: skip
    results = []
    for shared in (False, True):
        trainer.rl4rec_config.shared_prefix = shared
        with torch.no_grad():
            logps, entropy, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 6, chunk, True)
        model.zero_grad()
        trainer.compute_loss(model, inputs).backward()
        results.append((logps, entropy, flat_grad(model)))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-4, rtol=0)
    assert_same_gradient(results[0][2], results[1][2])
    assert bool(calls) == (group > 1)  # the shared path ran where prompts repeat, and only there


# -- the default policy (real weights) -----------------------------------------------------------------------


def test_default_policy_shared_log_probs_and_gradient(policy_tokenizer):
    from rl4rec.policy.loading import load_policy

    model, _ = load_policy("smollm2-135m-instruct", device="cpu")
    model.train()
    batch = grouped_batch([48, 31], 4, n_tokens=8, vocab=len(policy_tokenizer), seed=5)
    advantages = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    assert_shared_equals_plain(model, batch, advantages)


# -- end to end: `rl4rec train` with and without --shared_prefix ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_two_training_steps_reach_the_same_weights(algorithm, ml100k_dir, tmp_path):
    """fp32, same seed: the same completions are sampled, so the updates must agree to rounding.

    The weights' difference between the two runs is compared with how far training moved them. A tiny random
    policy with the real tokenizer keeps it fast; the default policy's exactness is checked above.
    """
    from safetensors.torch import load_file

    from rl4rec.training.config import parse_train_args
    from rl4rec.training.trainer import TRLTrainer
    from train_helpers import tiny_policy_dir, train_flags

    policy = tiny_policy_dir(tmp_path / "policy")

    finals = {}
    for shared in ("true", "false"):
        flags = train_flags(
            ml100k_dir, tmp_path / shared, "--shared_prefix", shared, "--bf16", "off", "--save_steps", "10",
            "--model_name", str(policy), "--learning_rate", "1e-3",
            algorithm=algorithm, max_steps=2, max_length=160, batch_size=4, num_generations=2, mini_batch_size=2,
        )  # fmt: skip
        result = TRLTrainer(parse_train_args(flags)).train()
        assert result.global_step == 2
        finals[shared] = load_file(result.final_checkpoint / "model.safetensors")
    start = load_file(policy / "model.safetensors")
    moved = sum(float((finals["false"][k].double() - start[k].double()).norm() ** 2) for k in start) ** 0.5
    apart = (
        sum(float((finals["true"][k].double() - finals["false"][k].double()).norm() ** 2) for k in start)
        ** 0.5
    )
    assert moved > 0
    assert apart <= 1e-2 * moved, (apart, moved)
