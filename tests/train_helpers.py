"""Shared by the tests that run `rl4rec train` for a few steps: one flag set, one way to wait on a run.

Each test states only what it changes (``--max_steps 1``, ``--retrieval ray`` ...) so the tiny-run settings
that keep these tests within the CI budget are tuned in one place.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

#: Training subprocesses use one torch thread: on a shared 2-core machine two threads stall each other
#: (see docs/BENCHMARKS.md) and a tiny step takes minutes instead of seconds.
TRAIN_ENV = dict(os.environ, OMP_NUM_THREADS="1")

#: A GRPO run on ml-100k small enough for a CPU test: 4 prompts x 2 completions of 8 tokens a step.
TINY_GRPO = {
    "algorithm": "grpo", "dataset_name": "ml-100k", "device": "cpu", "batch_size": "4", "num_generations": "2",
    "mini_batch_size": "2", "ppo_epochs": "1", "max_new_tokens": "8", "max_length": "256", "train_users": "16",
    "k": "1000", "max_steps": "3", "log_with": "none", "temperature": "0.9", "seed": "7",
}  # fmt: skip


def train_flags(data_dir: Path, out: Path, *extra: str, **overrides: str | int) -> list[str]:
    """``TINY_GRPO`` with ``overrides`` as command-line flags, then ``extra`` as given."""
    settings = {**TINY_GRPO, **{key: str(value) for key, value in overrides.items()}}
    flags = [f for key, value in settings.items() for f in (f"--{key}", value)]
    return [*flags, "--data_dir", str(data_dir), "--checkpoint_dir", str(out), *extra]


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; stop early once ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.1)
    return False


def metric_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def run_until_stopped(cmd: list[str], cwd: Path, log: Path, ready, stop, timeout: float = 600) -> int:
    """Start ``cmd``, wait until ``ready()``, call ``stop()`` (the fault), and return the exit code.

    The process is killed if it is still running when this returns, so a test that fails never leaves a
    training run behind.
    """
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=TRAIN_ENV, stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert wait_for(ready, timeout, proc), log.read_text()[-3000:]
        stop()
        return proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()


def tiny_policy_dir(folder: Path) -> Path:
    """A 2-layer random Llama with the default policy's tokenizer, saved as a policy folder.

    End-to-end tests that check plumbing (not what a model learns) train it in seconds instead of minutes.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rl4rec.policy.loading import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
