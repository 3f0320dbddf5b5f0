"""``TRLTrainer(args).train()``: the seed's Python entry point.

Builds the pieces in pipeline order (policy -> prompts -> reward -> algorithm), then trains with
checkpoints, logs and resume. ``args`` may be a :class:`TrainConfig`, an ``argparse.Namespace``
or a dict with the seed's flag names. ``reward_fn`` (or ``--reward_fn module:attr``) replaces the
built-in retrieval reward: an ``RLRewardFunction`` subclass or instance, or a TRL-style function.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.devices import resolve_device
from rl4rec.errors import ConfigError, ServiceError
from rl4rec.io import atomic_directory, atomic_write_text
from rl4rec.retrieval.embedder import EmbedderConfig
from rl4rec.training.checkpoints import (
    FINAL_NAME,
    RUN_CONFIG,
    clean_partial,
    latest_checkpoint,
    service_stopped_error,
    step_dir,
)
from rl4rec.training.config import TrainConfig, import_reward_fn
from rl4rec.training.distributed import is_main_process, setup_process
from rl4rec.training.run_log import COMPLETIONS_FILE, METRICS_FILE, CompletionRecorder, JsonlLog
from rl4rec.training.tracking import resolve_log_with

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path
    global_step: int
    metrics_file: Path


def as_config(args: Any) -> TrainConfig:
    if isinstance(args, TrainConfig):
        return args
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if isinstance(args, dict):
        return TrainConfig.from_dict(args)  # keys that are not flags (other scripts' options) are ignored
    raise ConfigError(
        f"TRLTrainer expects a TrainConfig, argparse.Namespace or dict, got {type(args).__name__}."
    )


def set_seed(seed: int) -> None:
    import torch
    from transformers import set_seed as hf_set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    hf_set_seed(seed)


def make_reward_function(config: TrainConfig, reward_fn: Any = None) -> Any:
    """The run's reward: ``reward_fn`` (else ``--reward_fn``) when given, else the retrieval reward.

    An ``RLRewardFunction`` subclass is built with the run's dataset, reward and retrieval settings;
    an instance or a TRL-style function ``f(prompts=, completions=, **columns)`` is used as it is.
    """
    from rl4rec.rewards.base import RLRewardFunction, create_reward_function

    if reward_fn is None and config.reward_fn is not None:
        reward_fn = import_reward_fn(config.reward_fn)
    if reward_fn is not None and not isinstance(reward_fn, type):
        if not callable(reward_fn):
            raise ConfigError(f"reward_fn must be callable, got {type(reward_fn).__name__}.")
        return reward_fn
    if reward_fn is not None and not issubclass(reward_fn, RLRewardFunction):
        raise ConfigError(
            f"reward_fn: the class {reward_fn.__name__} is not an RLRewardFunction subclass; pass a subclass, "
            "an instance or a TRL-style reward function."
        )
    factory = create_reward_function if reward_fn is None else reward_fn
    return factory(
        retrieval_service_name=config.retrieval_service_name,
        namespace=config.namespace,
        dataset_name=config.dataset_name,
        reward_type=config.reward_type,
        k=config.k,
        backend=config.retrieval,
        mixed_weight=config.mixed_weight,
        data_dir=config.data_dir,
        embedder=EmbedderConfig(model_name=config.embedder),
        address=config.ray_address,
        retry_timeout_s=config.retry_timeout_s,
        fusion=config.fusion,
    )


def _is_rl_reward(reward_fn: Any) -> bool:
    from rl4rec.rewards.base import RLRewardFunction

    return isinstance(reward_fn, RLRewardFunction)


def _sync_reward(reward_fn: Any) -> Any:
    """A TRL-style reward PPO can call: an ``async`` one (as TRL tells them apart) is run on each call."""
    from trl.trainer.utils import is_async_callable

    if not is_async_callable(reward_fn):
        return reward_fn

    def reward(**kwargs: Any) -> Any:
        return asyncio.run(reward_fn(**kwargs))

    reward.__name__ = getattr(reward_fn, "__name__", type(reward_fn).__name__)
    return reward


class TRLTrainer:
    """Train a query-writing policy with GRPO / RLOO (TRL) or PPO (rl4rec)."""

    def __init__(self, args: Any, reward_fn: Any = None, callbacks: list[Any] | None = None) -> None:
        self.config = as_config(args).validate()
        if reward_fn is not None and self.config.reward_fn is not None:
            raise ConfigError(
                f"two custom rewards: a reward_fn argument and --reward_fn {self.config.reward_fn}; give one."
            )
        #: The user's reward (RLRewardFunction subclass or instance, or TRL-style function); None = built in.
        self.custom_reward = reward_fn
        #: Extra transformers TrainerCallbacks (e.g. early stopping, custom logging).
        self.callbacks = list(callbacks or [])
        self.run_dir = Path(self.config.checkpoint_dir)
        self.metrics_log = JsonlLog(self.run_dir / METRICS_FILE)
        self.completions_log = JsonlLog(self.run_dir / COMPLETIONS_FILE)
        #: The reward function (set by train() before any model loads; PPO and TRL paths share it).
        self.reward_fn: Any = None

    # -- pieces ------------------------------------------------------------------------------------
    def resume_checkpoint(self) -> Path | None:
        if not self.config.resume:
            return None
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            logger.warning("--resume: no checkpoint_step_N in %s yet; starting from scratch", self.run_dir)
        return checkpoint

    def prepare_run_dir(self, resume_from: Path | None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not is_main_process():  # several processes: rank 0 owns the run directory
            return
        clean_partial(self.run_dir)
        for stale in self.run_dir.glob("checkpoint-*"):  # HF's own name: a save that never got published
            if stale.is_dir():
                import shutil

                shutil.rmtree(stale, ignore_errors=True)
        step = int(resume_from.name.rsplit("_", 1)[1]) if resume_from else 0
        for log in (self.metrics_log, self.completions_log):
            if resume_from is not None:
                log.truncate_after(step)
            elif log.path.exists():
                log.path.unlink()
        atomic_write_text(self.run_dir / RUN_CONFIG, self.config.to_json())

    def peft_config(self) -> Any:
        if not self.config.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )

    # -- run ---------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        config = self.config
        device = resolve_device(config.device)
        setup_process(device)
        if config.use_vllm and not device.startswith("cuda"):
            raise ConfigError("--use_vllm needs CUDA; drop it on CPU machines.")
        config.log_with = resolve_log_with(config)
        # The reward comes first: a missing service or dataset fails before the run directory is touched
        # and before minutes of model loading.
        self.reward_fn = make_reward_function(config, self.custom_reward)
        resume_from = self.resume_checkpoint()
        self.prepare_run_dir(resume_from)
        set_seed(config.seed)
        if config.algorithm == "ppo":
            from rl4rec.training.ppo import run_ppo

            ignored = [f"--{n}" for n in ("num_generations", "loss_type", "beta")
                       if getattr(config, n) != getattr(TrainConfig, n)]  # fmt: skip
            if ignored:
                logger.warning(
                    "PPO ignores %s (GRPO/RLOO flags); its KL penalty is --kl_coef.", ", ".join(ignored)
                )
            # An RLRewardFunction goes through PPO's own adapter (ranks and completions logged); any
            # other (TRL-style) function is PPO's reward as it is.
            custom = None if _is_rl_reward(self.reward_fn) else _sync_reward(self.reward_fn)
            return run_ppo(self, device, resume_from, reward=custom)
        return self._train_trl(device, resume_from)

    def _train_trl(self, device: str, resume_from: Path | None) -> TrainResult:
        from rl4rec.metrics import reward_name
        from rl4rec.policy.loading import load_policy
        from rl4rec.rewards.trl_adapter import to_async_trl_reward, to_trl_reward
        from rl4rec.training.callbacks import MetricsFileCallback, ProgressCallback, StepTimer
        from rl4rec.training.data import build_train_dataset
        from rl4rec.training.trl_backend import epoch_limited_steps, trainer_class, trl_args

        config = self.config
        args = trl_args(config, device)  # validates the TRL-side mapping before loading anything
        reward_fn = self.reward_fn
        model, tokenizer = load_policy(config.model_name, device="cpu")
        train_dataset = build_train_dataset(config, tokenizer)
        args.max_steps = epoch_limited_steps(config, len(train_dataset))
        if args.max_steps < config.max_steps:
            logger.info("training for %d steps (--num_epochs %g ends before --max_steps)", args.max_steps,
                        config.num_epochs)  # fmt: skip
        recorder = CompletionRecorder(self.completions_log, config.log_completions)
        recorder = recorder if is_main_process() else None  # completions.jsonl: rank 0's rollouts only
        if _is_rl_reward(reward_fn):
            adapter = to_async_trl_reward if config.retrieval == "ray" else to_trl_reward
            reward = adapter(reward_fn, name=reward_name(config.reward_type, config.k), recorder=recorder)
        else:  # a TRL-style function: TRL calls it as it is
            reward = reward_fn
        metrics_cb = MetricsFileCallback(self.metrics_log)
        trainer = trainer_class(config.algorithm)(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=self.peft_config(),
            callbacks=[metrics_cb, ProgressCallback(metrics_cb), *self.callbacks],
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # our progress bar and metrics.jsonl replace it
        trainer.rl4rec_config = config
        trainer.step_timer = StepTimer()
        if resume_from is not None:
            logger.info("resuming from %s", resume_from)
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except ServiceError as exc:
            trainer._save_checkpoint(trainer.model, trial=None)
            saved = step_dir(self.run_dir, trainer.state.global_step)
            raise service_stopped_error(exc, trainer.state.global_step, saved) from None
        final = self.run_dir / FINAL_NAME
        if trainer.args.should_save:  # rank 0 of several processes (DDP: every rank has the same weights)
            with atomic_directory(final) as tmp:
                trainer.save_model(str(tmp))
                tokenizer.save_pretrained(str(tmp))
                atomic_write_text(tmp / RUN_CONFIG, config.to_json())
            logger.info("final checkpoint: %s", final)
        return TrainResult(self.run_dir, final, trainer.state.global_step, self.metrics_log.path)
