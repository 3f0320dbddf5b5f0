"""LLM methods (``zero-shot``, ``policy``): load the policy, rebuild its training prompts, generate.

This module loads the query writer (prompt builder and generator) and knows nothing of methods:
:func:`rl4rec.evaluation.methods.make_method` wraps it in a ``GeneratedQuery`` (one import direction).

A trained policy is evaluated with the prompt settings it was trained with (read from the
checkpoint's ``run_config.json``), so a change in prompt budget or order cannot masquerade as a
training effect. Flags given on the command line still win and are recorded in the protocol.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rl4rec.data.dataset import RecDataset
from rl4rec.data.prompts import OLDEST_FIRST, PromptBuilder, prompt_config_from_flags
from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.config import EvalConfig
from rl4rec.run_layout import RUN_CONFIG

logger = logging.getLogger(__name__)

#: Prompt defaults for models without a run config (the demo's and RESULTS.md's training settings).
PROMPT_DEFAULTS = {"max_length": 256, "max_history_items": 10, "prompt_order": OLDEST_FIRST}
#: Candidate-aware prompt settings; in a run's identity only when candidates are on (older runs still resume).
CANDIDATE_DEFAULTS = {
    "candidates": 0,
    "candidate_fusion": None,
    "candidate_order": "ranked",
    "task": "describe",
}


def checkpoint_run_config(model: str) -> dict[str, Any]:
    """The training run config saved beside a checkpoint, or ``{}`` for a plain model."""
    path = Path(model) / RUN_CONFIG
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); the checkpoint is damaged."
        ) from None


def prompt_settings(config: EvalConfig, model: str) -> dict[str, Any]:
    """Resolved prompt settings: command line, else the checkpoint's training config, else defaults."""
    trained = checkpoint_run_config(model) if model else {}
    out = {}
    for key, default in {**PROMPT_DEFAULTS, **CANDIDATE_DEFAULTS}.items():
        given = getattr(config, key, None)  # (no --task flag: the method decides, below)
        out[key] = given if given is not None else trained.get(key, default)
    if config.method == "chooser":  # the chooser reads letters, whatever the checkpoint was trained to write
        out["task"] = "choose"
    if not out["candidates"]:
        if out["task"] == "choose":
            raise ConfigError(
                "--method chooser needs candidates to choose among: --candidates K (or a checkpoint trained with "
                "`rl4rec sft --task choose --candidates K`)."
            )
        for key in CANDIDATE_DEFAULTS:
            del out[key]
    elif out["task"] == "describe":
        del out["task"]  # as before the flag: identities of earlier runs still match
    elif out["candidate_fusion"] is not None:
        out["candidate_fusion"] = str(Path(out["candidate_fusion"]).resolve())
    return out


def load_chooser(
    config: EvalConfig, dataset: RecDataset, model_name: str, settings: dict[str, Any]
) -> tuple[PromptBuilder, Any, Any]:
    """The prompt builder, the model (on ``config.device``, in ``config.dtype``) and its tokenizer of an LLM
    method, for the resolved ``model_name`` and prompt ``settings`` (:mod:`rl4rec.evaluation.resolved`)."""
    import torch

    from rl4rec.devices import resolve_device
    from rl4rec.policy.loading import load_policy

    dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
    model, tokenizer = load_policy(model_name, device=resolve_device(config.device), dtype=dtype)
    return PromptBuilder(dataset, tokenizer, prompt_config_from_flags(settings)), model, tokenizer


def load_query_writer(
    config: EvalConfig, dataset: RecDataset, model_name: str, settings: dict[str, Any]
) -> tuple[PromptBuilder, Any]:
    """The prompt builder and the generator of a query-writing method (the model loaded as :func:`load_chooser`)."""
    from rl4rec.policy.generation import GenerationSettings, make_generator
    from rl4rec.policy.loading import resolve_model_path

    builder, model, tokenizer = load_chooser(config, dataset, model_name, settings)
    generation = GenerationSettings(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        batch_size=config.batch_size * config.num_queries,  # a user's samples share one batch (one prefill)
        seed=config.seed,
        backend=config.backend,
    )
    generator = make_generator(model, tokenizer, generation, model_path=resolve_model_path(model_name))
    logger.info(
        "evaluate: %s with %s on %s (%s)", config.method, model_name, config.device, type(generator).__name__
    )
    return builder, generator
