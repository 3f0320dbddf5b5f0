"""Write the seed's user-preference files: one LLM-written summary of each user's taste.

``data_processed/{dataset}_{model short name}_{split}_user_preference.json`` = ``{user_id: text}``.
Generation is batched with a progress bar; the file is rewritten atomically after every batch, so
an interrupted run resumes where it stopped (users already in the file are skipped).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rl4rec.config_cli import opt
from rl4rec.data.dataset import load_dataset
from rl4rec.data.prompts import PromptBuilder, PromptConfig
from rl4rec.data.splits import leave_one_out
from rl4rec.errors import DataError
from rl4rec.io import atomic_write_json
from rl4rec.policy.generation import GenerationSettings, make_generator
from rl4rec.policy.loading import DEFAULT_POLICY, DEFAULT_POLICY_ALIASES, load_policy, resolve_model_path

logger = logging.getLogger(__name__)


@dataclass
class PreferenceConfig:
    """``rl4rec prompts preference``: each field is a flag (``--name``), with its help text."""

    dataset: str = opt("beauty")
    model: str = opt(DEFAULT_POLICY, f"HF id, local path, .gguf, or {DEFAULT_POLICY}")
    split: str = opt("test", choices=["train", "valid", "test"])
    data_dir: str = opt("data")
    output_dir: str = opt("data_processed")
    num_users: int | None = opt(None, "only the first N users of the split")
    batch_size: int = opt(8)
    max_new_tokens: int = opt(96)
    max_history_items: int = opt(10)
    device: str = opt("auto")
    backend: str = opt("auto", choices=["auto", "hf", "vllm"])
    seed: int = opt(0)


def model_short_name(model: str) -> str:
    if model in DEFAULT_POLICY_ALIASES:
        return "SmolLM2-135M-Instruct"
    return Path(model.rstrip("/")).name.removesuffix(".gguf")


def preference_path(config: PreferenceConfig) -> Path:
    return (
        Path(config.output_dir)
        / f"{config.dataset}_{model_short_name(config.model)}_{config.split}_user_preference.json"
    )


def _read_existing(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: existing preference file is not valid JSON ({exc.msg}); delete it to start over."
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: existing preference file is not a JSON object; delete it to start over.")
    return data


def write_preferences(config: PreferenceConfig) -> Path:
    from rl4rec.devices import resolve_device

    dataset = load_dataset(config.dataset, config.data_dir)
    examples = leave_one_out(dataset.sequences, config.split).examples
    if config.num_users is not None:
        examples = examples[: config.num_users]
    path = preference_path(config)
    done = _read_existing(path)
    todo = [e for e in examples if str(e.user_id) not in done]
    logger.info("%s: %d users done, %d to write", path, len(done), len(todo))
    if not todo:
        return path
    model, tokenizer = load_policy(config.model, device=resolve_device(config.device))
    builder = PromptBuilder(dataset, tokenizer, PromptConfig(max_items=config.max_history_items))
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        backend=config.backend,
    )
    generator = make_generator(model, tokenizer, settings, model_path=resolve_model_path(config.model))
    empty = 0
    with tqdm(total=len(todo), desc="preferences", unit="user") as bar:
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            texts = generator.generate([builder.build_summary_request(e.history) for e in batch])
            for example, text in zip(batch, texts, strict=True):
                if text.strip():
                    done[str(example.user_id)] = text.strip()
                else:
                    empty += 1
            atomic_write_json(path, done)
            bar.update(len(batch))
    if empty:
        logger.warning(
            "%d users got an empty summary and were left out; rerun the command to retry them", empty
        )
    return path
