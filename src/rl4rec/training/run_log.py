"""What every run writes to its run directory, whatever the logging backend.

``metrics.jsonl``: one JSON object per optimisation step (reward mean/std, reward components,
KL, entropy, completion length, step time split into generation / reward / update, ...).
``completions.jsonl``: a sample of each rollout batch with prompt, completion, target, reward, rank.
Both are appended line by line (a crash loses at most the line being written) and trimmed back to
the resumed step on ``--resume`` so that a resumed run's log reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

from rl4rec.data.prompts import prompt_to_text
from rl4rec.io import atomic_write_text

#: TRL log keys -> our metrics.jsonl keys (others are kept under their own names).
RENAME = {
    "completions/mean_length": "completion_length",
    "step_time": "time/step",
}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlLog:
    """Append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps({k: _clean(v) for k, v in record.items()}, ensure_ascii=False) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from a crash
        return out

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (and any torn line) when resuming from ``step``."""
        kept = [r for r in self.read() if r.get("step") is None or r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))


class CompletionRecorder:
    """Keeps the first ``per_batch`` completions of every rollout batch."""

    def __init__(self, log: JsonlLog, per_batch: int) -> None:
        self.log, self.per_batch = log, per_batch

    def __call__(self, records: list[dict[str, Any]]) -> None:
        if self.per_batch <= 0:
            return
        sample = records[: self.per_batch]
        for record in sample:
            record["prompt"] = prompt_to_text(record["prompt"])
            if record.get("step") is not None:
                record["step"] += 1  # TRL reports the step being computed as the last finished one
        self.log.append(sample)


def metrics_record(step: int, logs: dict[str, Any], last_rollout: dict[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl line from a TRL log dict.

    TRL logs rewards only on steps that generate new rollouts (every ``ppo_epochs`` x accumulation
    micro-steps). Steps that re-use a rollout batch get that batch's reward statistics, with
    ``new_rollouts: false``: the reward of the data the step was optimised on.
    """
    record: dict[str, Any] = {"step": step}
    for key, value in logs.items():
        record[RENAME.get(key, key)] = value
    if "loss" not in logs and any(key.startswith("eval/") for key in logs):
        return record  # a held-out evaluation: no rollout statistics belong to it
    fresh = "reward" in logs
    rollout_keys = [
        k for k in record if k.startswith(("reward", "rewards/", "components/", "completion_length"))
    ]
    if fresh:
        last_rollout.clear()
        last_rollout.update({k: record[k] for k in rollout_keys})
    else:
        for key, value in last_rollout.items():
            record.setdefault(key, value)
    record["new_rollouts"] = fresh
    return record
