"""Trainer callbacks: metrics.jsonl, the progress bar, and step timing."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from rl4rec.training.run_log import JsonlLog, metrics_record


class MetricsFileCallback(TrainerCallback):
    """Writes one metrics.jsonl line per logged step."""

    def __init__(self, log: JsonlLog) -> None:
        self.log = log
        self.last_rollout: dict[str, Any] = {}
        self.last_record: dict[str, Any] = {}

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero or "train_runtime" in logs:
            return
        self.last_record = metrics_record(state.global_step, logs, self.last_rollout)
        self.log.append([self.last_record])


class ProgressCallback(TrainerCallback):
    """One bar: step / max_steps, current reward, ETA (tqdm's rate-based estimate)."""

    def __init__(self, metrics: MetricsFileCallback) -> None:
        self.metrics = metrics
        self.bar: tqdm | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        rec = self.metrics.last_record
        postfix = {}
        if rec.get("reward") is not None:
            postfix["reward"] = f"{rec['reward']:.4f}"
        if rec.get("completion_length") is not None:
            postfix["len"] = f"{rec['completion_length']:.0f}"
        if postfix:
            self.bar.set_postfix(postfix)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepTimer:
    """Accumulates generation / reward seconds between two logged steps."""

    def __init__(self) -> None:
        self.generation = 0.0
        self.reward = 0.0
        self.step = 0.0

    def timed(self, bucket: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            setattr(self, bucket, getattr(self, bucket) + time.perf_counter() - start)

    def flush(self) -> dict[str, float]:
        out = {
            "time/generation": self.generation,
            "time/reward": self.reward,
            "time/update": max(self.step - self.generation - self.reward, 0.0),
            "time/step": self.step,
        }
        self.generation = self.reward = self.step = 0.0
        return out


class HeldOutCallback(TrainerCallback):
    """Runs :class:`~rl4rec.training.heldout.HeldOutSchedule` in an HF trainer (GRPO, RLOO, SFT): step 0, every
    ``--eval_steps`` steps, the last step. Rank 0 only; the others wait at the next collective."""

    def __init__(self, schedule: Any, model: Any) -> None:
        self.schedule, self.model = schedule, model

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if state.global_step == 0:
            self.schedule.maybe(self.model(), 0, state.max_steps)
        else:
            self.schedule.resumed(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.schedule.maybe(self.model(), state.global_step, state.max_steps)


def add_heldout_callback(
    trainer: Any, run: Any, tokenizer: Any, max_new_tokens: int, merge_lora: bool = False
) -> None:
    """Attach the held-out schedule of ``run.config`` (if any) to an HF ``trainer``.

    Its ``eval/`` metrics go through ``transformers.Trainer.log`` (every report_to backend and
    metrics.jsonl), not the TRL trainers' ``log``, which would take the step's training metrics with them.
    ``merge_lora``: the best checkpoint holds merged weights (as SFT's final one does), not adapters.
    """
    import copy

    from transformers import Trainer

    from rl4rec.training.heldout import heldout_schedule

    def write_weights(folder: Any) -> None:
        if merge_lora:
            copy.deepcopy(trainer.model).merge_and_unload().save_pretrained(str(folder))
        else:
            trainer.save_model(str(folder))

    def log(metrics: dict[str, float], step: int) -> None:
        # HF's log resets control.should_log; the step's own training log (which comes after this callback)
        # must still happen.
        should_log = trainer.control.should_log
        Trainer.log(trainer, metrics)
        trainer.control.should_log = should_log

    schedule = heldout_schedule(
        run.config, tokenizer, run.run_dir, max_new_tokens, log=log,
        write_model=lambda folder: run.fill_checkpoint(folder, write_weights, tokenizer),
    )  # fmt: skip
    if schedule is not None:
        trainer.add_callback(
            HeldOutCallback(schedule, lambda: trainer.accelerator.unwrap_model(trainer.model))
        )
