"""--resume refuses flags that change what the run learns, and allows the ones that only say where and how far."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rl4rec.errors import ConfigError
from rl4rec.training.config import TrainConfig
from rl4rec.training.run_context import RunContext


def started(tmp_path: Path, **flags) -> TrainConfig:
    config = TrainConfig(checkpoint_dir=str(tmp_path / "run"), **flags)
    RunContext(config).prepare(None)  # writes run_config.json as a fresh run does
    return config


def resume(config: TrainConfig, tmp_path: Path, **changes) -> None:
    resumed = dataclasses.replace(config, resume=True, **changes)
    step = tmp_path / "run" / "checkpoint_step_2"
    step.mkdir(exist_ok=True)
    RunContext(resumed).prepare(step)


def test_changed_learning_rate_and_reward_are_refused_with_both_values(tmp_path):
    config = started(tmp_path, learning_rate=1e-5)
    with pytest.raises(ConfigError) as err:
        resume(config, tmp_path, learning_rate=3e-5, reward_type="auc")
    message = str(err.value)
    assert "--learning_rate 1e-05 -> 3e-05" in message and "--reward_type" in message
    assert "run_config.json" in message and "new --checkpoint_dir" in message


def test_longer_run_other_device_and_logging_resume(tmp_path):
    config = started(tmp_path, max_steps=10)
    resume(config, tmp_path, max_steps=40, device="cpu", save_total_limit=1, log_with="none")


def test_a_changed_heldout_sample_is_refused(tmp_path):
    config = started(tmp_path, eval_steps=5, eval_users=16)
    with pytest.raises(ConfigError, match="--eval_users 16 -> 32"):
        resume(config, tmp_path, eval_users=32)


def test_the_same_file_named_two_ways_is_the_same_flag(tmp_path, monkeypatch):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("{history}")
    config = started(tmp_path, prompt_file=str(prompt))
    monkeypatch.chdir(tmp_path)
    resume(config, tmp_path, prompt_file="prompt.txt")


def test_a_resume_may_stop_evaluating(tmp_path):
    config = started(tmp_path, eval_steps=5, eval_users=16, keep_best="auc")
    resume(config, tmp_path, eval_steps=0, eval_users=128, keep_best=None)
