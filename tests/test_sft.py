"""Supervised warm start: the data never holds an evaluation target; a real 2-step run feeds evaluate and train."""

from __future__ import annotations

import json

import pytest

from rl4rec.data import leave_one_out
from rl4rec.data.prompts import PromptBuilder, PromptConfig
from rl4rec.errors import ConfigError
from rl4rec.training.sft import SFTConfig, sft_examples, sft_rows


@pytest.mark.parametrize("train_targets", ["last", "all"])
def test_sft_data_holds_no_validation_or_test_target(ml100k, train_targets):
    config = SFTConfig(dataset_name="ml-100k", train_targets=train_targets)
    examples = sft_examples(ml100k, config)
    held_out = {
        (e.user_id, len(e.history))
        for split in ("valid", "test")
        for e in leave_one_out(ml100k.sequences, split).examples
    }
    # A training example's target position is never a validation or test target position of its user ...
    assert not [e for e in examples if (e.user_id, len(e.history)) in held_out]
    # ... nor is any held-out item inside a training example (history or target).
    for e in examples:
        seq = ml100k.sequences[e.user_id]
        assert len(e.history) + 1 <= len(seq) - 2 and tuple(seq[: len(e.history) + 1]) == (
            *e.history,
            e.target,
        )
    if train_targets == "all":
        assert len(examples) > len(leave_one_out(ml100k.sequences, "train").examples)


def test_sft_rows_are_the_rl_prompt_and_the_target_text(ml100k):
    examples = sft_examples(ml100k, SFTConfig(dataset_name="ml-100k", max_examples=5, seed=3))
    assert len(examples) == 5
    assert examples == sft_examples(
        ml100k, SFTConfig(dataset_name="ml-100k", max_examples=5, seed=3)
    )  # seeded
    builder = PromptBuilder(ml100k, None, PromptConfig(max_items=4))
    rows = sft_rows(ml100k, examples, builder)
    for ex, row in zip(examples, rows, strict=True):
        assert row["prompt"] == builder.build(ex.history)
        assert row["completion"] == [{"role": "assistant", "content": ml100k.item_text(ex.target)}]


def test_sft_config_rejects_bad_values():
    for bad in ({"batch_size": 6, "mini_batch_size": 4}, {"train_targets": "every"}, {"max_examples": 0},
                {"learning_rate": 0}, {"prompt_order": "newest"}, {"bf16": "yes"}):  # fmt: skip
        with pytest.raises(ConfigError):
            SFTConfig(**bad).validate()


@pytest.mark.slow
def test_two_step_sft_checkpoint_feeds_evaluate_and_resume(ml100k_dir, tmp_path):
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import run_evaluation
    from rl4rec.training.sft import run_sft

    run = tmp_path / "sft"
    common = dict(dataset_name="ml-100k", data_dir=str(ml100k_dir), checkpoint_dir=str(run), device="cpu",
                  max_examples=8, batch_size=2, mini_batch_size=1, max_length=96, max_history_items=3,
                  max_completion_tokens=12, save_steps=1)  # fmt: skip
    # Held-out evaluation at steps 0, 1, 2 (3 validation users), the best policy by AUC kept.
    heldout = dict(eval_steps=1, eval_users=3, keep_best="auc")
    final = run_sft(SFTConfig(max_steps=2, **heldout, **common))
    assert (final / "model.safetensors").is_file() and (run / "checkpoint_step_2").is_dir()
    saved = json.loads((final / "run_config.json").read_text())
    assert saved["max_history_items"] == 3 and saved["max_length"] == 96
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    metrics = [m for m in records if "loss" in m]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["loss"] > 0 for m in metrics)
    evals = [m for m in records if "eval/auc" in m]
    assert [m["step"] for m in evals] == [0, 1, 2] and "eval/auc_vs_step0" in evals[-1]
    best = json.loads((run / "checkpoint_best" / "best.json").read_text())
    assert best["metric"] == "auc" and best["value"] == max(m["eval/auc"] for m in evals)
    assert (run / "checkpoint_best" / "model.safetensors").is_file()
    # --resume continues from checkpoint_step_2 up to the new max_steps, keeping the log consistent; the
    # held-out comparison with step 0 reads step 0's stored ranks.
    run_sft(SFTConfig(max_steps=3, resume=True, **heldout, **common))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in records if "loss" in m] == [1, 2, 3]
    assert [m["step"] for m in records if "eval/auc" in m] == [0, 1, 2, 3]
    assert "eval/auc_vs_step0" in records[-1] or "eval/auc_vs_step0" in records[-2]
    # Resuming a finished run trains nothing more (HF alone would add a zero-learning-rate step).
    run_sft(SFTConfig(max_steps=3, resume=True, **common))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3] and not (
        run / "checkpoint_step_4"
    ).exists()
    # Step 0's held-out ranks are those `rl4rec evaluate` gives the untrained policy with the same settings.
    step0 = [json.loads(line) for line in (run / "heldout" / "step_0.jsonl").read_text().splitlines()]
    zero_shot = run_evaluation(
        EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", method="zero-shot", num_users=3,
                   max_new_tokens=12, max_length=96, max_history_items=3, device="cpu",
                   run_dir=str(tmp_path / "zero-shot"), bootstrap_samples=100).validate()
    )  # fmt: skip
    assert zero_shot["num_users"] == 3
    stored = {
        r["user_id"]: r
        for r in map(json.loads, (tmp_path / "zero-shot" / "ranks.jsonl").read_text().splitlines())
    }
    assert [(r["rank"], r["query"]) for r in step0] == [
        (stored[r["user_id"]]["rank"], stored[r["user_id"]]["query"]) for r in step0
    ]
    # The checkpoint is a policy: evaluate rebuilds its training prompts from run_config.json.
    result = run_evaluation(
        EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), method="policy", model=str(final), num_users=3,
                   max_new_tokens=6, device="cpu", run_dir=str(tmp_path / "eval"), bootstrap_samples=100).validate()
    )  # fmt: skip
    assert result["num_users"] == 3
    protocol = json.loads((tmp_path / "eval" / "eval_config.json").read_text())["identity"]
    assert protocol["prompt"]["max_history_items"] == 3 and protocol["prompt"]["max_length"] == 96
