"""Rollouts: sample one completion per prompt, then score it with the policy, the reference and the value.

Sampling uses Hugging Face ``generate`` (any device) or, with ``--use_vllm`` on CUDA, TRL's colocated
vLLM engine, whose weights are refreshed from the policy after every update. Either way the log-probs
PPO optimises are recomputed by the training model in one teacher-forced pass, so both backends feed
the loss the same numbers. Log-probs are of the temperature-scaled distribution that was sampled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rl4rec.policy.shared_prefix import generate_with_shared_prefix
from rl4rec.training.ppo.losses import entropy_from_logits
from rl4rec.training.ppo.value import PolicyAndValue

logger = logging.getLogger(__name__)


@dataclass
class Rollout:
    """One rollout batch; completion tensors are ``[B, T]`` and right-padded after EOS."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    texts: list[str]
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.prompt_ids.shape[0])

    def inputs(self, rows: Any = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, position_ids)`` of prompt + completion for ``rows``."""
        ids = torch.cat([self.prompt_ids[rows], self.completion_ids[rows]], dim=1)
        mask = torch.cat([self.prompt_mask[rows], self.completion_mask[rows]], dim=1)
        # The positions generate() used with left padding: count real tokens only.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, positions

    def completion_id_lists(self) -> list[list[int]]:
        return [
            ids[m.bool()].tolist() for ids, m in zip(self.completion_ids, self.completion_mask, strict=True)
        ]


def stream_indices(step: int, n: int, batch_size: int, local_batch: int, rank: int, seed: int) -> list[int]:
    """Dataset rows of ``step`` (1-based) for process ``rank``: a seeded permutation per epoch, read as one stream.

    A pure function of the step, so a resumed run reads the same prompts as an uninterrupted one, and
    a step that crosses an epoch boundary takes the rest of one epoch and the start of the next.
    """
    start = (step - 1) * batch_size + rank * local_batch
    out, perms = [], {}
    for pos in range(start, start + local_batch):
        epoch = pos // n
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        out.append(int(perms[epoch][pos % n]))
    return out


def eos_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (chat models may have several)."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update(extra if isinstance(extra, list) else [extra])
    return sorted(i for i in ids if i is not None)


def mask_after_eos(
    ids: torch.Tensor, eos_ids: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask 1 up to and including the first EOS (all 1 without EOS); tokens after it become ``pad_id``."""
    is_eos = torch.isin(ids, torch.tensor(list(eos_ids), device=ids.device))
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    mask = (~after).long()
    return ids.masked_fill(after, pad_id), mask


