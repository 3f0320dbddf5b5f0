"""PPO checkpoints: the same layout as the GRPO path, plus what PPO needs to resume exactly.

Every checkpoint folder is loadable with ``AutoModelForCausalLM.from_pretrained`` (policy weights,
tokenizer, ``run_config.json``); with LoRA it holds the merged weights and ``adapter/`` (the adapters
alone, which ``--resume`` continues from). ``value_head.safetensors`` holds the value function's
trainable tensors (the head, plus the backbone with ``--value_model separate``). Step checkpoints add
``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` (one entry per process) and ``trainer_state.json``
(step, KL coefficient), so a resumed run samples the same rollouts as an uninterrupted one.
Folders are written under a hidden temporary name and renamed into place when complete.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rl4rec.errors import ConfigError
from rl4rec.io import atomic_directory
from rl4rec.run_layout import RUN_CONFIG
from rl4rec.training.ppo.value import PolicyAndValue

TRAINER_STATE = "trainer_state.json"
VALUE_FILE = "value_head.safetensors"
ADAPTER_DIR = "adapter"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng_state.pth"


def is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_files(folder: Path, model: PolicyAndValue, tokenizer: Any, run_config_json: str) -> None:
    """Policy (``from_pretrained``-loadable), tokenizer, value function and run config into ``folder``."""
    policy = model.policy
    if is_peft(policy):
        policy.save_pretrained(folder / ADAPTER_DIR)
        merged = copy.deepcopy(policy).merge_and_unload()
        merged.save_pretrained(folder)
        del merged
    else:
        policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_file(model.value_state_dict(), str(folder / VALUE_FILE))
    (folder / RUN_CONFIG).write_text(run_config_json, encoding="utf-8")


def save_checkpoint(
    path: Path,
    model: PolicyAndValue,
    tokenizer: Any,
    run_config_json: str,
    trainer_state: dict[str, Any],
    optimizer: Any = None,
    scheduler: Any = None,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically (call on the main process only)."""
    with atomic_directory(path) as tmp:
        save_model_files(tmp, model, tokenizer, run_config_json)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if rng_states is not None:
            torch.save(rng_states, tmp / RNG_FILE)
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1), encoding="utf-8")
    return path


def load_trainer_state(path: Path) -> dict[str, Any]:
    state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    if state.get("algorithm") != "ppo":
        raise ConfigError(
            f"{path} was written by {state.get('algorithm', 'another trainer')!r}, not PPO: resume it with the "
            "same --algorithm, or use a fresh --checkpoint_dir."
        )
    return state


def load_policy_weights(path: Path, policy: Any) -> Any:
    """Policy of a step checkpoint: adapters onto ``policy`` (LoRA) or the full weights (returned)."""
    if is_peft(policy):
        from peft import set_peft_model_state_dict

        adapter = path / ADAPTER_DIR / "adapter_model.safetensors"
        if not adapter.is_file():
            raise ConfigError(
                f"{path}: no {ADAPTER_DIR}/ (LoRA adapters); was it written without --use_peft?"
            )
        set_peft_model_state_dict(policy, load_file(str(adapter)))
        return policy
    from transformers import AutoModelForCausalLM

    if (path / ADAPTER_DIR).is_dir():
        raise ConfigError(f"{path} was trained with --use_peft; add --use_peft to resume it.")
    return AutoModelForCausalLM.from_pretrained(path, dtype=next(policy.parameters()).dtype)


def load_value(path: Path, model: PolicyAndValue) -> None:
    try:
        model.load_value_state_dict(load_file(str(path / VALUE_FILE)))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot restore the value function ({exc}).") from None


def load_optimizer(path: Path, optimizer: Any) -> None:
    """Optimizer state of a step checkpoint; checkpoints from before the value function had its own
    learning rate hold one parameter group and cannot be continued."""
    state = torch.load(path / OPTIMIZER_FILE, map_location="cpu")
    if len(state["param_groups"]) != len(optimizer.param_groups):
        raise ConfigError(
            f"{path}: its optimizer state has {len(state['param_groups'])} parameter group(s), "
            f"this run has {len(optimizer.param_groups)} (policy and value function). The checkpoint "
            "comes from an older rl4rec; start a new run, or load its weights with --model_name."
        )
    optimizer.load_state_dict(state)


def load_rng(path: Path, rank: int) -> dict[str, Any] | None:
    file = path / RNG_FILE
    if not file.is_file():
        return None
    states = torch.load(file, weights_only=False)
    return states[rank] if rank < len(states) else states[0]
