"""PPO flags: defaults, parsing, and fail-fast validation (no models load)."""

from __future__ import annotations

import pytest

from rl4rec.errors import ConfigError
from rl4rec.training.config import TrainConfig, parse_train_args


def test_ppo_flags_parse_with_their_defaults_and_overrides():
    default = parse_train_args(["--algorithm", "ppo"])
    assert (default.value_model, default.kl_target, default.whiten_advantages) == ("head", None, True)
    assert (default.gamma, default.lam, default.cliprange, default.cliprange_value) == (1.0, 0.95, 0.2, 0.2)
    config = parse_train_args(
        ["--algorithm", "ppo", "--value_model", "separate", "--kl_target", "6", "--kl_coef", "0.2", "--gamma",
         "0.99", "--lam", "0.9", "--cliprange", "0.1", "--cliprange_value", "0.3", "--vf_coef", "0.5",
         "--max_grad_norm", "0.5", "--batch_size", "6", "--mini_batch_size", "3", "--num_generations", "3"]
    )  # fmt: skip
    assert (config.value_model, config.kl_target, config.kl_coef) == ("separate", 6.0, 0.2)
    assert (config.gamma, config.lam, config.cliprange, config.cliprange_value) == (0.99, 0.9, 0.1, 0.3)
    assert (config.vf_coef, config.max_grad_norm) == (0.5, 0.5)
    from rl4rec.training.ppo.optim import value_learning_rate

    assert default.value_learning_rate is None and value_learning_rate(default) == 10 * default.learning_rate
    explicit = parse_train_args(["--algorithm", "ppo", "--value_learning_rate", "3e-4"])
    assert value_learning_rate(explicit) == 3e-4
    # Completions per prompt: 1 by default (classic PPO), as many as asked (batch_size / num_generations prompts).
    assert default.num_generations == 1 and parse_train_args([]).num_generations == 8
    assert (config.batch_size, config.num_generations) == (6, 3)
    with pytest.raises(ConfigError, match="divisible by --num_generations"):
        parse_train_args(
            ["--algorithm", "ppo", "--batch_size", "6", "--mini_batch_size", "3", "--num_generations", "4"]
        )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch_size", "8", "--mini_batch_size", "3"], "divisible by --mini_batch_size"),
        (["--value_model", "critic"], "--value_model must be one of head, separate"),
        (["--gamma", "1.5"], "--gamma must be <= 1"),
        (["--lam", "-0.1"], "--lam must be >= 0"),
        (["--cliprange", "0"], "--cliprange must be > 0"),
        (["--cliprange_value", "-1"], "--cliprange_value must be > 0"),
        (["--vf_coef", "-0.1"], "--vf_coef must be >= 0"),
        (["--kl_coef", "-1"], "--kl_coef must be >= 0"),
        (["--kl_target", "0"], "--kl_target must be > 0"),
        (["--kl_horizon", "0"], "--kl_horizon must be >= 1"),
        (["--value_learning_rate", "0"], "--value_learning_rate must be > 0"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must be >= 0"),
        (["--ppo_epochs", "0"], "--ppo_epochs must be >= 1"),
        (["--use_peft", "--lora_r", "0"], "--lora_r must be >= 1"),
    ],
)
def test_bad_ppo_values_fail_fast(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_args(["--algorithm", "ppo", *flags])


def test_validate_runs_on_programmatic_configs_too():
    with pytest.raises(ConfigError, match="--kl_target must be > 0"):
        TrainConfig(algorithm="ppo", kl_target=-2.0).validate()
    config = TrainConfig(algorithm="ppo", batch_size=4, mini_batch_size=2)
    assert config.validate() is config


@pytest.mark.parametrize(("setting", "expected"), [("on", "bf16"), ("off", "no")])
def test_ppo_honours_bf16(setting, expected, tmp_path):
    """--bf16 means the same for PPO as for GRPO/RLOO/SFT (it used to be bf16 on any bf16 GPU, whatever the flag)."""
    from rl4rec.training.ppo.trainer import PPORun
    from rl4rec.training.run_context import RunContext

    config = TrainConfig(algorithm="ppo", device="cpu", bf16=setting, checkpoint_dir=str(tmp_path), batch_size=4,
                         mini_batch_size=2).validate()  # fmt: skip
    run = PPORun(RunContext(config), "cpu", None, reward=lambda **kwargs: [0.0])
    assert run.acc.mixed_precision == expected
