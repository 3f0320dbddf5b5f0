"""The flag groups ``rl4rec train`` and ``rl4rec sft`` both take: held-out evaluation during training and LoRA.

Kept apart from :mod:`rl4rec.training.config` so that both commands' configs build on one definition of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from rl4rec.config_cli import opt


@dataclass
class HeldOutFlags:
    """Held-out evaluation during training (``rl4rec train`` and ``rl4rec sft``): :mod:`rl4rec.training.heldout`."""

    eval_steps: int = opt(
        0,
        "Held-out evaluation at step 0, every N steps and at the end: greedy queries of --eval_users seeded users "
        "of --eval_split, ranked as `rl4rec evaluate` ranks them, logged as eval/... (0 = off).",
        at_least=0,
    )
    eval_users: int = opt(
        128, "Users of the held-out sample (the same users at every evaluation).", at_least=2
    )
    eval_split: str = opt(
        "valid",
        "valid | test: choose settings on valid; read test once per reported row.",
        one_of=("valid", "test"),
    )
    eval_fusion: str | None = opt(
        None,
        "Fusion file (from `rl4rec tune-fusion`): also rank each query fused with the history (eval/fused/...).",
    )
    eval_seed: int = opt(0, "Seed of the held-out user sample (as `rl4rec evaluate --seed`).")
    eval_batch_size: int = opt(
        64,
        "Prompts per generate call in held-out evaluation (as `rl4rec evaluate --batch_size`; larger batches "
        "decode faster on CPU).",
        at_least=1,
    )
    keep_best: str | None = opt(
        None,
        "Keep the policy with the best held-out METRIC in checkpoint_best/ (auc, ndcg@10, hit@10, mrr@10; "
        "fused/auc etc. with --eval_fusion).",
    )


@dataclass
class LoraFlags:
    """LoRA adapters (``rl4rec train`` and ``rl4rec sft``)."""

    use_peft: bool = opt(False, "Train LoRA adapters instead of all weights.")
    lora_r: int = opt(16, "LoRA rank.", at_least=1)
    lora_alpha: int = opt(32, "LoRA alpha.")
    lora_dropout: float = opt(0.05, "LoRA dropout.", at_least=0, at_most=1)
