"""What every training algorithm shares about one run, so that none of them depends on another.

GRPO/RLOO (TRL), rl4rec's PPO loop and SFT all need the same things: the run directory with its
logs and ``run_config.json``, resume from the latest step checkpoint, the seed, the LoRA config,
the final checkpoint, the reward function and the result they return. ``TRLTrainer`` builds a
:class:`RunContext` and hands it to the algorithm; the PPO loop reads the context, never the trainer.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.io import atomic_directory, atomic_write_text
from rl4rec.run_layout import COMPLETIONS_FILE, FINAL_NAME, METRICS_FILE, RUN_CONFIG
from rl4rec.training.checkpoints import clean_partial, latest_checkpoint
from rl4rec.training.distributed import is_main_process
from rl4rec.training.run_log import JsonlLog

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path
    global_step: int
    metrics_file: Path


def set_seed(seed: int) -> None:
    import torch
    from transformers import set_seed as hf_set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    hf_set_seed(seed)


def lora_config(config: Any) -> Any:
    """The LoRA adapters of ``--use_peft`` (same fields in TrainConfig and SFTConfig); None without it."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


#: Flags a resumed run may change: where it runs, how it logs and how far it goes, not what it learns.
RESUMABLE_CHANGES = frozenset({
    "resume", "max_steps", "num_epochs", "checkpoint_dir", "data_dir", "device", "bf16", "gradient_checkpointing",
    "log_with", "project_name", "log_completions", "save_steps", "save_total_limit", "eval_steps", "eval_batch_size",
    "ray_address", "namespace", "retrieval_service_name", "retry_timeout_s", "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size",
})  # fmt: skip
#: The held-out sample and what is kept by it: compared when both runs evaluate, since another sample would break
#: the paired difference to step 0 (a resume may stop or start evaluating).
HELDOUT_SAMPLE = frozenset({"eval_users", "eval_split", "eval_seed", "eval_fusion", "keep_best"})


def _same_value(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()  # one file named two ways
    return False


def check_resumed_flags(saved_config: Path, config: Any) -> None:
    """Refuse to resume a run with flags that change what it learns.

    Without this, ``--resume`` with another learning rate, reward or model silently continues a checkpoint
    trained under the first flags and labels the whole run with the second: a result nobody can reproduce.
    Fields the saved config lacks (written by an older version) are not compared.
    """
    if not saved_config.is_file():
        return
    try:
        saved = json.loads(saved_config.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--resume: cannot read {saved_config} ({exc}); restore it or start a new run."
        ) from exc
    # through JSON, so that values compare as they were saved (tuples as lists)
    now = json.loads(config.to_json())
    skip = set(RESUMABLE_CHANGES)
    if not (saved.get("eval_steps") and now.get("eval_steps")):
        skip |= HELDOUT_SAMPLE
    changed = [
        f"--{key} {saved[key]!r} -> {now[key]!r}"
        for key in sorted(saved.keys() & now.keys())
        if key not in skip and not _same_value(saved[key], now[key])
    ]
    if changed:
        raise ConfigError(
            f"--resume with flags the run did not start with: {'; '.join(changed)}. Resume with the flags in "
            f"{saved_config}, or start a new --checkpoint_dir for the new settings."
        )


def checkpoint_step(checkpoint: Path) -> int:
    """N of ``checkpoint_step_N``."""
    return int(checkpoint.name.rsplit("_", 1)[1])


@dataclass
class RunContext:
    """One run's directory, logs, callbacks and reward; ``config`` is a TrainConfig or an SFTConfig."""

    config: Any
    #: Extra transformers TrainerCallbacks (early stopping, custom logging).
    callbacks: list[Any] = field(default_factory=list)
    #: The reward function (RL runs; set before any model loads).
    reward_fn: Any = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.config.checkpoint_dir)
        self.metrics_log = JsonlLog(self.run_dir / METRICS_FILE)
        self.completions_log = JsonlLog(self.run_dir / COMPLETIONS_FILE)

    def resume_checkpoint(self) -> Path | None:
        if not self.config.resume:
            return None
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            logger.warning("--resume: no checkpoint_step_N in %s yet; starting from scratch", self.run_dir)
        return checkpoint

    def prepare(self, resume_from: Path | None) -> None:
        """Create the run directory; drop leftovers of interrupted saves and logs past the resumed step."""
        if resume_from is not None:  # every process reads it: all of them stop, not only rank 0
            check_resumed_flags(self.run_dir / RUN_CONFIG, self.config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not is_main_process():  # several processes: rank 0 owns the run directory
            return
        clean_partial(self.run_dir)
        for stale in self.run_dir.glob("checkpoint-*"):  # HF's own name: a save that never got published
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        for log in (self.metrics_log, self.completions_log):
            if resume_from is not None:
                log.truncate_after(checkpoint_step(resume_from))
            elif log.path.exists():
                log.path.unlink()
        atomic_write_text(self.run_dir / RUN_CONFIG, self.config.to_json())

    def fill_checkpoint(self, folder: Path, write_model: Callable[[Path], None], tokenizer: Any) -> None:
        """A loadable policy folder: the weights ``write_model(folder)`` writes, the tokenizer and the config."""
        write_model(folder)
        tokenizer.save_pretrained(str(folder))
        atomic_write_text(folder / RUN_CONFIG, self.config.to_json())

    def save_final(self, write_model: Callable[[Path], None], tokenizer: Any) -> Path:
        """``checkpoint_final`` (see :meth:`fill_checkpoint`), written atomically."""
        final = self.run_dir / FINAL_NAME
        with atomic_directory(final) as tmp:
            self.fill_checkpoint(tmp, write_model, tokenizer)
        logger.info("final checkpoint: %s", final)
        return final

    def result(self, final: Path, step: int) -> TrainResult:
        return TrainResult(self.run_dir, final, step, self.metrics_log.path)
