"""A user's own reward replaces the built-in one: ``TRLTrainer(config, reward_fn=...)`` and ``--reward_fn``.

The reward is the seed's example (``examples/custom_reward.py``: NDCG@k plus a diversity bonus); the
training runs are one tiny GRPO step on ml-100k with the offline 135M policy.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import pytest

from rl4rec.errors import ConfigError
from rl4rec.rewards.base import RLRewardFunction
from rl4rec.rewards.boundary import build_reward, import_reward_fn, sync_training_reward, training_reward
from rl4rec.training.config import TrainConfig, parse_train_args
from rl4rec.training.trainer import TRLTrainer
from train_helpers import train_flags

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples.custom_reward:CustomRewardFunction"


@pytest.fixture
def example(monkeypatch):
    """``examples.custom_reward`` imported the way ``--reward_fn`` imports it (from the repo root)."""
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    return importlib.import_module("examples.custom_reward")


@pytest.fixture
def calls(example, monkeypatch):
    """Every batch of rewards the example's ``__call__`` returns, as ``(reward class, rewards)``."""
    seen: list[tuple[type, list[float]]] = []
    original = example.CustomRewardFunction.__call__

    def counted(self, generated_texts, target_items, history_items, **kwargs):
        rewards = original(self, generated_texts, target_items, history_items, **kwargs)
        seen.append((type(self), list(rewards)))
        return rewards

    monkeypatch.setattr(example.CustomRewardFunction, "__call__", counted)
    return seen


def tiny_flags(ml100k_dir: Path, out: Path, policy: Path, *extra: str) -> list[str]:
    """One step of the tiny policy: these tests check that the reward is called, not what it teaches."""
    return train_flags(ml100k_dir, out, "--model_name", str(policy), *extra, max_length=128, train_users=8,
                       max_steps=1, seed=3)  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_trained_with(calls: list[tuple[type, list[float]]], metrics_file: Path, cls: type) -> None:
    assert calls, "the custom reward was never called"
    assert all(issubclass(kind, cls) for kind, _ in calls)
    rewards = [r for _, batch in calls for r in batch]
    assert len(rewards) % 4 == 0  # whole rollout batches of --batch_size completions
    (record,) = read_jsonl(metrics_file)
    # The logged reward is the mean of what the custom reward returned (its diversity bonus makes it > 0).
    assert record["reward"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-6)
    assert record["reward"] > 0


