"""Compute each prompt once per group: shared-prefix forwards for RL updates and for generation.

GRPO, RLOO and multi-sample PPO put every prompt in a batch G times, once per completion, and the
plain computation runs the prompt through the model G times: in generation (prefill) and in every
log-prob forward and backward. With 256-token prompts and 32-token completions that is 3x the
unique tokens at G = 4. Here the distinct prompts run once; their key/value cache (inside the
autograd graph when gradients are on) is indexed out to every row, and only each row's own tokens
run per row. Attention then sees exactly the keys and values the plain computation sees, so
log-probs and gradients are equal up to floating-point summation order (the gradient of the
shared prompt is the sum over its rows, as autograd computes it through the index). Prefix
Grouper (arXiv 2506.05433) proves the same equality for a packed-attention formulation.

The split is ``prompt[:-1]`` (shared, cached) and ``[prompt[-1], completion[:-1]]`` (per row): output
position ``t`` of the second forward predicts completion token ``t``. Prompts must be left-padded
(their last column real), as every generation path here pads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class PrefixGroups:
    """Rows that share a prompt: ``first[u]`` is a row holding distinct prompt ``u``; ``inverse[r]`` is row r's ``u``."""

    first: torch.Tensor
    inverse: torch.Tensor

    @property
    def n_rows(self) -> int:
        return int(self.inverse.numel())

    @property
    def n_unique(self) -> int:
        return int(self.first.numel())

    @property
    def shares(self) -> bool:
        """True when at least two rows share a prompt (otherwise sharing only adds a second forward)."""
        return self.n_unique < self.n_rows

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A row order with the groups in random order and each group's rows together (in their order)."""
        perm = torch.randperm(self.n_unique, generator=generator)
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(self.n_unique)
        rows = torch.arange(self.n_rows)
        # sort by (random group rank, original row index): stable, so rows keep their order within a group
        key = rank[self.inverse.cpu()] * self.n_rows + rows
        return rows[torch.argsort(key)]


def find_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> PrefixGroups:
    """Group rows whose prompts are identical (same real tokens, same padding)."""
    key = prompt_ids.masked_fill(prompt_mask == 0, -1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    n_unique = int(inverse.max()) + 1 if inverse.numel() else 0
    rows = torch.arange(inverse.numel(), device=inverse.device)
    first = torch.full((n_unique,), inverse.numel(), dtype=torch.long, device=inverse.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return PrefixGroups(first=first, inverse=inverse)


def token_ratio(prompt_mask: torch.Tensor, completion_mask: torch.Tensor, groups: PrefixGroups) -> float:
    """Tokens the plain computation processes per token the shared one processes (the ideal speed-up)."""
    plain = float(prompt_mask.sum() + completion_mask.sum())
    shared = float(prompt_mask[groups.first].sum() + completion_mask.sum())
    return plain / max(shared, 1.0)


def applicable(prompt_mask: torch.Tensor, groups: PrefixGroups) -> bool:
    """Sharing pays and is exact: rows repeat a prompt, prompts are left-padded and at least 2 tokens wide."""
    return groups.shares and prompt_mask.shape[1] >= 2 and bool(prompt_mask[:, -1].all())


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    if cache is None:
        raise TypeError(f"{type(output).__name__} returned no key/value cache; shared prefixes need one")
    return cache


def prefix_cache(
    model: Callable[..., Any],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    groups: PrefixGroups,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> Any:
    """The key/value cache of ``prompt[:-1]``, computed once per distinct prompt and indexed out to every row.

    ``model`` is a causal LM or a bare backbone called with HF keywords; ``kwargs`` go to that call
    (e.g. ``logits_to_keep=1`` so a causal LM projects one position, not the whole prompt).
    """
    first = groups.first
    call: dict[str, Any] = {
        "input_ids": prompt_ids[first, :-1],
        "attention_mask": prompt_mask[first, :-1],
        "use_cache": True,
        **kwargs,
    }
    if position_ids is not None:
        call["position_ids"] = position_ids[first, : prompt_ids.shape[1] - 1]
    cache = _cache_of(model(**call))
    cache.batch_select_indices(groups.inverse)  # differentiable indexing: gradients sum over a group's rows
    return cache


def forward_with_shared_prefix(
    model: Callable[..., Any],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    groups: PrefixGroups | None = None,
    position_ids: torch.Tensor | None = None,
    prefix_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """``model``'s output over the completion positions, the prompt computed once per group.

    Position ``t`` of the output is the state that predicts completion token ``t`` (as positions
    ``P - 1 + t`` of a plain forward over ``prompt + completion``, ``P`` the padded prompt width).
    ``position_ids`` (optional, ``[B, P + T]``) are those of the plain forward; without them the model
    numbers positions as it would over the whole sequence. ``kwargs`` go to the per-row forward.
    """
    groups = find_groups(prompt_ids, prompt_mask) if groups is None else groups
    width = prompt_ids.shape[1]
    cache = prefix_cache(model, prompt_ids, prompt_mask, groups, position_ids, **(prefix_kwargs or {}))
    call: dict[str, Any] = {
        "input_ids": torch.cat([prompt_ids[:, -1:], completion_ids[:, :-1]], dim=1),
        "attention_mask": torch.cat([prompt_mask, completion_mask[:, :-1]], dim=1),
        "cache": cache,
        **kwargs,
    }
    if position_ids is not None:
        call["position_ids"] = position_ids[:, width - 1 : width - 1 + completion_ids.shape[1]]
    return model(**call)


def generation_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids as HF ``generate`` numbers a left-padded batch (real tokens from 0; pads 0)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def generate_with_shared_prefix(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generate: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``generate`` with each distinct prompt prefilled once and its cache shared by the rows that repeat it.

    Returns what ``generate`` returns (prompt + completion ids); the sampled tokens come from the
    same logits and the same random draws as a plain call, so with the same seed the completions
    are the same up to floating-point ties.
    """
    generate = model.generate if generate is None else generate
    groups = find_groups(input_ids, attention_mask)
    if not applicable(attention_mask, groups) or "cache" in kwargs or "past_key_values" in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    positions = generation_positions(attention_mask)
    with torch.no_grad():
        cache = prefix_cache(model, input_ids, attention_mask, groups, positions, logits_to_keep=1)
    return generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)


@contextmanager
def sharing_generate(model: Any) -> Iterator[None]:
    """Within the block, ``model.generate`` prefills each distinct prompt once (see :func:`generate_with_shared_prefix`).

    For callers that own the ``generate`` call (TRL's HF generation path): the instance attribute
    shadows the class method and is removed on exit.
    """
    original = model.generate

    def generate(*args: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> Any:  # fmt: skip
        if args or input_ids is None or attention_mask is None:
            return original(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return generate_with_shared_prefix(model, input_ids, attention_mask, generate=original, **kwargs)

    had_own = "generate" in vars(model)
    model.generate = generate
    try:
        yield
    finally:
        if had_own:
            model.generate = original
        else:
            del model.generate


def gradient_checkpointing_on(model: Any) -> bool:
    """Checkpointed layers drop the cache in training (transformers), so shared prefixes cannot run there."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
