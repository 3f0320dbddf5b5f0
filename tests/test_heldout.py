"""Held-out evaluation during training: the schedule, the flags, the files, the comparison with step 0, the report.

The end-to-end checks (a real GRPO and PPO run with --eval_steps) are marked slow; step 0 reproducing
``rl4rec evaluate``'s ranks is checked in tests/test_sft.py, on the run it already makes.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rl4rec.errors import ConfigError, Rl4recError
from rl4rec.run_layout import BEST_NAME
from rl4rec.training.config import TrainConfig, parse_train_args
from rl4rec.training.heldout import HeldOutEvaluator, HeldOutSchedule, due


def test_schedule_is_step_zero_every_n_and_the_last_step():
    assert [s for s in range(0, 11) if due(s, 4, 10)] == [0, 4, 8, 10]
    assert not any(due(s, 0, 10) for s in range(11))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--keep_best", "auc"], "--keep_best needs held-out evaluations"),
        (["--eval_steps", "-1"], "--eval_steps must be >= 0"),
        (["--eval_steps", "5", "--eval_split", "train"], "--eval_split must be one of valid, test"),
        (["--eval_steps", "5", "--eval_users", "1"], "--eval_users must be >= 2"),
        (["--eval_steps", "5", "--keep_best", "reward"], "--keep_best 'reward'"),
        (["--eval_steps", "5", "--keep_best", "fused/auc"], "fused/... needs --eval_fusion"),
        (["--eval_steps", "5", "--eval_fusion", "missing.json"], "missing.json"),
    ],
)
def test_bad_heldout_flags_fail_before_anything_loads(flags, message):
    with pytest.raises(Rl4recError, match=message):  # ConfigError; DataError for a missing file
        parse_train_args(flags)


def test_heldout_flags_are_shared_by_train_and_sft():
    from rl4rec.training.sft import SFTConfig

    config = parse_train_args(["--eval_steps", "10", "--eval_users", "64", "--keep_best", "ndcg@10"])
    assert (config.eval_steps, config.eval_users, config.eval_split, config.keep_best) == (
        10,
        64,
        "valid",
        "ndcg@10",
    )
    with pytest.raises(ConfigError, match="--keep_best needs"):
        SFTConfig(keep_best="auc").validate()


def tiny_policy(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, eos_token_id=2, bos_token_id=1)  # fmt: skip
    return LlamaForCausalLM(config)


def test_evaluations_write_ranks_compare_with_step_zero_keep_the_best_and_resume(
    ml100k_dir, policy_tokenizer, tmp_path
):
    config = TrainConfig(dataset_name="ml-100k", data_dir=str(ml100k_dir), eval_steps=2, eval_users=6,
                         keep_best="auc", max_length=128)  # fmt: skip
    model = tiny_policy(len(policy_tokenizer))
    logged: list[tuple[int, dict]] = []
    saved: list[int] = []

    def write_model(folder):
        saved.append(1)
        model.save_pretrained(folder)

    evaluator = HeldOutEvaluator(config, policy_tokenizer, tmp_path, max_new_tokens=6)
    schedule = HeldOutSchedule(evaluator, lambda m, step: logged.append((step, m)), write_model)
    first = schedule.maybe(model, 0, 6)
    assert first is not None and len(first.ranks) == 6 and "eval/auc_vs_step0" not in first.metrics
    rows = [json.loads(line) for line in (tmp_path / "heldout" / "step_0.jsonl").read_text().splitlines()]
    assert [r["rank"] for r in rows] == first.ranks.tolist() and all("query" in r for r in rows)
    assert saved and json.loads((tmp_path / BEST_NAME / "best.json").read_text())["step"] == 0
    # The same policy again: the paired difference to step 0 is exactly 0, and it is not a new best.
    second = schedule.maybe(model, 2, 6)
    assert second.metrics["eval/auc_vs_step0"] == 0 and second.metrics["eval/auc_vs_step0_lo"] == 0
    assert len(saved) == 1 and [step for step, _ in logged] == [0, 2]
    assert schedule.maybe(model, 3, 6) is None  # not due
    # A resumed run (a new evaluator) compares with step 0's stored ranks and keeps the stored best.
    resumed = HeldOutEvaluator(config, policy_tokenizer, tmp_path, max_new_tokens=6)
    assert resumed.best is not None and resumed.best["step"] == 0
    later = resumed.evaluate(model, 2)
    assert later.metrics["eval/auc_vs_step0"] == 0
    resumed.forget_after(-1)
    assert resumed.best is None


def test_heldout_queries_bypass_the_training_autocast_wrapper(ml100k_dir, policy_tokenizer, tmp_path, caplog):
    """With --bf16 on, accelerate replaces the model's forward by an autocast wrapper and keeps the original as
    `_original_forward`; the curve must generate through the original, as `rl4rec evaluate` does. A wrapper that
    forces one token makes the difference visible (real bf16 rarely flips a tiny model's greedy token)."""
    config = TrainConfig(
        dataset_name="ml-100k", data_dir=str(ml100k_dir), eval_steps=2, eval_users=3, max_length=128
    )
    model = tiny_policy(len(policy_tokenizer))
    evaluator = HeldOutEvaluator(config, policy_tokenizer, tmp_path, max_new_tokens=4)
    plain = evaluator.queries(model)
    forced = policy_tokenizer.encode(" Comedy", add_special_tokens=False)[0]
    original = model.forward

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        out.logits[..., forced] += 1e4
        return out

    model._original_forward, model.forward = original, wrapper
    assert evaluator.queries(model) == plain and model.forward is wrapper  # the wrapper is back for training
    from rl4rec.policy.generation import GenerationSettings, HFGenerator

    through_wrapper = HFGenerator(model, policy_tokenizer, GenerationSettings(max_new_tokens=4)).generate(
        evaluator.prompts
    )
    assert through_wrapper != plain and all("Comedy" in t for t in through_wrapper)
    # A step 0 written before this (no "autocast" field) is still compared with, with a warning.
    first = evaluator.evaluate(model, 0)
    path = tmp_path / "heldout" / "step_0.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["autocast"] is False for r in rows)
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "autocast"}) + "\n" for r in rows))
    resumed = HeldOutEvaluator(config, policy_tokenizer, tmp_path, max_new_tokens=4)
    assert resumed.evaluate(model, 2).metrics["eval/auc_vs_step0"] == 0 and first.ranks.size == 3
    assert "mixes two precisions" in caplog.text


