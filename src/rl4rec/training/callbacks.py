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
