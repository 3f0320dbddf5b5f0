"""PPO with a value function, a frozen reference policy and KL-shaped rewards, on accelerate.

One *step* is one rollout batch (``--batch_size`` completions: ``batch_size / num_generations`` prompts,
``--num_generations`` completions each, 1 by default) followed by its update:
``--ppo_epochs`` passes over the batch in shuffled ``--mini_batch_size`` mini-batches, one optimizer
step per mini-batch (classic PPO). The sequence reward comes from the same reward function as GRPO
(through the TRL adapter, so ranks, components and completions are logged the same way) and is added
at the last generated token; every token also gets ``-kl_coef * KL`` against the reference policy.
Run it on CPU, one GPU, or several processes (``accelerate launch``: each process takes its share of
``--batch_size`` and whitens its own advantages; gradients are averaged by DDP).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import TrainerControl, TrainerState

from rl4rec.errors import ConfigError, ServiceError
from rl4rec.policy.generation import render_prompts
from rl4rec.policy.precision import resolve_bf16
from rl4rec.policy.shared_prefix import find_groups, token_ratio
from rl4rec.run_layout import FINAL_NAME
from rl4rec.training.checkpoints import prune_step_checkpoints, service_stopped_error, step_dir
from rl4rec.training.distributed import accumulation_steps
from rl4rec.training.heldout import heldout_schedule
from rl4rec.training.ppo import losses as L
from rl4rec.training.ppo import state as S
from rl4rec.training.ppo.accelerate_setup import release_accelerator_state
from rl4rec.training.ppo.models import build_models, reference_logits
from rl4rec.training.ppo.optim import build_optimizer
from rl4rec.training.ppo.rollout import (
    HFSampler,
    Rollout,
    VLLMSampler,
    chunks,
    eos_token_ids,
    generate_rollout,
    score_rollout,
    stream_indices,
    token_logprobs,
)
from rl4rec.training.ppo.value import PolicyAndValue
from rl4rec.training.run_context import RunContext, TrainResult

logger = logging.getLogger(__name__)


def run_ppo(run: RunContext, device: str, resume_from: Path | None) -> TrainResult:
    """Train ``run.config`` with PPO on ``run.reward_fn`` (any reward shape; see :mod:`rl4rec.rewards.boundary`)."""
    return PPORun(run, device, resume_from).train()


class PPORun:
    def __init__(self, run: RunContext, device: str, resume_from: Path | None, reward: Any = None) -> None:
        self.run, self.config, self.resume_from = run, run.config, resume_from
        config = self.config
        log_with = None if config.log_with in ("none", "auto") else config.log_with
        precision = "bf16" if resolve_bf16(config.bf16, device) else "no"  # --bf16, as GRPO/RLOO/SFT read it
        release_accelerator_state(precision)
        self.acc = Accelerator(
            cpu=device == "cpu",
            mixed_precision=precision,
            log_with=log_with,
            project_dir=str(run.run_dir),
        )
        world = self.acc.num_processes
        accumulation_steps(config.batch_size, config.mini_batch_size, world)
        self.local_batch = config.batch_size // world
        self.group = config.num_generations  # completions per prompt (1 = classic PPO)
        if self.local_batch % self.group:
            raise ConfigError(
                f"--batch_size ({config.batch_size}) over {world} processes gives {self.local_batch} completions "
                f"per process, not a multiple of --num_generations ({self.group})."
            )
        self.reward = reward if reward is not None else self._reward()
        self.reward_name = getattr(self.reward, "__name__", "reward")

    @property
    def shares_prefix(self) -> bool:
        """Shared-prefix computation: several completions per prompt and --shared_prefix (the default)."""
        return bool(self.config.shared_prefix and self.group > 1)

    # -- construction ------------------------------------------------------------------------------
    def _reward(self) -> Any:
        """The run's reward in TRL's convention, called synchronously (PPO has one reward batch per step)."""
        from rl4rec.rewards.boundary import sync_training_reward
        from rl4rec.training.run_log import CompletionRecorder

        recorder = CompletionRecorder(self.run.completions_log, self.config.log_completions)
        return sync_training_reward(
            self.run.reward_fn, recorder=recorder if self.acc.is_main_process else None
        )

    def _setup(self) -> None:
        config, acc = self.config, self.acc
        model, self.tokenizer, self.ref_model = build_models(self.config, self.resume_from)
        from rl4rec.training.data import build_train_dataset

        self.dataset = build_train_dataset(config, self.tokenizer)
        n = len(self.dataset)
        prompts_per_step = config.batch_size // self.group
        self.total_steps = max(1, min(config.max_steps, math.ceil(config.num_epochs * n / prompts_per_step)))
        per_step = config.ppo_epochs * (self.local_batch // config.mini_batch_size)
        optimizer, self.scheduler = build_optimizer(model, config, self.total_steps * per_step)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.unwrapped: PolicyAndValue = acc.unwrap_model(self.model)
        if self.ref_model is not None:
            self.ref_model.to(acc.device)
        self.kl_ctl = L.KLController(config.kl_coef, config.kl_target, config.kl_horizon)
        self.eos_ids = eos_token_ids(self.tokenizer, self.unwrapped.policy)
        if config.use_vllm:
            self.sampler: Any = VLLMSampler(self.unwrapped.policy, acc, self.tokenizer, config)
        else:
            self.sampler = HFSampler(self.tokenizer, config.max_new_tokens, config.temperature, config.top_p)
        self.start_step = 0
        if acc.num_processes > 1:  # each process samples its own completions (rank 0 = a single-process run)
            torch.manual_seed(config.seed + acc.process_index)
        if self.resume_from is not None:
            self._restore(self.resume_from)

    def _restore(self, path: Path) -> None:
        state = S.load_trainer_state(path)
        self.start_step = int(state["global_step"])
        self.kl_ctl.load_state_dict(state)
        S.load_optimizer(path, self.optimizer)
        self.scheduler.load_state_dict(torch.load(path / S.SCHEDULER_FILE))
        rng = S.load_rng(path, self.acc.process_index)
        if rng is not None:
            S.set_rng_state(rng)
        if self.config.use_vllm:
            self.sampler.sync_weights()
        logger.info("resumed PPO from %s (step %d, kl_coef %.4g)", path, self.start_step, self.kl_ctl.value)

    # -- data ----------------------------------------------------------------------------------------
    def rows_for_step(self, step: int) -> list[dict[str, Any]]:
        """This process's rows of ``step`` (1-based), each prompt ``--num_generations`` times in a row.

        See :func:`stream_indices`; a step reads ``batch_size / num_generations`` prompts.
        """
        indices = stream_indices(
            step,
            len(self.dataset),
            self.config.batch_size // self.group,
            self.local_batch // self.group,
            self.acc.process_index,
            self.config.seed,
        )
        return [self.dataset[i] for i in indices for _ in range(self.group)]

    # -- one step ------------------------------------------------------------------------------------
    def _score(
        self, step: int, rows: list[dict[str, Any]], rollout: Rollout, metrics: dict[str, Any]
    ) -> torch.Tensor:
        prompts = [r["prompt"] for r in rows]
        completions: list[Any] = [
            [{"role": "assistant", "content": t}] if isinstance(p, list) else t
            for p, t in zip(prompts, rollout.texts, strict=True)
        ]
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        scores = self.reward(
            prompts=prompts,
            completions=completions,
            completion_ids=rollout.completion_id_lists(),
            trainer_state=TrainerState(global_step=step - 1, max_steps=self.total_steps),
            log_metric=metrics.__setitem__,
            log_extra=lambda *args, **kwargs: None,
            **columns,
        )
        if scores is None or len(scores) != rollout.size or any(s is None for s in scores):
            raise ConfigError("the reward function must return one number per completion (PPO has no None).")
        return torch.tensor([float(s) for s in scores], device=self.acc.device)

    def _update(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        config, acc = self.config, self.acc
        stats: dict[str, list[float]] = defaultdict(list)
        n_tokens = rollout.completion_ids.shape[1]
        groups = find_groups(rollout.prompt_ids, rollout.prompt_mask) if self.group > 1 else None
        self.model.train()
        for _ in range(config.ppo_epochs):
            # Several completions per prompt: mini-batches take whole groups, so a prompt is computed once.
            order = groups.order() if groups is not None else torch.randperm(rollout.size)
            for part in chunks(rollout.size, config.mini_batch_size):
                rows = order[part].to(acc.device)
                ids, mask, positions = rollout.inputs(rows)
                cmask = rollout.completion_mask[rows]
                with acc.autocast():
                    logits, values = self.model(
                        ids, mask, positions, n_tokens, shared_prefix=self.shares_prefix
                    )
                logprobs = token_logprobs(logits, rollout.completion_ids[rows], config.temperature)
                assert rollout.logprobs is not None and rollout.values is not None and values is not None
                pol = L.clipped_policy_loss(
                    logprobs, rollout.logprobs[rows], advantages[rows], cmask, config.cliprange
                )
                vloss, vclip = L.clipped_value_loss(
                    values.float(), rollout.values[rows], returns[rows], cmask, config.cliprange_value
                )
                loss = pol.loss + config.vf_coef * vloss
                acc.backward(loss)
                if config.max_grad_norm and config.max_grad_norm > 0:
                    norm = acc.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                    if norm is not None:
                        stats["grad_norm"].append(float(norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                stats["policy_loss"].append(pol.loss.item())
                stats["value_loss"].append(vloss.item())
                stats["loss"].append(loss.item())
                stats["clip_fraction"].append(pol.clip_fraction.item())
                stats["approx_kl"].append(pol.approx_kl.item())
                stats["value_clip_fraction"].append(vclip.item())
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def _mean(self, values: torch.Tensor) -> float:
        return float(self.acc.gather(values.detach().float().reshape(-1)).mean())

    def step(self, step: int) -> dict[str, Any]:
        config, acc = self.config, self.acc
        t0 = time.perf_counter()
        rows = self.rows_for_step(step)
        texts = render_prompts(self.tokenizer, [r["prompt"] for r in rows])
        shared = self.shares_prefix
        rollout = generate_rollout(
            self.sampler, self.unwrapped.policy, self.tokenizer, texts, self.eos_ids, acc.device, shared
        )
        t_gen = time.perf_counter() - t0
        metrics: dict[str, Any] = {}
        scores = self._score(step, rows, rollout, metrics)
        t_reward = time.perf_counter() - t0 - t_gen
        score_rollout(
            self.unwrapped,
            partial(reference_logits, self.ref_model, self.unwrapped.policy),
            rollout,
            config.temperature,
            config.mini_batch_size,
            acc.autocast,
            shared,
        )
        t_score = time.perf_counter() - t0 - t_gen - t_reward  # policy, reference and value forward passes
        assert (
            rollout.logprobs is not None and rollout.ref_logprobs is not None and rollout.values is not None
        )
        mask = rollout.completion_mask
        kl_coef = self.kl_ctl.value
        rewards, kl = L.shaped_rewards(scores, rollout.logprobs, rollout.ref_logprobs, mask, kl_coef)
        advantages, returns = L.gae(rewards, rollout.values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = L.masked_whiten(advantages, mask)
        update = self._update(rollout, advantages, returns)
        if config.use_vllm:
            self.sampler.sync_weights()
        all_scores = acc.gather(scores)
        eos = torch.tensor(self.eos_ids, device=mask.device)
        ended = torch.isin(rollout.completion_ids, eos) & mask.bool()  # truncated rows have no EOS
        seq_kl = self._mean(kl.sum(1))
        self.kl_ctl.update(seq_kl, config.batch_size)
        t_step = time.perf_counter() - t0
        record: dict[str, Any] = {
            "step": step,
            "epoch": step * config.batch_size / self.group / len(self.dataset),
            "reward": float(all_scores.mean()),
            "reward_std": float(all_scores.std()) if all_scores.numel() > 1 else 0.0,
            f"rewards/{self.reward_name}/mean": float(all_scores.mean()),
            **metrics,
            **update,
            "kl": seq_kl,
            "kl_coef": kl_coef,
            "non_score_reward": self._mean(rewards.sum(1) - scores),
            "explained_variance": L.explained_variance(rollout.values, returns, mask),
            "entropy": float(L.masked_mean(rollout.entropy, mask)),
            "values/mean": float(L.masked_mean(rollout.values, mask)),
            "returns/mean": float(L.masked_mean(returns, mask)),
            "completion_length": self._mean(mask.sum(1)),
            "completions/clipped_ratio": self._mean(~ended.any(1)),
            "shared_prefix/token_ratio": token_ratio(
                rollout.prompt_mask, mask, find_groups(rollout.prompt_ids, rollout.prompt_mask)
            ),
            "time/generation": t_gen,
            "time/reward": t_reward,
            "time/score": t_score,
            "time/update": max(t_step - t_gen - t_reward - t_score, 0.0),
            "time/step": t_step,
            "learning_rate": self.scheduler.get_last_lr()[0],
            "value_learning_rate": self.scheduler.get_last_lr()[-1],
            "new_rollouts": True,
        }
        return record

    # -- checkpoints ---------------------------------------------------------------------------------
    def _trainer_state(self, step: int) -> dict[str, Any]:
        return {
            "algorithm": "ppo",
            "global_step": step,
            "max_steps": self.total_steps,
            "world_size": self.acc.num_processes,
            **self.kl_ctl.state_dict(),
        }

    def save(self, step: int, rng_states: list[dict[str, Any]] | None = None) -> Path:
        rng_states = gather_object([S.rng_state()]) if rng_states is None else rng_states
        resume = (self.optimizer, self.scheduler, rng_states)
        return self._write(step_dir(self.run.run_dir, step), step, resume, "saved %s")

    def save_final(self, step: int) -> Path:
        return self._write(self.run.run_dir / FINAL_NAME, step, (), "final checkpoint: %s")

    def _write(self, path: Path, step: int, resume: tuple[Any, ...], message: str) -> Path:
        """Either checkpoint, written by the main process between two barriers; a step checkpoint also holds the
        optimizer, scheduler and every process's RNG state (``resume``), which the final one does not need."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            S.save_checkpoint(
                path,
                self.unwrapped,
                self.tokenizer,
                self.config.to_json(),
                self._trainer_state(step),
                *resume,
            )
            logger.info(message, path)
            if resume:
                for old in prune_step_checkpoints(self.run.run_dir, self.config.save_total_limit):
                    logger.info("removed %s (--save_total_limit)", old)
        self.acc.wait_for_everyone()
        return path

    def _log(self, record: dict[str, Any], step: int) -> None:
        """One metrics.jsonl line (a step, or a held-out evaluation) and the same numbers to the trackers."""
        self.run.metrics_log.append([{"step": step, **record}])
        if self.acc.trackers:
            self.acc.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=step)

    # -- the loop ------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        config, acc = self.config, self.acc
        self._setup()
        if acc.log_with:
            tracker_config = {k: ("None" if v is None else v) for k, v in config.to_dict().items()}
            acc.init_trackers(config.project_name, config=tracker_config)
        state = TrainerState(global_step=self.start_step, max_steps=self.total_steps)
        control = TrainerControl()
        heldout = heldout_schedule(
            config, self.tokenizer, self.run.run_dir, config.max_new_tokens, log=self._log,
            write_model=lambda folder: S.save_model_files(folder, self.unwrapped, self.tokenizer, config.to_json()),
        )  # fmt: skip
        if heldout is not None and self.start_step == 0:
            heldout.maybe(self.unwrapped.policy, 0, self.total_steps)
        elif heldout is not None:
            heldout.resumed(self.start_step)
        bar = tqdm(total=self.total_steps, initial=self.start_step, desc="ppo", unit="step", dynamic_ncols=True,
                   disable=not acc.is_main_process)  # fmt: skip
        step = self.start_step
        try:
            while step < self.total_steps and not control.should_training_stop:
                rng_before = gather_object([S.rng_state()])
                try:
                    record = self.step(step + 1)
                except ServiceError as exc:
                    saved = self.save(step, rng_before) if step > self.start_step else self.resume_from
                    raise service_stopped_error(exc, step, saved) from None
                step = state.global_step = step + 1
                if acc.is_main_process:
                    self._log(record, step)
                bar.update(1)
                bar.set_postfix(reward=f"{record['reward']:.4f}", kl=f"{record['kl']:.3f}",
                                len=f"{record['completion_length']:.0f}")  # fmt: skip
                for callback in self.run.callbacks:
                    if hasattr(callback, "on_log"):
                        callback.on_log(None, state, control, logs=record)
                    if hasattr(callback, "on_step_end"):
                        control = callback.on_step_end(None, state, control) or control
                if heldout is not None:
                    heldout.maybe(self.unwrapped.policy, step, self.total_steps)
                if step % config.save_steps == 0:
                    self.save(step)
        finally:
            bar.close()
        final = self.save_final(step)
        acc.end_training()
        return self.run.result(final, step)