def test_report_draws_the_heldout_curve_and_tables_it(tmp_path):
    from rl4rec.evaluation.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": 0, "eval/auc": 0.60, "eval/ndcg@10": 0.01, "eval/users": 64, "eval/seconds": 5.0}]
    for step in range(1, 5):
        records.append({"step": step, "reward": 0.5 + 0.01 * step, "loss": 0.1, "time/step": 10.0})
    records.append({"step": 4, "eval/auc": 0.65, "eval/ndcg@10": 0.02, "eval/users": 64, "eval/seconds": 5.0,
                    "eval/auc_vs_step0": 0.05, "eval/auc_vs_step0_lo": 0.01, "eval/auc_vs_step0_hi": 0.09,
                    "eval/ndcg@10_vs_step0": 0.01, "eval/ndcg@10_vs_step0_lo": -0.01,
                    "eval/ndcg@10_vs_step0_hi": 0.03})  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report([run], tmp_path / "report").read_text()
    assert "+0.0500 [+0.0100, +0.0900]" in report and "heldout_curves.png" in report
    assert "2 evaluations of 64 users took 0.2 min, 20 % of the run" in report
    assert (tmp_path / "report" / "heldout_curves.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_training_logs_heldout_evaluations(algorithm, ml100k_dir, tmp_path):
    from rl4rec.training.trainer import TRLTrainer
    from train_helpers import tiny_policy_dir, train_flags

    policy = tiny_policy_dir(tmp_path / "policy")  # plumbing, not learning: a tiny random policy is enough
    flags = train_flags(ml100k_dir, tmp_path / "run", "--eval_steps", "2", "--eval_users", "3", "--keep_best", "auc",
                        "--model_name", str(policy), algorithm=algorithm, max_steps=2, max_length=128)  # fmt: skip
    result = TRLTrainer(parse_train_args(flags)).train()
    records = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    evals = [r for r in records if "eval/auc" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert "eval/auc_vs_step0_lo" in evals[1] and not any("reward" in r for r in evals)
    assert [r["step"] for r in records if "reward" in r] == [1, 2]
    assert (result.run_dir / BEST_NAME / "best.json").is_file()
    assert sorted(p.name for p in (result.run_dir / "heldout").iterdir()) == ["step_0.jsonl", "step_2.jsonl"]
    # Step 0 is `rl4rec evaluate`'s greedy texts for the same users, although this CPU trains in bf16 autocast
    # (--bf16 auto): the curve generates in the precision evaluate does.
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import read_ranks, run_evaluation

    run_evaluation(EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", method="policy",
                              model=str(policy), num_users=3, max_new_tokens=8, max_length=128, device="cpu",
                              bootstrap_samples=100, run_dir=str(tmp_path / "eval")).validate())  # fmt: skip
    evaluated = read_ranks(tmp_path / "eval")
    step0 = [
        json.loads(line) for line in (result.run_dir / "heldout" / "step_0.jsonl").read_text().splitlines()
    ]
    assert [r["query"] for r in step0] == [evaluated[r["user_id"]]["query"] for r in step0]
    assert [r["rank"] for r in step0] == [evaluated[r["user_id"]]["rank"] for r in step0]


def test_metrics_record_keeps_heldout_lines_apart_from_rollouts():
    from rl4rec.training.run_log import metrics_record

    rollout: dict = {}
    metrics_record(3, {"loss": 0.1, "reward": 0.5}, rollout)
    record = metrics_record(3, {"eval/auc": 0.7, "epoch": 1.0}, rollout)
    assert record == {"step": 3, "eval/auc": 0.7, "epoch": 1.0}
    assert SimpleNamespace(**rollout).reward == 0.5


def test_headroom_best_of_k_and_reward_ranked_fine_tuning_rows(
    ml100k, ml100k_dir, policy_tokenizer, tmp_path
):
    """`rl4rec headroom` on tiny random weights: best-of-K is at least the mean sample, zero-spread is counted,
    and on the train split each user's lowest-ranked query becomes the SFT completion (`--completions_from`)."""
    from rl4rec.data.prompts import PromptBuilder, PromptConfig
    from rl4rec.evaluation.headroom import HeadroomConfig, run_headroom
    from rl4rec.training.ranked_samples import best_queries, ranked_samples
    from rl4rec.training.sft import SFTConfig, sft_examples, sft_rows

    folder = tmp_path / "tiny"
    tiny_policy(len(policy_tokenizer)).save_pretrained(folder)
    policy_tokenizer.save_pretrained(folder)
    out = tmp_path / "headroom.json"
    result = run_headroom(HeadroomConfig(dataset="ml-100k", data_dir=str(ml100k_dir), split="train", model=str(folder),
                                         num_users=4, samples=3, max_new_tokens=5, max_length=128, device="cpu",
                                         output=str(out)).validate())  # fmt: skip
    for metric in ("auc", "ndcg@10"):
        summary = result["text"][metric]
        assert (
            summary["best_of_k"]["mean"] >= summary["mean_of_k"]["mean"] and 0 <= summary["zero_spread"] <= 1
        )
        assert 0 <= summary["merged_k"]["mean"] <= 1  # the K samples ranked as one (evaluate --num_queries K)
    assert set(result["baselines"]) == {"last-item", "history-fusion"}
    lines = [json.loads(line) for line in out.with_suffix(".ranks.jsonl").read_text().splitlines()]
    best = best_queries(ranked_samples(out.with_suffix(".ranks.jsonl")))
    for line in lines:
        i = min(range(3), key=line["ranks_text"].__getitem__)
        assert best[line["user_id"]] == line["queries"][i]
    config = SFTConfig(dataset_name="ml-100k", completions_from=str(out.with_suffix(".ranks.jsonl")))
    examples = sft_examples(ml100k, config)
    assert sorted(e.user_id for e in examples) == sorted(best)
    rows = sft_rows(ml100k, examples, PromptBuilder(ml100k, None, PromptConfig()), answers=best)
    assert [r["completion"][0]["content"] for r in rows] == [best[e.user_id] for e in examples]


def test_demo_prints_the_heldout_curve(tmp_path):
    from rl4rec.demo import curve_lines

    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": 0, "eval/auc": 0.61, "eval/ndcg@10": 0.01}, {"step": 1, "reward": 0.5, "loss": 0.1},
               {"step": 10, "eval/auc": 0.63, "eval/ndcg@10": 0.02, "eval/auc_vs_step0": 0.02,
                "eval/auc_vs_step0_lo": -0.01, "eval/auc_vs_step0_hi": 0.05}]  # fmt: skip
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = curve_lines(metrics)
    assert len(lines) == 2 and "AUC 0.6100" in lines[0] and "+0.0200 [-0.0100, +0.0500]" in lines[1]


