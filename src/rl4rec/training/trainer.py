"""``TRLTrainer(args).train()``: the seed's Python entry point.

Builds the pieces in pipeline order (policy -> prompts -> reward -> algorithm), then trains with
checkpoints, logs and resume. ``args`` may be a :class:`TrainConfig`, an ``argparse.Namespace``
or a dict with the seed's flag names. ``reward_fn`` (or ``--reward_fn module:attr``) replaces the
built-in retrieval reward: an ``RLRewardFunction`` subclass or instance, or a TRL-style function.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from rl4rec.devices import resolve_device
from rl4rec.errors import ConfigError, ServiceError
from rl4rec.rewards.boundary import build_reward, training_reward
from rl4rec.run_layout import FINAL_NAME
from rl4rec.training.checkpoints import service_stopped_error, step_dir
from rl4rec.training.config import TrainConfig
from rl4rec.training.distributed import is_main_process, setup_process
from rl4rec.training.run_context import RunContext, TrainResult, set_seed
from rl4rec.training.run_log import CompletionRecorder
from rl4rec.training.tracking import resolve_log_with

logger = logging.getLogger(__name__)


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
        #: Run directory, logs, callbacks and (once train() starts) the reward: what every algorithm shares.
        self.run = RunContext(self.config, callbacks=list(callbacks or []))

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def reward_fn(self) -> Any:
        """The reward the run trains on (None until ``train()`` builds it)."""
        return self.run.reward_fn

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
        run = self.run
        run.reward_fn = build_reward(config, self.custom_reward)
        resume_from = run.resume_checkpoint()
        run.prepare(resume_from)
        set_seed(config.seed)
        if config.algorithm == "ppo":
            from rl4rec.training.ppo import run_ppo

            ignored = [f"--{n}" for n in ("loss_type", "beta")
                       if getattr(config, n) != getattr(TrainConfig, n)]  # fmt: skip
            if ignored:
                logger.warning(
                    "PPO ignores %s (GRPO/RLOO flags); its KL penalty is --kl_coef.", ", ".join(ignored)
                )
            return run_ppo(run, device, resume_from)
        return self._train_trl(device, resume_from)

    def _train_trl(self, device: str, resume_from: Path | None) -> TrainResult:
        from rl4rec.policy.loading import load_policy
        from rl4rec.training.data import build_train_dataset
        from rl4rec.training.trl_backend import build_run_trainer, epoch_limited_steps, trl_args

        config, run = self.config, self.run
        args = trl_args(config, device)  # validates the TRL-side mapping before loading anything
        reward_fn = run.reward_fn
        model, tokenizer = load_policy(config.model_name, device="cpu")
        train_dataset = build_train_dataset(config, tokenizer)
        args.max_steps = epoch_limited_steps(config, len(train_dataset))
        if args.max_steps < config.max_steps:
            logger.info("training for %d steps (--num_epochs %g ends before --max_steps)", args.max_steps,
                        config.num_epochs)  # fmt: skip
        recorder = CompletionRecorder(run.completions_log, config.log_completions)
        recorder = recorder if is_main_process() else None  # completions.jsonl: rank 0's rollouts only
        # Async with the Ray service: TRL then awaits several reward calls at once.
        reward = training_reward(reward_fn, recorder=recorder, concurrent=config.retrieval == "ray")
        trainer = build_run_trainer(config.algorithm, run, model, tokenizer, args, train_dataset, [reward],
                                    max_new_tokens=config.max_new_tokens)  # fmt: skip
        if resume_from is not None:
            logger.info("resuming from %s", resume_from)
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except ServiceError as exc:
            trainer._save_checkpoint(trainer.model, trial=None)
            saved = step_dir(run.run_dir, trainer.state.global_step)
            raise service_stopped_error(exc, trainer.state.global_step, saved) from None
        final = run.run_dir / FINAL_NAME
        if trainer.args.should_save:  # rank 0 of several processes (DDP: every rank has the same weights)
            run.save_final(lambda folder: trainer.save_model(str(folder)), tokenizer)
        return run.result(final, trainer.state.global_step)
