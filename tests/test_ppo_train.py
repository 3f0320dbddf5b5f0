"""PPO end to end: the real 135M policy with the real retrieval reward on ml-100k (3 CPU steps, resume),
and (slow-marked) LoRA with a separate value model on a tiny model, and a synthetic reward that PPO must raise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rl4rec.training.checkpoints import latest_checkpoint
from rl4rec.training.config import parse_train_args
from rl4rec.training.trainer import TRLTrainer

#: Real PPO runs (minutes on 2 cores): CI runs them; `make test-fast` skips them.
pytestmark = pytest.mark.slow

METRIC_KEYS = (
    "step", "reward", "reward_std", "components/ndcg@1000", "components/hit@1000", "policy_loss", "value_loss",
    "kl", "kl_coef", "clip_fraction", "value_clip_fraction", "explained_variance", "entropy", "completion_length",
    "time/generation", "time/reward", "time/score", "time/update", "time/step", "learning_rate", "new_rollouts",
    "grad_norm", "approx_kl", "non_score_reward",
)  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def real_flags(ml100k_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--algorithm", "ppo", "--dataset_name", "ml-100k", "--data_dir", str(ml100k_dir), "--device", "cpu",
        "--batch_size", "4", "--mini_batch_size", "2", "--ppo_epochs", "1", "--max_new_tokens", "16",
        "--train_users", "8", "--max_length", "128", "--k", "1000", "--temperature", "0.9", "--seed", "7",
        "--max_steps", "3", "--save_steps", "2", "--checkpoint_dir", str(out), "--log_with", "none", *extra,
    ]  # fmt: skip


def interrupted_copy(run: Path, step: int, out: Path) -> None:
    """What ``run`` looked like had it been killed right after saving ``checkpoint_step_{step}``."""
    out.mkdir(parents=True)
    shutil.copytree(run / f"checkpoint_step_{step}", out / f"checkpoint_step_{step}")
    for name in ("metrics.jsonl", "completions.jsonl", "run_config.json"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)  # later lines too: --resume must drop them


@pytest.fixture(scope="module")
def real_run(ml100k_dir, module_tmp_path):
    out = module_tmp_path / "run"
    return TRLTrainer(parse_train_args(real_flags(ml100k_dir, out))).train()


def test_checkpoint_layout_and_loadable(real_run):
    run = real_run.run_dir
    assert real_run.global_step == 3
    names = sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint"))
    assert names == ["checkpoint_final", "checkpoint_step_2"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    for name in names:
        folder = run / name
        config = json.loads((folder / "run_config.json").read_text())
        assert config["algorithm"] == "ppo" and config["k"] == 1000
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.num_parameters() > 1e8
        assert AutoTokenizer.from_pretrained(folder).padding_side == "left"
        head = load_file(str(folder / "value_head.safetensors"))
        assert head["value_head.summary.weight"].shape == (1, model.config.hidden_size)
    step2 = run / "checkpoint_step_2"
    for resumable in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (step2 / resumable).is_file(), resumable
    state = json.loads((step2 / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["algorithm"] == "ppo" and state["kl_coef"] == 0.05
    # k=1000 gives non-zero rewards, so the zero-initialised value head has moved.
    assert load_file(str(step2 / "value_head.safetensors"))["value_head.summary.weight"].abs().sum() > 0
    assert latest_checkpoint(run) == step2


def test_metrics_and_completions_logs(real_run):
    records = read_jsonl(real_run.metrics_file)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        for key in METRIC_KEYS:
            assert key in record, key
        assert 0.0 <= record["reward"] <= 1.0 and record["new_rollouts"] is True
        assert 1 <= record["completion_length"] <= 16
        assert 0 <= record["clip_fraction"] <= 1 and record["entropy"] > 0
        assert record["time/generation"] > 0 and record["time/score"] > 0 and record["time/update"] > 0
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
    assert (
        records[0]["learning_rate"] > records[1]["learning_rate"] > records[2]["learning_rate"] >= 0
    )  # linear decay
    completions = read_jsonl(real_run.run_dir / "completions.jsonl")
    assert {c["step"] for c in completions} == {1, 2, 3}
    assert {"prompt", "completion", "target_item", "reward", "rank"} <= set(completions[0])
    assert "A user watched these movies" in completions[0]["prompt"]


def test_resume_continues_from_the_checkpoint(real_run, ml100k_dir, tmp_path):
    out = tmp_path / "run"
    interrupted_copy(real_run.run_dir, 2, out)
    result = TRLTrainer(parse_train_args([*real_flags(ml100k_dir, out), "--resume"])).train()
    assert result.global_step == 3
    resumed, reference = read_jsonl(out / "metrics.jsonl"), read_jsonl(real_run.metrics_file)
    assert [r["step"] for r in resumed] == [1, 2, 3]
    # Same prompts, same samples (RNG restored), same update (optimizer restored) as without the interruption.
    for key in ("reward", "kl", "policy_loss", "value_loss", "completion_length"):
        assert resumed[2][key] == pytest.approx(reference[2][key], rel=1e-4, abs=1e-6), key
    got = [c["completion"] for c in read_jsonl(out / "completions.jsonl") if c["step"] == 3]
    want = [c["completion"] for c in read_jsonl(real_run.run_dir / "completions.jsonl") if c["step"] == 3]
    assert got == want and got
    a = load_file(str(out / "checkpoint_final" / "model.safetensors"))
    b = load_file(str(real_run.run_dir / "checkpoint_final" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # The value head was restored from checkpoint_step_2, not re-initialised to zero.
    va = load_file(str(out / "checkpoint_final" / "value_head.safetensors"))
    vb = load_file(str(real_run.run_dir / "checkpoint_final" / "value_head.safetensors"))
    assert va.keys() == vb.keys() and max((va[k] - vb[k]).abs().max().item() for k in va) < 1e-5


# -- tiny model: LoRA, separate value model, synthetic reward ------------------------------------------


def build_tiny_policy(folder: Path, n_words: int = 40) -> Path:
    """A 2-layer Llama over a 44-token word vocabulary: EOS is sampled often enough for length rewards."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<eos>", "<bos>"] + [f"w{i}" for i in range(n_words)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w0{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=3, eos_token_id=2, pad_token_id=1,
        tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def length_reward(target: int):
    """Synthetic TRL-style reward: -|tokens - target| / target (EOS counted)."""

    def reward(prompts, completions, completion_ids, **kwargs):
        assert len(kwargs["target_item"]) == len(completions) and "trainer_state" in kwargs
        return [-abs(len(ids) - target) / target for ids in completion_ids]

    return reward


def tiny_flags(model: Path, ml100k_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--algorithm", "ppo", "--model_name", str(model), "--dataset_name", "ml-100k", "--data_dir", str(ml100k_dir),
        "--device", "cpu", "--batch_size", "16", "--mini_batch_size", "8", "--ppo_epochs", "2",
        "--max_new_tokens", "12", "--max_length", "96", "--train_users", "64", "--num_epochs", "20",
        "--learning_rate", "1e-3", "--checkpoint_dir", str(out), "--log_with", "none", "--seed", "0", *extra,
    ]  # fmt: skip


def run_with_reward(flags: list[str], reward):
    """TRLTrainer.train() with a TRL-style reward function in place of the retrieval reward (the public API)."""
    return TRLTrainer(parse_train_args(flags), reward_fn=reward).train()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.slow
def test_lora_with_separate_value_model_saves_and_resumes(tiny_model, ml100k_dir, tmp_path):
    flags = tiny_flags(
        tiny_model, ml100k_dir, tmp_path / "full", "--use_peft", "--lora_r", "4", "--value_model", "separate",
        "--max_steps", "2", "--save_steps", "1", "--kl_target", "1.0",
    )  # fmt: skip
    full = run_with_reward(flags, length_reward(4))
    records = read_jsonl(full.metrics_file)
    assert records[0]["kl"] == pytest.approx(
        0.0, abs=1e-6
    )  # LoRA B starts at 0: policy == adapters-off reference
    assert records[1]["kl"] != 0.0  # after an update the reference (adapters disabled) differs
    # Adaptive KL: step 1's KL (0) is below the target, so the error clips to -0.2 over 16 sequences.
    assert records[0]["kl_coef"] == 0.05
    assert records[1]["kl_coef"] == pytest.approx(0.05 * (1 - 0.2 * 16 / 10000))
    step1 = full.run_dir / "checkpoint_step_1"
    assert (step1 / "adapter" / "adapter_config.json").is_file()
    assert not (step1 / "adapter_config.json").exists()  # top level: merged weights, a plain model
    merged = AutoModelForCausalLM.from_pretrained(full.run_dir / "checkpoint_final")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    delta = max(
        (a - b).abs().max().item() for a, b in zip(merged.parameters(), base.parameters(), strict=True)
    )
    assert delta > 0
    value = load_file(str(step1 / "value_head.safetensors"))
    assert any(k.startswith("value_backbone.") and "lora" in k for k in value)
    resumed_dir = tmp_path / "resumed"
    interrupted_copy(full.run_dir, 1, resumed_dir)
    resumed = run_with_reward([*flags[: flags.index("--checkpoint_dir")], "--checkpoint_dir", str(resumed_dir),
                               *flags[flags.index("--checkpoint_dir") + 2 :], "--resume"], length_reward(4))  # fmt: skip
    assert resumed.global_step == 2
    got = read_jsonl(resumed.metrics_file)
    assert [r["step"] for r in got] == [1, 2]
    for key in ("reward", "kl", "kl_coef", "policy_loss", "value_loss"):
        assert got[1][key] == pytest.approx(records[1][key], rel=1e-4, abs=1e-6), key


@pytest.mark.slow
def test_ppo_raises_a_synthetic_length_reward(tiny_model, ml100k_dir, tmp_path):
    result = run_with_reward(
        tiny_flags(tiny_model, ml100k_dir, tmp_path / "run", "--max_steps", "30", "--save_steps", "100"),
        length_reward(4),
    )
    records = read_jsonl(result.metrics_file)
    assert len(records) == 30
    first = sum(r["reward"] for r in records[:5]) / 5
    last = sum(r["reward"] for r in records[-5:]) / 5
    first_len = sum(r["completion_length"] for r in records[:5]) / 5
    last_len = sum(r["completion_length"] for r in records[-5:]) / 5
    # At the start completions run to ~11 of 12 tokens (reward ~ -1.7); the target is 4.
    assert last > first + 0.4, (first, last)
    assert last_len < first_len - 2, (first_len, last_len)
