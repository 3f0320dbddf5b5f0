"""Real GRPO runs with the real retrieval reward and the real 135M policy (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from rl4rec.training.checkpoints import latest_checkpoint
from rl4rec.training.config import parse_train_args
from rl4rec.training.trainer import TRLTrainer
from train_helpers import train_flags

pytestmark = pytest.mark.slow


def tiny_flags(ml100k_dir: Path, out: Path, *extra: str) -> list[str]:
    return train_flags(
        ml100k_dir, out, "--save_steps", "2", *extra, max_new_tokens=12, max_length=160, max_steps=4
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class StopAt(TrainerCallback):
    """Simulates an interruption right after a step (its checkpoint is written first)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


@pytest.fixture(scope="module")
def full_run(ml100k_dir, module_tmp_path):
    out = module_tmp_path / "run"
    # keeps only the newest step checkpoint (1.6 GB each: CI disks are small)
    result = TRLTrainer(parse_train_args(tiny_flags(ml100k_dir, out, "--save_total_limit", "1"))).train()
    return result


def test_checkpoint_layout_and_loadable(full_run):
    run = full_run.run_dir
    assert full_run.global_step == 4
    names = sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint"))
    assert names == ["checkpoint_final", "checkpoint_step_4"]  # step 2 was written, then pruned
    assert not [p for p in run.iterdir() if p.name.startswith(".") or p.name.startswith("checkpoint-")]
    for name in names:
        folder = run / name
        config = json.loads((folder / "run_config.json").read_text())
        assert config["algorithm"] == "grpo" and config["k"] == 1000
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert model.num_parameters() > 1e8 and tokenizer.pad_token_id != tokenizer.eos_token_id
    for resumable in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (run / "checkpoint_step_4" / resumable).is_file()
    assert latest_checkpoint(run) == run / "checkpoint_step_4"


def test_metrics_and_completions_logs(full_run):
    records = read_jsonl(full_run.metrics_file)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        for key in ("reward", "reward_std", "completion_length", "entropy", "time/generation", "time/reward",
                    "time/update", "time/step", "components/ndcg@1000", "components/hit@1000", "learning_rate"):  # fmt: skip
            assert key in record, key
        assert 0.0 <= record["reward"] <= 1.0
        assert record["time/generation"] > 0 and record["time/update"] > 0
    completions = read_jsonl(full_run.run_dir / "completions.jsonl")
    assert completions and {"step", "prompt", "completion", "target_item", "reward", "rank"} <= set(
        completions[0]
    )
    assert {c["step"] for c in completions} == {1, 2, 3, 4}
    assert "A user watched these movies" in completions[0]["prompt"]


def test_interrupted_and_resumed_run_logs_the_same_rewards(full_run, ml100k_dir, tmp_path):
    out = tmp_path / "run"
    flags = tiny_flags(ml100k_dir, out, "--save_total_limit", "1")
    TRLTrainer(parse_train_args(flags), callbacks=[StopAt(2)]).train()
    assert latest_checkpoint(out) == out / "checkpoint_step_2"
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    result = TRLTrainer(parse_train_args([*flags, "--resume"])).train()
    assert result.global_step == 4
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint_final", "checkpoint_step_4"]  # fmt: skip
    resumed = read_jsonl(out / "metrics.jsonl")
    reference = read_jsonl(full_run.metrics_file)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for got, want in zip(resumed, reference, strict=True):
        assert got["reward"] == pytest.approx(want["reward"], abs=1e-9), got["step"]
    got_texts = [c["completion"] for c in read_jsonl(out / "completions.jsonl") if c["step"] > 2]
    want_texts = [
        c["completion"] for c in read_jsonl(full_run.run_dir / "completions.jsonl") if c["step"] > 2
    ]
    assert got_texts == want_texts
