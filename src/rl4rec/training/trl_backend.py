"""GRPO and RLOO through TRL's own trainers, with rl4rec's checkpoints, timing and logs.

The subclasses change only plumbing: where checkpoints go (``checkpoint_step_N``, atomically),
how a step's time splits into generation / reward / update, and what metrics.jsonl receives.
The optimisation itself is TRL's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
from trl.trainer.utils import split_tensor_dict

from rl4rec.io import atomic_write_text
from rl4rec.policy.precision import resolve_bf16
from rl4rec.policy.shared_prefix import (
    applicable,
    find_groups,
    forward_with_shared_prefix,
    gradient_checkpointing_on,
    sharing_generate,
    token_ratio,
)
from rl4rec.run_layout import RUN_CONFIG
from rl4rec.training.callbacks import StepTimer
from rl4rec.training.checkpoints import prune_step_checkpoints, publish, step_dir
from rl4rec.training.config import TrainConfig
from rl4rec.training.distributed import accumulation_steps

logger = logging.getLogger(__name__)


class CheckpointPublishMixin:
    """Publishes HF's ``checkpoint-N`` as ``checkpoint_step_N`` (atomically) with the run config.

    Mixed into every HF/TRL trainer rl4rec runs (GRPO, RLOO, SFT); takes ``rl4rec_config`` (any config
    with ``to_json()``) as a keyword of ``__init__``. Build them with :func:`build_trainer`.
    """

    rl4rec_config: Any

    def __init__(self, *args: Any, rl4rec_config: Any, **kwargs: Any) -> None:
        self.rl4rec_config = rl4rec_config  # before the base init: nothing there may miss it
        super().__init__(*args, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # TRL/HF write output_dir/checkpoint-N (model, tokenizer, optimizer, scheduler, RNG, state);
        # a crash there leaves only that unofficial name, which --resume ignores.
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        # Several processes: each rank writes its own rng_state_{rank}.pth into checkpoint-N; publish
        # (rename) the folder only when every rank is done with it.
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if not self.args.should_save:  # type: ignore[attr-defined]
            return
        step = self.state.global_step  # type: ignore[attr-defined]
        written = Path(self.args.output_dir) / f"checkpoint-{step}"  # type: ignore[attr-defined]
        atomic_write_text(written / RUN_CONFIG, self.rl4rec_config.to_json())
        publish(written, step_dir(self.args.output_dir, step))  # type: ignore[attr-defined]
        logger.info("saved %s", step_dir(self.args.output_dir, step))  # type: ignore[attr-defined]
        for old in prune_step_checkpoints(self.args.output_dir, self.rl4rec_config.save_total_limit):  # type: ignore[attr-defined]
            logger.info("removed %s (--save_total_limit)", old)


class StepTimingMixin:
    """``time/step`` (and its generation / reward / update parts) on every logged step of every rl4rec trainer,
    SFT and DPO included, so a run's cost (``rl4rec report``, the experiments table) counts its steps, not only
    its held-out evaluations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.step_timer = StepTimer()
        super().__init__(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.step_timer.timed("step", super().training_step, *args, **kwargs)  # type: ignore[misc]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training-step log (not the end-of-training summary)
            logs.update(self.step_timer.flush())
        super().log(logs, start_time)  # type: ignore[misc]


class Rl4recTrainerMixin(StepTimingMixin, CheckpointPublishMixin):
    """Mixed into TRL's GRPO/RLOO trainers: shared prefixes, group-keeping micro-batches, generation timing."""

    rl4rec_config: TrainConfig
    #: Plain-computation tokens per shared-computation token of the last rollout batch (the ideal speed-up).
    prefix_token_ratio: float | None = None

    def _generate_single_turn(self, prompt_ids: Any, images: Any, multimodal_fields: Any, *args: Any,
                              **kwargs: Any) -> Any:  # fmt: skip
        generate = super()._generate_single_turn  # type: ignore[misc]
        plain_hf = not (self.use_vllm or self.use_transformers_continuous_batching or multimodal_fields)  # type: ignore[attr-defined]
        if self.rl4rec_config.shared_prefix and plain_hf:
            # TRL's HF path calls generate() on the unwrapped model with every prompt repeated G times
            with sharing_generate(self.accelerator.unwrap_model(self.model_wrapped)):  # type: ignore[attr-defined]
                return self.step_timer.timed("generation", generate, prompt_ids, images, multimodal_fields, *args,
                                             **kwargs)  # fmt: skip
        return self.step_timer.timed(
            "generation", generate, prompt_ids, images, multimodal_fields, *args, **kwargs
        )

    def _prepare_inputs(self, generation_batch: dict[str, Any]) -> dict[str, Any]:
        """TRL 1.16's ``_prepare_inputs``, except that the shuffle keeps each prompt's completions together.

        TRL shuffles the rows of a generation batch before cutting it into micro-batches, which scatters
        a group over several of them and leaves little to share. Moving whole groups instead changes
        only which rows share a micro-batch; the step's gradient is the same sum (dapo, grpo and dr_grpo
        normalise over the whole batch or per row; bnpo normalises per micro-batch). Used with and
        without ``--shared_prefix`` so that both draw the same random numbers.
        """
        if not self.model.training or "pixel_values" in generation_batch:  # type: ignore[attr-defined]
            return super()._prepare_inputs(generation_batch)  # type: ignore[misc]
        generate_every = self.args.steps_per_generation * self.num_iterations  # type: ignore[attr-defined]
        if self._step % generate_every == 0 or self._buffered_inputs is None:  # type: ignore[attr-defined]
            batch = self._generate_and_score_completions(generation_batch)  # type: ignore[attr-defined]
            groups = find_groups(batch["prompt_ids"], batch["prompt_mask"])
            self.prefix_token_ratio = token_ratio(batch["prompt_mask"], batch["completion_mask"], groups)
            order = groups.order()
            batch = permute_rows(batch, order)
            self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)  # type: ignore[attr-defined]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]  # type: ignore[attr-defined]

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's per-token log-probs and entropies, each distinct prompt of a chunk forwarded once.

        Falls back to TRL's own computation where sharing is not exact or not possible: multimodal
        inputs, MoE auxiliary losses, gradient checkpointing (it drops the cache), chunks without a
        repeated prompt.
        """
        plain = super()._get_per_token_logps_and_entropies  # type: ignore[misc]
        share = (
            self.rl4rec_config.shared_prefix
            and not compute_aux_loss
            and all(v is None for v in multimodal.values())
            and not (torch.is_grad_enabled() and gradient_checkpointing_on(model))
        )
        if not share:
            return plain(model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                         compute_aux_loss, **multimodal)  # fmt: skip
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
            prompt_ids, prompt_mask = ids[:, :-logits_to_keep], mask[:, :-logits_to_keep]
            groups = find_groups(prompt_ids, prompt_mask)
            if not applicable(prompt_mask, groups):
                lp, ent, _ = plain(model, ids, mask, logits_to_keep, compute_entropy=compute_entropy)
            else:
                completion_ids, completion_mask = ids[:, -logits_to_keep:], mask[:, -logits_to_keep:]
                with self.accelerator.autocast():  # type: ignore[attr-defined]
                    out = forward_with_shared_prefix(
                        model, prompt_ids, prompt_mask, completion_ids, completion_mask, groups=groups,
                        prefix_kwargs={"logits_to_keep": 1},
                        shift_labels=completion_ids.masked_fill(completion_mask == 0, -100),
                        fused_lm_head=True,
                    )  # fmt: skip
                lp, ent = out.log_probs, out.entropy
            logps.append(lp)
            if compute_entropy:
                entropies.append(ent)
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
        return self.step_timer.timed("reward", super()._calculate_rewards, *args, **kwargs)  # type: ignore[misc]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.prefix_token_ratio is not None:
            # tokens of the plain computation per token of the shared one: the ideal speed-up
            logs["shared_prefix/token_ratio"] = self.prefix_token_ratio
        super().log(logs, start_time)


def permute_rows(batch: dict[str, Any], order: torch.Tensor) -> dict[str, Any]:
    """Every per-row value of a TRL generation batch in ``order`` (scalars and None kept)."""

    def permute(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[order.to(value.device)]
        return [value[i] for i in order.tolist()]

    return {key: permute(value) for key, value in batch.items()}


class Rl4recGRPOTrainer(Rl4recTrainerMixin, GRPOTrainer):
    pass


class Rl4recRLOOTrainer(Rl4recTrainerMixin, RLOOTrainer):
    pass


def _sft_class() -> type:
    from trl import SFTTrainer

    class Rl4recSFTTrainer(StepTimingMixin, CheckpointPublishMixin, SFTTrainer):
        pass

    return Rl4recSFTTrainer


def _dpo_class() -> type:
    from trl import DPOTrainer

    class Rl4recDPOTrainer(StepTimingMixin, CheckpointPublishMixin, DPOTrainer):
        pass

    return Rl4recDPOTrainer


def build_trainer(
    kind: str,
    config: Any,
    model: Any,
    tokenizer: Any,
    args: Any,
    train_dataset: Any,
    reward_funcs: list[Any] | None = None,
    callbacks: list[Any] | None = None,
    peft_config: Any = None,
    ref_model: Any = None,
) -> Any:
    """The one way an rl4rec HF trainer is made: ``kind`` grpo | rloo | sft | dpo, its config and callbacks given
    at construction (HF's console printer removed: rl4rec's progress bar and metrics.jsonl replace it)."""
    from transformers.trainer_callback import PrinterCallback

    cls = {"grpo": Rl4recGRPOTrainer, "rloo": Rl4recRLOOTrainer}.get(kind) or (
        {"sft": _sft_class, "dpo": _dpo_class}[kind]() if kind in ("sft", "dpo") else None
    )
    if cls is None:
        raise ValueError(f"unknown trainer kind {kind!r}: grpo, rloo, sft or dpo")
    extra: dict[str, Any] = (
        {"reward_funcs": reward_funcs}
        if kind in ("grpo", "rloo")
        else {"ref_model": ref_model}
        if kind == "dpo"
        else {}
    )
    trainer = cls(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                  peft_config=peft_config, callbacks=list(callbacks or []), rl4rec_config=config, **extra)  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    return trainer


def build_run_trainer(kind: str, run: Any, model: Any, tokenizer: Any, args: Any, train_dataset: Any,
                      reward_funcs: list[Any] | None = None, max_new_tokens: int = 64,
                      merge_lora: bool = False, ref_model: Any = None) -> Any:  # fmt: skip
    """:func:`build_trainer` for a run: metrics.jsonl, the progress bar, the run's own callbacks, LoRA from its
    config, and its held-out schedule (``--eval_steps``)."""
    from rl4rec.training.callbacks import MetricsFileCallback, ProgressCallback, add_heldout_callback
    from rl4rec.training.run_context import lora_config

    metrics_cb = MetricsFileCallback(run.metrics_log)
    trainer = build_trainer(kind, run.config, model, tokenizer, args, train_dataset, reward_funcs,
                            [metrics_cb, ProgressCallback(metrics_cb), *run.callbacks], lora_config(run.config),
                            ref_model)  # fmt: skip
    add_heldout_callback(trainer, run, tokenizer, max_new_tokens, merge_lora=merge_lora)
    return trainer


def report_to(config: TrainConfig) -> list[str]:
    """HF ``report_to`` for ``--log_with`` (the backend must already be checked as installed)."""
    return [] if config.log_with == "none" else [config.log_with]


def epoch_limited_steps(config: TrainConfig, n_prompts: int) -> int:
    """``--max_steps`` or ``--num_epochs`` passes over the prompts, whichever ends first.

    transformers lets a positive ``max_steps`` override ``num_train_epochs`` entirely, so without this
    the seed's defaults (3 epochs, 10,000 steps) would run 10,000 GRPO steps while PPO stops after 3
    epochs. One TRL step uses ``batch_size / num_generations`` prompts and reuses each rollout batch
    for ``num_iterations`` (= ``--ppo_epochs``) steps.
    """
    prompts_per_step = config.batch_size / config.num_generations / config.ppo_epochs
    return max(1, min(config.max_steps, math.ceil(config.num_epochs * n_prompts / prompts_per_step)))


def trl_args(config: TrainConfig, device: str) -> GRPOConfig | RLOOConfig:
    """Map the seed's flags onto TRL's config (documented in README.md, "Flag mapping")."""
    accumulation = accumulation_steps(config.batch_size, config.mini_batch_size)
    common: dict[str, Any] = {
        "output_dir": config.checkpoint_dir,
        "per_device_train_batch_size": config.mini_batch_size,
        "gradient_accumulation_steps": accumulation,
        "num_generations": config.num_generations,
        "max_completion_length": config.max_new_tokens,
        "num_iterations": config.ppo_epochs,
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "beta": config.beta,
        "max_grad_norm": config.max_grad_norm,
        "seed": config.seed,
        "data_seed": config.seed,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": None,
        "logging_steps": 1,
        "report_to": report_to(config),
        "run_name": Path(config.checkpoint_dir).name,
        "project": config.project_name,
        "disable_tqdm": True,  # rl4rec's own bar shows reward and ETA
        "log_completions": False,  # rl4rec writes completions.jsonl itself
        "activation_checkpointing": config.gradient_checkpointing,  # TRL's gradient_checkpointing alias is deprecated
        "use_cpu": device == "cpu",
        # CPU: transformers accepts bf16=True only with use_cpu=True; accelerate then wraps the model's forward
        # in torch.autocast("cpu", bfloat16) (fp32 weights and optimizer), generation included.
        "bf16": resolve_bf16(config.bf16, device),
        "use_vllm": config.use_vllm,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": config.vllm_tensor_parallel_size,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }
    if config.algorithm == "grpo":
        return GRPOConfig(loss_type=config.loss_type, scale_rewards=config.scale_rewards, **common)
    return RLOOConfig(**common)