def tokenize_prompts(tokenizer: Any, texts: Sequence[str], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if tokenizer.padding_side != "left":
        raise ValueError("PPO rollouts need a left-padding tokenizer (rl4rec.policy.load_policy sets it)")
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


class Sampler(Protocol):
    """PPO's rollout backend: completion ids for a batch of left-padded prompts."""

    def sample(self, policy: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
               shared_prefix: bool = False) -> torch.Tensor: ...  # fmt: skip

    def sync_weights(self) -> None: ...


class HFSampler:
    """``model.generate`` with temperature / top-p sampling (top-k off, as in the seed's vLLM params)."""

    def __init__(
        self,
        tokenizer: Any,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
    ) -> None:
        self.tokenizer = tokenizer
        self.kwargs = {
            "do_sample": True,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": 0,
            "max_new_tokens": max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
        }

    def sample(
        self, policy: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, shared_prefix: bool = False
    ) -> torch.Tensor:
        """Completion ids; ``shared_prefix`` prefills each distinct prompt once (the rows that repeat it share it)."""
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                if shared_prefix:
                    out = generate_with_shared_prefix(policy, prompt_ids, prompt_mask, **self.kwargs)
                else:
                    out = policy.generate(input_ids=prompt_ids, attention_mask=prompt_mask, **self.kwargs)
        finally:
            policy.train(was_training)
        return out[:, prompt_ids.shape[1] :]

    def sync_weights(self) -> None:
        """HF generation reads the live weights; nothing to do."""


class VLLMSampler:
    """TRL's colocated vLLM engine (CUDA only); weights are pushed from the policy after each update."""

    def __init__(self, policy: Any, accelerator: Any, tokenizer: Any, config: Any) -> None:
        from trl.generation.vllm_generation import VLLMGeneration

        self.tokenizer = tokenizer
        self.engine = VLLMGeneration(
            model=policy,
            accelerator=accelerator,
            processing_class=tokenizer,
            mode="colocate",
            tensor_parallel_size=config.vllm_tensor_parallel_size,
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            max_model_length=config.max_length + config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            max_completion_length=config.max_new_tokens,
        )

    def sample(
        self, policy: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, shared_prefix: bool = False
    ) -> torch.Tensor:
        """Completion ids (vLLM shares prefixes by itself)."""
        prompts = [ids[m.bool()].tolist() for ids, m in zip(prompt_ids, prompt_mask, strict=True)]
        _, completions, _, _ = self.engine.generate(prompts=prompts, images=None, num_generations=1)
        width = max(1, *(len(c) for c in completions))
        out = torch.full((len(completions), width), self.tokenizer.pad_token_id, dtype=torch.long)
        for row, ids in enumerate(completions):
            out[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        return out.to(prompt_ids.device)

    def sync_weights(self) -> None:
        self.engine.sync_weights()


def generate_rollout(
    sampler: Sampler,
    policy: Any,
    tokenizer: Any,
    prompt_texts: Sequence[str],
    eos_ids: Sequence[int],
    device: Any,
    shared_prefix: bool = False,
) -> Rollout:
    prompt_ids, prompt_mask = tokenize_prompts(tokenizer, prompt_texts, device)
    raw = sampler.sample(policy, prompt_ids, prompt_mask, shared_prefix)
    completion_ids, completion_mask = mask_after_eos(raw, eos_ids, tokenizer.pad_token_id)
    rollout = Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, texts=[])
    rollout.texts = [
        t.strip() for t in tokenizer.batch_decode(rollout.completion_id_lists(), skip_special_tokens=True)
    ]
    return rollout


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probability of ``ids`` under ``softmax(logits / temperature)``, ``[B, T]``."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def score_rollout(
    model: PolicyAndValue,
    reference: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor],
    rollout: Rollout,
    temperature: float,
    batch_size: int,
    autocast: Callable[[], Any],
    shared_prefix: bool = False,
) -> Rollout:
    """Fill in the policy's log-probs, entropy and values and the reference's log-probs (no gradients).

    ``reference(ids, mask, positions, n_tokens, shared_prefix)`` gives the reference's logits.
    """
    n_tokens = rollout.completion_ids.shape[1]
    parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref": [], "values": [], "entropy": []}
    was_training = model.training
    model.eval()
    try:
        for rows in chunks(rollout.size, batch_size):
            ids, mask, positions = rollout.inputs(rows)
            targets = rollout.completion_ids[rows]
            with autocast():
                logits, values = model(ids, mask, positions, n_tokens, shared_prefix=shared_prefix)
                ref_logits = reference(ids, mask, positions, n_tokens, shared_prefix)
            parts["logprobs"].append(token_logprobs(logits, targets, temperature))
            parts["entropy"].append(entropy_from_logits(logits.float() / temperature))
            parts["ref"].append(token_logprobs(ref_logits, targets, temperature))
            assert values is not None
            parts["values"].append(values.float())
    finally:
        model.train(was_training)
    maskf = rollout.completion_mask.float()
    rollout.logprobs = torch.cat(parts["logprobs"]) * maskf
    rollout.ref_logprobs = torch.cat(parts["ref"]) * maskf
    rollout.values = torch.cat(parts["values"]) * maskf
    rollout.entropy = torch.cat(parts["entropy"]) * maskf
    return rollout
