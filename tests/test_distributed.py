"""Two training processes for real: ``torchrun --nproc_per_node 2`` (gloo on CPU) running GRPO.

The ranks must split every rollout batch (different users), agree on the data order, hold identical
weights after every optimiser step (DDP averages the gradients), write the run directory once
(rank 0), and resume together from the step checkpoint. A GPU user runs the same command line with
``--device cuda`` (NCCL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rl4rec.training.checkpoints import list_step_checkpoints

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

#: ``rl4rec train`` with a callback that writes, per rank, a checksum of the weights when training
#: begins and after every step, the dataset's order, and the users whose completions this rank rewarded.
RANK_REPORT = """
import functools, hashlib, json, os, sys
from pathlib import Path
from transformers import TrainerCallback
import rl4rec.rewards.boundary as boundary
import rl4rec.training.trainer as trainer_module

out, rank, seen = Path(os.environ["RANK_REPORT_DIR"]), int(os.environ["RANK"]), []

def checksum(model):
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()

class Report(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.begin = {"start": checksum(model), "start_step": state.global_step,
                      "data_order": list(train_dataloader.dataset["user_id"]), "steps": {}}
    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.begin["steps"][state.global_step] = checksum(model)
    def on_train_end(self, args, state, control, model=None, **kwargs):
        report = {**self.begin, "end": checksum(model), "rewarded_users": seen}
        (out / f"rank{rank}.json").write_text(json.dumps(report))

training_reward = boundary.training_reward
def recording(*args, **kwargs):
    inner = training_reward(*args, **kwargs)
    @functools.wraps(inner)
    def reward(*a, **kw):
        seen.append(sorted(set(kw["user_id"])))
        return inner(*a, **kw)
    return reward
trainer_module.training_reward = recording

init = trainer_module.TRLTrainer.__init__
def with_report(self, *args, callbacks=None, **kwargs):
    init(self, *args, callbacks=[*(callbacks or []), Report()], **kwargs)
trainer_module.TRLTrainer.__init__ = with_report
from rl4rec.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""


def torchrun(script: Path, flags: list[str], report_dir: Path) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2",
           str(script), *flags]  # fmt: skip
    report_dir.mkdir()
    env = dict(os.environ, RANK_REPORT_DIR=str(report_dir), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def failure(proc: subprocess.CompletedProcess) -> str:
    """The first rank's traceback (torchrun's own summary at the end says little)."""
    start = proc.stderr.find("Traceback")
    return proc.stderr[start : start + 6000] if start >= 0 else proc.stderr[-6000:]


def reports(report_dir: Path) -> list[dict]:
    found = [report_dir / f"rank{rank}.json" for rank in (0, 1)]
    assert all(p.is_file() for p in found), sorted(p.name for p in report_dir.iterdir())
    return [json.loads(p.read_text()) for p in found]


def global_user_pairs(data_order: list[int], steps: int) -> list[tuple[int, int]]:
    """The 2 users of each step's rollout batch in TRL's sampler order (same seed on every rank)."""
    from trl.trainer.utils import RepeatSampler

    sampler = RepeatSampler(data_order, mini_repeat_count=2, batch_size=2, repeat_count=2, seed=7)
    indexes = list(sampler)[: steps * 8]  # per step: 2 prompts x 2 completions, the block repeated twice
    return [(data_order[indexes[8 * s]], data_order[indexes[8 * s + 2]]) for s in range(steps)]


def metric_steps(out: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]


def test_two_processes_train_in_sync_checkpoint_once_and_resume(ml100k_dir, tiny_policy, tmp_path):
    script, out = tmp_path / "train_rank_report.py", tmp_path / "run"
    script.write_text(RANK_REPORT)
    # 4 completions per step = 2 users x 2 completions; each rank rewards and back-propagates one user's.
    flags = [
        "--dataset_name", "ml-100k", "--data_dir", str(ml100k_dir), "--device", "cpu", "--algorithm", "grpo",
        "--batch_size", "4", "--num_generations", "2", "--mini_batch_size", "1", "--ppo_epochs", "1",
        "--max_new_tokens", "8", "--max_length", "128", "--train_users", "16", "--reward_type", "auc",
        "--temperature", "0.9", "--seed", "7", "--max_steps", "3", "--save_steps", "2",
        "--checkpoint_dir", str(out), "--log_with", "none", "--model_name", str(tiny_policy),
    ]  # fmt: skip

    first = torchrun(script, flags, tmp_path / "first")
    assert first.returncode == 0, failure(first)
    rank0, rank1 = reports(tmp_path / "first")
    assert rank0["start"] == rank1["start"]
    assert rank0["steps"] == rank1["steps"], "the ranks' weights diverged: gradients were not synchronised"
    assert list(rank0["steps"]) == ["1", "2", "3"] and rank0["end"] == rank0["steps"]["3"] != rank0["start"]
    assert rank0["data_order"] == rank1["data_order"] and len(rank0["data_order"]) == 16
    # one global order (TRL's seeded sampler); each rollout batch's 2 users are split between the ranks
    expected = global_user_pairs(rank0["data_order"], steps=3)
    assert rank0["rewarded_users"] == [[a] for a, _ in expected]
    assert rank1["rewarded_users"] == [[b] for _, b in expected]

    # rank 0 alone writes the run directory: each checkpoint once, one metrics line per step
    assert [step for step, _ in list_step_checkpoints(out)] == [2, 3]
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".*"))  # nothing left unpublished
    checkpoint = out / "checkpoint_step_2"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert (out / "checkpoint_final" / "model.safetensors").is_file() and (out / "run_config.json").is_file()
    assert metric_steps(out) == [1, 2, 3]
    completions = (out / "completions.jsonl").read_text().splitlines()
    assert len(completions) == 3 * 2  # rank 0's 2 completions per step (both ranks' would be 12)
    assert first.stdout.count("final checkpoint:") == 1

    # as if the run had stopped after checkpoint_step_2: resume reproduces steps 3 exactly, on both ranks
    shutil.rmtree(out / "checkpoint_step_3")
    shutil.rmtree(out / "checkpoint_final")
    resumed = torchrun(script, [*flags, "--resume"], tmp_path / "resumed")
    assert resumed.returncode == 0, failure(resumed)
    assert resumed.stderr.count(f"resuming from {checkpoint}") == 1  # replicas log warnings only
    again0, again1 = reports(tmp_path / "resumed")
    assert again0["start"] == again1["start"] == rank0["steps"]["2"]  # the synced step-2 weights
    assert again0["steps"] == again1["steps"] == {"3": rank0["steps"]["3"]}
    assert again0["rewarded_users"] == [[expected[2][0]]] and again1["rewarded_users"] == [[expected[2][1]]]
    assert metric_steps(out) == [1, 2, 3]
    assert [step for step, _ in list_step_checkpoints(out)] == [2, 3]
    assert (out / "checkpoint_final" / "model.safetensors").is_file()
