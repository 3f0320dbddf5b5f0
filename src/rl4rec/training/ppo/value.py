"""The value function of PPO, and the one module that holds everything PPO optimises.

``--value_model head``: a scalar linear head on the policy's last hidden state (one forward pass gives
both logits and values; the backbone is shared). ``--value_model separate``: the head sits on its own
copy of the policy's backbone, so value regression cannot disturb the policy's features (twice the
memory). Either way the head starts at zero: the first values are 0, a neutral baseline for rewards
in [0, 1], and the value loss cannot push large gradients into a shared backbone at the start.

:class:`PolicyAndValue` is a single ``nn.Module`` so that ``accelerator.prepare`` wraps policy and value
function together (one DDP wrapper, one optimizer).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rl4rec.policy.shared_prefix import (
    applicable,
    find_groups,
    forward_with_shared_prefix,
    gradient_checkpointing_on,
)


def hidden_size(model: Any) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


class ValueHead(nn.Module):
    """``hidden [..., H] -> value [...]``, zero-initialised."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def backbone_of(model: Any) -> nn.Module:
    """The transformer body (no LM head) of a causal LM, e.g. ``LlamaForCausalLM.model``."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        raise TypeError(f"{type(model).__name__} exposes no backbone (base_model) for a separate value model")
    return base


def completion_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    n_last: int,
    shared_prefix: bool = False,
    causal_lm: bool = True,
    hidden: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(logits, last hidden states)`` at the ``n_last`` positions before the last one.

    Position ``i`` is the state that predicts completion token ``i`` when the input is
    ``prompt + completion`` and ``n_last`` is the completion length. ``causal_lm=False``: ``model`` is a
    bare backbone (no logits). ``shared_prefix``: rows with the same left-padded prompt compute it once
    (:mod:`rl4rec.policy.shared_prefix`; same outputs up to float rounding), where that applies.
    """
    width = input_ids.shape[1] - n_last
    prompt_ids, prompt_mask = input_ids[:, :width], attention_mask[:, :width]
    groups = find_groups(prompt_ids, prompt_mask) if shared_prefix else None
    checkpointed = torch.is_grad_enabled() and gradient_checkpointing_on(model)
    if groups is not None and n_last >= 1 and not checkpointed and applicable(prompt_mask, groups):
        out = forward_with_shared_prefix(
            model, prompt_ids, prompt_mask, input_ids[:, width:], attention_mask[:, width:], groups=groups,
            position_ids=position_ids, prefix_kwargs={"logits_to_keep": 1} if causal_lm else None,
            **({"output_hidden_states": hidden} if causal_lm else {}),
        )  # fmt: skip
        keep = slice(None)
    else:
        kwargs: dict[str, Any] = (
            {"logits_to_keep": n_last + 1, "output_hidden_states": hidden} if causal_lm else {}
        )
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                    **kwargs)  # fmt: skip
        keep = slice(-(n_last + 1), -1)
    if not causal_lm:
        return None, out.last_hidden_state[:, keep]
    return out.logits[:, keep], (out.hidden_states[-1][:, keep] if hidden else None)


class PolicyAndValue(nn.Module):
    """Causal-LM policy plus value function. ``forward`` returns logits and values of the last tokens."""

    def __init__(
        self, policy: nn.Module, mode: str = "head", value_backbone: nn.Module | None = None
    ) -> None:
        super().__init__()
        if mode not in ("head", "separate"):
            raise ValueError(f"value model must be 'head' or 'separate', got {mode!r}")
        if mode == "separate" and value_backbone is None:
            value_backbone = copy.deepcopy(backbone_of(policy))
        self.mode = mode
        self.policy = policy
        self.value_backbone = value_backbone if mode == "separate" else None
        self.value_head = ValueHead(hidden_size(policy))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        n_last: int,
        with_values: bool = True,
        shared_prefix: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and values at the ``n_last`` positions before the last one (see :func:`completion_states`)."""
        want_hidden = with_values and self.mode == "head"
        inputs = (input_ids, attention_mask, position_ids, n_last)
        logits, hidden = completion_states(
            self.policy, *inputs, shared_prefix, causal_lm=True, hidden=want_hidden
        )
        if not with_values:
            return logits, None
        if self.mode == "separate":
            assert self.value_backbone is not None
            _, hidden = completion_states(
                self.value_backbone, *inputs, shared_prefix, causal_lm=False, hidden=True
            )
        assert hidden is not None
        return logits, self.value_head(hidden)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Trainable parameters as (policy's, value function's own), for separate learning rates.

        With ``head`` the shared backbone counts as the policy's: it moves at the policy's rate.
        """
        own = [p for p in self.value_head.parameters() if p.requires_grad]
        if self.value_backbone is not None:
            own += [p for p in self.value_backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in own}
        policy = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return policy, own

    def value_state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable parameters of the value function (head, and the separate backbone's) for checkpoints."""
        out = {f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}
        if self.value_backbone is not None:
            trainable = {n for n, p in self.value_backbone.named_parameters() if p.requires_grad}
            out.update(
                {
                    f"value_backbone.{k}": v
                    for k, v in self.value_backbone.state_dict().items()
                    if k in trainable
                }
            )
        return {k: v.detach().contiguous().cpu() for k, v in out.items()}

    def load_value_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        head = {k.removeprefix("value_head."): v for k, v in state.items() if k.startswith("value_head.")}
        self.value_head.load_state_dict(head)
        backbone = {
            k.removeprefix("value_backbone."): v for k, v in state.items() if k.startswith("value_backbone.")
        }
        if backbone and self.value_backbone is None:
            raise ValueError("checkpoint holds a separate value model but --value_model is 'head'")
        if self.value_backbone is not None:
            if not backbone:
                raise ValueError("checkpoint holds only a value head but --value_model is 'separate'")
            missing = set(n for n, p in self.value_backbone.named_parameters() if p.requires_grad) - set(
                backbone
            )
            if missing:
                raise ValueError(f"checkpoint's value model lacks {len(missing)} trainable tensors")
            self.value_backbone.load_state_dict(backbone, strict=False)
