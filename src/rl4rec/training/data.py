"""The training dataset TRL reads: one row per (user, target) with the prompt and reward columns.

Columns: ``prompt`` (chat messages, or text for tokenizers without a chat template), ``target_item``
and ``history_items`` (passed by TRL to the reward function as keyword lists), ``user_id``; with
``--next_items K`` also ``next_items`` (the K items the reward scores, ``target_item`` first).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rl4rec.data.dataset import RecDataset, load_dataset
from rl4rec.data.prompts import PromptBuilder, prompt_config_from_flags
from rl4rec.data.splits import Example, leave_one_out, sample_users
from rl4rec.errors import ConfigError, DataError
from rl4rec.rewards.boundary import NEXT_ITEMS_COLUMN
from rl4rec.training.config import TrainConfig

logger = logging.getLogger(__name__)


def read_preference_file(path: str | Path) -> dict[int, str]:
    """Read a ``{user_id: text}`` user-preference file (the seed's ``*_user_preference.json``)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: preference file not found. Write one with `rl4rec prompts preference`."
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object {{user_id: text}}.")
    out: dict[int, str] = {}
    for key, value in raw.items():
        try:
            user = int(key)
        except ValueError:
            raise DataError(f"{path}: user id {key!r} is not an integer.") from None
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}: the preference text of user {key} is empty or not a string.")
        out[user] = value
    return out


def build_rows(
    dataset: RecDataset,
    examples: list[Example],
    builder: PromptBuilder,
    preferences: dict[int, str] | None = None,
    prompts: list[Any] | None = None,
    candidates: list[list[int]] | None = None,
) -> list[dict[str, Any]]:
    """One row per example; ``prompts`` (already built, e.g. with candidates) or built here from the history."""
    rows = []
    missing = 0
    for i, ex in enumerate(examples):
        if preferences is not None:
            text = preferences.get(ex.user_id)
            if text is None:
                missing += 1
                continue
            prompt = builder.build_from_preference(text)
        else:
            prompt = prompts[i] if prompts is not None else builder.build(ex.history)
        row = {
            "prompt": prompt,
            "target_item": ex.target,
            "history_items": list(ex.history),
            "user_id": ex.user_id,
        }
        if candidates is not None:
            row["candidates"] = candidates[i]
        if ex.next_items:
            row[NEXT_ITEMS_COLUMN] = list(ex.next_items)
        rows.append(row)
    if preferences is not None:
        if missing:
            logger.warning("%d users have no entry in the preference file and are skipped", missing)
        if not rows:
            raise DataError(
                "no user of the split appears in the preference file: check --prompt_file and --dataset_name."
            )
    return rows


def warn_own_transitions(config: Any) -> bool:
    """One warning where ``--train_targets all`` meets a co-occurrence signal (the recall stage of
    ``--candidates``, or a ``--fusion`` reward, with ``w_co`` > 0); True when it warned.

    Training examples count co-occurrence without each user's last three items (``co_holdout`` 3, see
    :func:`rl4rec.retrieval.fusion.for_split`), which covers the third-to-last target only: the examples that
    ``all`` adds at earlier positions still have their own transition into their target counted.
    """
    if getattr(config, "train_targets", "last") != "all":
        return False
    from rl4rec.retrieval.fusion import load_fusion
    from rl4rec.retrieval.recall import recall_fusion

    uses = []
    if getattr(config, "candidates", 0) and recall_fusion(getattr(config, "candidate_fusion", None)).w_co > 0:
        uses.append(f"the recall stage of --candidates {config.candidates}")
    reward_fusion = load_fusion(getattr(config, "fusion", None))
    if reward_fusion is not None and reward_fusion.w_co > 0:
        uses.append("the --fusion reward")
    if not uses:
        return False
    logger.warning(
        "--train_targets all with co-occurrence in %s: co-occurrence leaves out each user's last three items "
        "(co_holdout 3), so the extra examples at earlier positions still have their own transition into their "
        "target counted, and their scores lean toward the target. Use --train_targets last for leak-free features.",
        " and ".join(uses),
    )
    return True


def target_hits(examples: list[Example], lists: list[list[int]], k: int, misses: str) -> list[int]:
    """Indices of the examples whose target the recall stage put among its top ``k`` (all indices with
    ``misses == "keep"``). Skipping misses gives every training prompt an answer among its candidates: for SFT a
    completion to copy, for RL a group whose samples can lift the target to the top."""
    hits = [i for i, (ex, c) in enumerate(zip(examples, lists, strict=True)) if ex.target in c]
    logger.info("candidate-aware prompts: the target is among the top %d for %d of %d training examples (%s the others)",
                k, len(hits), len(examples), misses)  # fmt: skip
    if misses == "keep":
        return list(range(len(examples)))
    if not hits:
        raise ConfigError("no training example has its target among the candidates; raise --candidates.")
    return hits


def build_train_dataset(config: TrainConfig, tokenizer: Any) -> Any:
    """HF ``datasets.Dataset`` of the training split, prompts within the token budget."""
    from datasets import Dataset

    dataset = load_dataset(config.dataset_name, config.data_dir)
    split = leave_one_out(dataset.sequences, "train", config.train_targets, config.next_items)
    examples = sample_users(split.examples, config.train_users, config.seed)
    if not examples:
        raise ConfigError(
            f"no training examples in {config.dataset_name}: every user is too short for the train split."
        )
    builder = PromptBuilder(
        dataset,
        tokenizer,
        prompt_config_from_flags(config),
    )
    preferences = read_preference_file(config.prompt_file) if config.prompt_file else None
    warn_own_transitions(config)
    prompts = candidates = None
    if config.candidates:
        from rl4rec.retrieval.embedder import EmbedderConfig
        from rl4rec.retrieval.recall import build_prompts
        from rl4rec.retrieval.shared import local_service

        service = local_service(
            config.dataset_name, config.data_dir, EmbedderConfig(model_name=config.embedder)
        )
        prompts, candidates = build_prompts(
            builder, examples, config, service, config.dataset_name, config.seed, split="train"
        )
        kept = target_hits(examples, candidates, config.candidates, config.candidate_misses)
        examples = [examples[i] for i in kept]
        prompts = [prompts[i] for i in kept]
        candidates = [candidates[i] for i in kept]
    rows = build_rows(dataset, examples, builder, preferences, prompts, candidates)
    logger.info(
        "training data: %d examples from %d users (%d users skipped as too short)",
        len(rows), len({r["user_id"] for r in rows}), split.skipped_users,
    )  # fmt: skip
    return Dataset.from_list(rows)
