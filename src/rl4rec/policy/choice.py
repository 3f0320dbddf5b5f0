"""The policy as a chooser: one forward pass scores every candidate's letter.

A candidate-aware prompt with ``--task choose`` lists the recall stage's top K items as ``A. ...``,
``B. ...`` and asks for the letter of the one the user will want next. Generating an answer would
give one letter; reading the next-token distribution at the answer position gives a score for *every*
candidate from the same single forward pass, which is what a re-ranker needs (LlamaRec's verbalizer:
the label tokens' logits, softmaxed over the K labels only). Training is plain cross-entropy on the
target's letter (``rl4rec sft --task choose``, whose loss at that position is exactly this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rl4rec.data.prompts import LETTERS, Prompt
from rl4rec.errors import ConfigError


def label_token_ids(tokenizer: Any, k: int) -> list[int]:
    """Token ids of the letters ``A``.. (the k-th): each must be one token, or the scores would be partial."""
    if not 1 <= k <= len(LETTERS):
        raise ConfigError(f"a choice among {k} candidates needs 1..{len(LETTERS)} letters.")
    ids = []
    for letter in LETTERS[:k]:
        tokens = tokenizer.encode(letter, add_special_tokens=False)
        if len(tokens) != 1:
            raise ConfigError(
                f"the tokenizer splits the label {letter!r} into {len(tokens)} tokens; --task choose needs "
                "single-token letters (every Llama/Qwen/SmolLM tokenizer has them)."
            )
        ids.append(int(tokens[0]))
    return ids


def _prompt_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


@torch.no_grad()
def choice_logprobs(
    model: Any, tokenizer: Any, prompts: Sequence[Prompt], k: int, batch_size: int = 8
) -> np.ndarray:
    """``[n, k]`` log-probabilities of the letters A.. at each prompt's answer position (softmax over the k).

    Prompts are left-padded with explicit position ids, so a prompt scores the same alone or in a batch.
    """
    labels = torch.tensor(label_token_ids(tokenizer, k), dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = [_prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row) :] = 1
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)
            ).logits[:, -1, :]
            chosen = logits.float()[:, labels.to(device)]
            out.append(torch.log_softmax(chosen, dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)
