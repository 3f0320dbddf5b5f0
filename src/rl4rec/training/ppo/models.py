"""The models of a PPO run: the policy (LoRA-wrapped or not), its value head, and the frozen reference.

Kept apart from the step loop in :mod:`.trainer`: what a run trains and resumes from is decided here once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from rl4rec.training.ppo import state as S
from rl4rec.training.ppo.value import PolicyAndValue, backbone_of, completion_states
from rl4rec.training.run_context import lora_config


def build_models(config: Any, resume_from: Path | None) -> tuple[PolicyAndValue, Any, Any]:
    """``(policy and value, tokenizer, reference)``; the reference is None with LoRA (the policy with its
    adapters switched off serves as the reference)."""
    from rl4rec.policy.loading import load_policy

    policy, tokenizer = load_policy(config.model_name, device="cpu")
    peft_config = lora_config(config)
    value_backbone = copy.deepcopy(backbone_of(policy)) if config.value_model == "separate" else None
    if peft_config is None:
        ref_model = copy.deepcopy(policy).eval().requires_grad_(False)
        if resume_from is not None:
            policy = S.load_policy_weights(resume_from, policy)
    else:
        from peft import get_peft_model

        ref_model = None
        policy = get_peft_model(policy, peft_config)
        if value_backbone is not None:  # its own adapters (a fresh config: peft resolves names in place)
            value_lora = lora_config(config)
            value_lora.task_type = None
            value_backbone = get_peft_model(value_backbone, value_lora)
        if resume_from is not None:
            S.load_policy_weights(resume_from, policy)
    if config.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = PolicyAndValue(policy, config.value_model, value_backbone)
    if resume_from is not None:
        S.load_value(resume_from, model)
    for module in model.modules():  # ratios must be exactly 1 before the first update
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tokenizer, ref_model


def reference_logits(ref_model: Any, policy: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                     n: int, shared_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """The reference policy's logits at the ``n`` completion positions (no gradients are asked of it): the frozen
    copy, or with LoRA the policy with its adapters switched off."""
    if ref_model is not None:
        logits, _ = completion_states(ref_model, ids, mask, positions, n, shared_prefix)
    else:
        with policy.disable_adapter():
            logits, _ = completion_states(policy, ids, mask, positions, n, shared_prefix)
    assert logits is not None
    return logits