def test_demo_verdict_follows_its_own_interval():
    """The demo's closing sentence is read from its paired test interval, so a short run never claims a gain."""
    from rl4rec.demo import verdict

    def auc(lo: float, hi: float) -> dict:
        return {"auc": {"diff": (lo + hi) / 2, "ci95": [lo, hi]}}

    assert "made the policy better" in verdict(auc(0.001, 0.05), 40).split(" The same 40 steps")[0]
    assert "interval contains 0" in verdict(auc(-0.01, 0.05), 16)
    assert "only values below 0" in verdict(auc(-0.05, -0.01), 16)
    assert "No paired test reading" in verdict({}, 16)
    # a run shorter than the recipe's early dip says so, and how to run past it; a full-length one does not
    assert "--max_steps 40" in verdict(auc(-0.01, 0.05), 16)
    assert "early dip" not in verdict(auc(-0.01, 0.05), 40)


def test_demo_sizes_itself_to_the_cpu_and_keeps_the_recipe():
    """Both CPU sizes run the same recipe (constant rate: a short cut of a linear schedule learns at half the rate);
    the faster CPU spends its spare minutes on more paired test users, which narrows the demo's interval."""
    from rl4rec.demo import DEMO_TRAIN_FLAGS, demo_size

    (fast_steps, fast_users), (slow_steps, slow_users) = demo_size(True), demo_size(False)
    assert fast_users > slow_users >= 128 and fast_steps >= slow_steps >= 1
    flags = dict(zip(DEMO_TRAIN_FLAGS[::2], DEMO_TRAIN_FLAGS[1::2], strict=True))
    assert flags["--lr_scheduler"] == "constant" and flags["--next_items"] == "5"
