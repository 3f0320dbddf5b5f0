"""Training flags: every seed flag parses and maps onto TRL as documented; bad values fail before loading."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl4rec.errors import ConfigError
from rl4rec.training.config import TrainConfig, parse_train_args
from rl4rec.training.trl_backend import trl_args

REPO = Path(__file__).resolve().parents[1]

SEED_FLAGS = [
    "--model_name", "gpt2", "--device", "cpu", "--max_length", "128", "--max_new_tokens", "64",
    "--reward_type", "ndcg", "--k", "10", "--dataset_name", "beauty", "--learning_rate", "1e-5",
    "--batch_size", "16", "--mini_batch_size", "4", "--ppo_epochs", "4", "--num_epochs", "3",
    "--max_steps", "10000", "--checkpoint_dir", "checkpoints/trl_ppo", "--log_with", "wandb",
    "--project_name", "rl4rec-experiment",
]  # fmt: skip


def test_seed_defaults():
    config = TrainConfig()
    assert (config.max_length, config.max_new_tokens, config.reward_type, config.k) == (128, 64, "ndcg", 10)
    assert (config.dataset_name, config.learning_rate, config.batch_size, config.mini_batch_size) == (
        "beauty",
        1e-5,
        16,
        4,
    )
    assert (config.ppo_epochs, config.num_epochs, config.max_steps) == (4, 3, 10000)
    assert (config.checkpoint_dir, config.project_name, config.device) == (
        "checkpoints/trl_ppo",
        "rl4rec-experiment",
        "cuda",
    )
    assert (config.temperature, config.top_p, config.save_steps) == (1.0, 0.95, 500)


def test_every_seed_flag_parses_and_maps_to_trl():
    config = parse_train_args(SEED_FLAGS)
    args = trl_args(config, "cpu")
    assert args.per_device_train_batch_size == 4  # mini_batch_size
    assert args.gradient_accumulation_steps == 4  # batch_size / mini_batch_size -> 16 completions per step
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == config.batch_size
    assert args.num_iterations == 4  # ppo_epochs
    assert args.max_completion_length == 64  # max_new_tokens
    assert (args.num_train_epochs, args.max_steps, args.learning_rate) == (3, 10000, 1e-5)
    assert (args.temperature, args.top_p, args.beta, args.num_generations) == (1.0, 0.95, 0.0, 8)
    assert args.output_dir == "checkpoints/trl_ppo" and args.save_steps == 500
    assert args.report_to == ["wandb"] and args.use_cpu is True
    assert args.loss_type == "dapo"
    assert (args.lr_scheduler_type, args.scale_rewards) == ("linear", "group")  # HF's and TRL's defaults


def test_schedule_and_advantage_scaling_map_to_trl():
    config = parse_train_args(["--device", "cpu", "--lr_scheduler", "constant", "--scale_rewards", "none"])
    args = trl_args(config, "cpu")
    assert (args.lr_scheduler_type, args.scale_rewards) == ("constant", "none")
    # RLOO has no scale_rewards: a non-default value is refused rather than silently ignored
    with pytest.raises(ConfigError, match="--scale_rewards applies to GRPO only"):
        parse_train_args(["--algorithm", "rloo", "--num_generations", "4", "--scale_rewards", "batch"])


def test_extra_flags_and_yaml_config(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("k: 1000\nreward_type: mixed\nalgorithm: rloo\nnum_generations: 4\nbatch_size: 8\n")
    config = parse_train_args(
        ["--config", str(cfg), "--k", "50", "--use_peft", "--beta", "0.04", "--seed", "3"]
    )
    assert (config.k, config.reward_type, config.algorithm, config.use_peft, config.beta, config.seed) == (
        50, "mixed", "rloo", True, 0.04, 3,
    )  # fmt: skip
    args = trl_args(config, "cpu")
    assert type(args).__name__ == "RLOOConfig" and args.num_generations == 4


def test_vllm_flags_map_to_colocate():
    config = parse_train_args(
        [
            "--device",
            "cuda",
            "--use_vllm",
            "--vllm_gpu_memory_utilization",
            "0.5",
            "--vllm_tensor_parallel_size",
            "2",
        ]
    )
    args = trl_args(config, "cuda")
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.vllm_tensor_parallel_size) == (
        True, "colocate", 0.5, 2,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--use_vllm needs a CUDA device"):
        parse_train_args(["--device", "cpu", "--use_vllm"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "-1"], "--k must be a positive integer"),
        (["--reward_type", "precision"], "--reward_type must be one of"),
        (["--batch_size", "12", "--num_generations", "8"], "must be divisible by --num_generations"),
        (
            ["--batch_size", "16", "--mini_batch_size", "5", "--num_generations", "4"],
            "divisible by --mini_batch_size",
        ),
        (["--algorithm", "dpo"], "--algorithm must be one of"),
        (["--loss_type", "sft"], "--loss_type must be one of"),
        (["--lr_scheduler", "cyclic"], "--lr_scheduler must be one of"),
        (["--scale_rewards", "std"], "--scale_rewards must be one of"),
        (["--device", "tpu"], "--device must be"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--log_with", "mlflow"], "--log_with must be one of"),
        (["--prompt_file", "/nonexistent.json"], "file not found"),
        (["--retrieval", "grpc"], "--retrieval must be one of local, ray"),
        (["--next_items", "0"], "--next_items must be"),
        (["--next_items", "65"], "--next_items must be"),
    ],
)
def test_bad_values_fail_fast(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_args(flags)


def test_bad_flag_on_the_command_line_is_one_line_before_loading():
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "src/train_with_trl.py", "--device", "cpu", "--batch_size", "12", "--num_generations", "8",
         "--algorithm", "grpo"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        "Error: --batch_size (12) must be divisible by --num_generations (8)"
    )
    assert "Traceback" not in proc.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "rl4rec.cli", "train", "--no_such_flag", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "no_such_flag" in unknown.stderr and "Traceback" not in unknown.stderr
    assert (
        time.monotonic() - start < 120
    )  # generous: the point is no model was loaded (see returncode/message)


def test_log_with_backends(monkeypatch):
    from rl4rec.training import tracking

    monkeypatch.setattr(tracking, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'rl4rec\[wandb\]'"):
        tracking.resolve_log_with(TrainConfig(log_with="wandb"))
    with pytest.raises(ConfigError, match=r"rl4rec\[tensorboard\]"):
        tracking.resolve_log_with(TrainConfig(log_with="tensorboard"))
    assert tracking.resolve_log_with(TrainConfig(log_with="auto")) == "none"
    monkeypatch.setattr(tracking, "_installed", lambda module: True)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert tracking.resolve_log_with(TrainConfig(log_with="auto")) == "wandb"
    import os

    assert os.environ["WANDB_MODE"] == "offline"


def test_auc_reward_parses_and_is_named_without_k():
    from rl4rec.metrics import reward_name

    config = parse_train_args(["--device", "cpu", "--reward_type", "auc", "--k", "10"])
    assert config.reward_type == "auc" and reward_name(config.reward_type, config.k) == "auc"


def test_epochs_or_max_steps_whichever_ends_first():
    from rl4rec.training.trl_backend import epoch_limited_steps

    # 2 prompts per rollout batch, each batch reused for 4 steps: 943 users = 1,886 steps per epoch
    config = parse_train_args(["--device", "cpu", "--batch_size", "8", "--num_generations", "4"])
    assert epoch_limited_steps(config, 943) == 5658  # 3 epochs, before the default 10,000 steps
    config = parse_train_args(
        ["--device", "cpu", "--batch_size", "8", "--num_generations", "4", "--max_steps", "40"]
    )
    assert epoch_limited_steps(config, 943) == 40
    config = parse_train_args(
        [
            "--device",
            "cpu",
            "--batch_size",
            "8",
            "--num_generations",
            "4",
            "--ppo_epochs",
            "1",
            "--num_epochs",
            "1",
        ]
    )
    assert epoch_limited_steps(config, 4) == 2  # 4 users, 2 per step


def test_batch_must_split_evenly_over_processes(monkeypatch):
    from rl4rec.training.distributed import accumulation_steps

    assert accumulation_steps(16, 4, processes=2) == 2
    monkeypatch.setenv("WORLD_SIZE", "3")  # torchrun's variable is what the GRPO path reads
    with pytest.raises(
        ConfigError, match=r"--batch_size \(16\) must be divisible by --mini_batch_size x processes \(4 x 3\)"
    ):
        accumulation_steps(16, 4)


def test_next_items_dataset_rows_score_the_items_after_a_shorter_history(ml100k_dir, policy_tokenizer):
    from rl4rec.data import leave_one_out, load_dataset
    from rl4rec.training.data import build_train_dataset

    config = parse_train_args(["--dataset_name", "ml-100k", "--data_dir", str(ml100k_dir), "--next_items", "3",
                               "--train_users", "5", "--max_length", "256"])  # fmt: skip
    rows = build_train_dataset(config, policy_tokenizer).to_list()
    sequences = load_dataset("ml-100k", ml100k_dir).sequences
    assert len(rows) == 5
    for row in rows:
        items = sequences[row["user_id"]]
        assert (
            row["next_items"] == items[-5:-2] and row["target_item"] == items[-5]
        )  # ends at the training target
        assert row["history_items"] == items[:-5]
    plain = {e.user_id: e for e in leave_one_out(sequences, "train").examples}
    assert all(
        plain[r["user_id"]].history[: len(r["history_items"])] == tuple(r["history_items"]) for r in rows
    )
    with pytest.raises(ConfigError, match="cannot be combined with --candidates"):
        flags = [
            "--dataset_name",
            "ml-100k",
            "--data_dir",
            str(ml100k_dir),
            "--next_items",
            "3",
            "--candidates",
            "5",
        ]
        parse_train_args(flags)  # refused on parsing, before any model or data loads