# -- fast: bad --reward_fn values fail before anything loads ---------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("custom_reward", "--reward_fn must be module:attr"),
        (":CustomRewardFunction", "--reward_fn must be module:attr"),
        ("examples.custom_reward:", "--reward_fn must be module:attr"),
        ("no_such_module_rl4rec:reward", "cannot import 'no_such_module_rl4rec'"),
        ("examples.custom_reward:NoSuchReward", "has no attribute 'NoSuchReward'"),
        ("examples.custom_reward:__doc__", "str is not callable"),
        ("collections:OrderedDict", "OrderedDict is not an RLRewardFunction subclass"),
    ],
)
def test_bad_reward_fn_fails_fast(example, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_args(["--reward_fn", value])


def test_bad_reward_fn_is_one_line_on_the_command_line(example, capsys):
    from rl4rec.cli import main

    assert main(["train", "--device", "cpu", "--reward_fn", "no_such_module_rl4rec:reward"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("Error: --reward_fn no_such_module_rl4rec:reward: cannot import") and "\n" not in err
    )


def test_reward_fn_names_the_example(example):
    assert import_reward_fn(EXAMPLE) is example.CustomRewardFunction
    assert parse_train_args(["--reward_fn", EXAMPLE]).reward_fn == EXAMPLE


def test_bad_python_rewards(tmp_path, example):
    config = TrainConfig(checkpoint_dir=str(tmp_path), device="cpu", reward_fn=EXAMPLE)
    with pytest.raises(ConfigError, match="two custom rewards"):
        TRLTrainer(config, reward_fn=lambda prompts, completions, **kw: [0.0] * len(completions))
    plain = TrainConfig(checkpoint_dir=str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="reward_fn must be callable, got int"):
        build_reward(plain, 3)
    with pytest.raises(ConfigError, match="dict is not an RLRewardFunction subclass"):
        build_reward(plain, dict)


def test_trl_style_functions_go_through_as_they_are():
    def reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    async def areward(prompts, completions, **kwargs):
        return [2.0] * len(completions)

    plain = TrainConfig(device="cpu")
    assert build_reward(plain, reward) is reward  # used as it is, normalised once at the trainer's boundary
    as_trl = training_reward(reward)
    assert as_trl(prompts=["p"], completions=["a", "b"]) == [1.0, 1.0] and as_trl.__name__ == "reward"
    synced = sync_training_reward(areward)  # PPO calls its reward synchronously
    assert synced(prompts=["p"], completions=["a", "b"]) == [2.0, 2.0] and synced.__name__ == "areward"
    assert asyncio.run(training_reward(areward)(prompts=[], completions=["a"])) == [
        2.0
    ]  # stays async for TRL
    assert asyncio.run(training_reward(reward, concurrent=True)(prompts=[], completions=["a"])) == [1.0]


def test_seed_style_callables_get_targets_and_histories():
    calls = []

    def seed_style(generated_texts, target_items, history_items):
        calls.append((list(generated_texts), list(target_items), list(history_items)))
        return [0.5] * len(generated_texts)

    columns = {"target_item": [3, 4], "history_items": [[1], [2]]}
    conversational = [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]]
    assert training_reward(seed_style)(prompts=["p", "p"], completions=conversational, **columns) == [
        0.5,
        0.5,
    ]
    assert asyncio.run(training_reward(seed_style, concurrent=True)(prompts=["p", "p"], completions=["a", "b"],
                                                                    **columns)) == [0.5, 0.5]  # fmt: skip
    assert calls == [(["a", "b"], [3, 4], [[1], [2]])] * 2
    with pytest.raises(ConfigError, match="no 'target_item' column"):
        training_reward(seed_style)(prompts=["p"], completions=["x"])


def test_next_items_reward_is_the_mean_over_items_each_ranked_without_the_others():
    calls = []

    def seed_style(generated_texts, target_items, history_items):
        calls.append((list(generated_texts), list(target_items), [list(h) for h in history_items]))
        return [float(t) for t in target_items]  # a reward that reads its target, to see the mean

    columns = {"target_item": [3, 7], "history_items": [[1], [2]], "next_items": [[3, 4, 5], [7]]}
    rewards = training_reward(seed_style)(prompts=["p", "q"], completions=["a", "b"], **columns)
    assert rewards == [4.0, 7.0]
    ((texts, targets, histories),) = calls
    assert texts == ["a", "a", "a", "b"] and targets == [3, 4, 5, 7]
    assert histories == [[1, 4, 5], [1, 3, 5], [1, 3, 4], [2]]  # the other next items are masked
    with pytest.raises(ConfigError, match="empty 'next_items'"):
        training_reward(seed_style)(prompts=["p"], completions=["a"], target_item=[3], history_items=[[1]],
                                    next_items=[[]])  # fmt: skip


def test_next_items_reward_ranks_each_item_through_the_service(ml100k_dir):
    """The built-in reward with --next_items: AUC per next item from the real service, averaged per text."""
    reward_fn = build_reward(TrainConfig(dataset_name="ml-100k", data_dir=str(ml100k_dir), retrieval="local",
                                         reward_type="auc", next_items=2))  # fmt: skip
    texts = ["A comedy from the 1990s", "A war film"]
    columns = {"target_item": [5, 9], "history_items": [[1, 2], [3]], "next_items": [[5, 6], [9, 10]]}
    rewards = training_reward(reward_fn)(prompts=["p", "q"], completions=texts, **columns)
    singles = [
        reward_fn.evaluate([text], [item], [[*history, other]])["reward"][0]
        for text, (item, other), history in [
            (texts[0], (5, 6), [1, 2]), (texts[0], (6, 5), [1, 2]), (texts[1], (9, 10), [3]), (texts[1], (10, 9), [3])
        ]
    ]  # fmt: skip
    assert rewards == pytest.approx([(singles[0] + singles[1]) / 2, (singles[2] + singles[3]) / 2])
    assert len(set(singles)) == 4  # the items really were ranked apart


# -- slow: one real GRPO step with the custom reward ----------------------------------------------------------
@pytest.mark.slow
def test_python_api_builds_and_trains_with_the_example_class(
    example, calls, ml100k_dir, tiny_policy, tmp_path
):
    trainer = TRLTrainer(
        parse_train_args(tiny_flags(ml100k_dir, tmp_path / "api", tiny_policy)),
        reward_fn=example.CustomRewardFunction,
    )
    result = trainer.train()
    reward_fn = trainer.reward_fn
    assert isinstance(reward_fn, example.CustomRewardFunction)  # built with the run's settings
    assert (reward_fn.dataset_name, reward_fn.k, reward_fn.backend) == ("ml-100k", 1000, "local")
    assert_trained_with(calls, result.metrics_file, example.CustomRewardFunction)


@pytest.mark.slow
def test_command_line_reward_fn_trains_with_the_example(example, calls, ml100k_dir, tiny_policy, tmp_path):
    from rl4rec.cli import main

    out = tmp_path / "cli"
    assert main(["train", *tiny_flags(ml100k_dir, out, tiny_policy), "--reward_fn", EXAMPLE]) == 0
    assert json.loads((out / "run_config.json").read_text())["reward_fn"] == EXAMPLE
    assert_trained_with(calls, out / "metrics.jsonl", example.CustomRewardFunction)


@pytest.mark.slow
def test_trl_style_function_is_called_by_trl(ml100k_dir, tiny_policy, tmp_path):
    seen: list[dict] = []

    def length_reward(prompts, completions, **columns):
        seen.append(columns)
        return [min(len(str(c)) / 100.0, 1.0) for c in completions]

    trainer = TRLTrainer(
        parse_train_args(tiny_flags(ml100k_dir, tmp_path / "trl", tiny_policy)), reward_fn=length_reward
    )
    result = trainer.train()
    assert trainer.reward_fn is length_reward and not isinstance(trainer.reward_fn, RLRewardFunction)
    assert seen and all(len(c["target_item"]) == len(c["history_items"]) for c in seen)
    (record,) = read_jsonl(result.metrics_file)
    assert "rewards/length_reward/mean" in record
