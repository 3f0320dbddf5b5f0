"""Leave-one-out splits, the standard protocol on P5-style data.

For a sequence ``i_1 .. i_n``: test target ``i_n``, validation target ``i_{n-1}``, training target
``i_{n-2}``; the history of a target is every item before it. ``train_targets="all"`` adds every
earlier position ``>= 2`` as extra training examples (data augmentation), so no training example
ever sees a validation or test item.

``next_items=K`` (training only) ends each training history ``K - 1`` items earlier and keeps the ``K``
items that follow it, the training target last, so a reward can score a query against several next
items instead of one (see :mod:`rl4rec.rewards.boundary`).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rl4rec.errors import ConfigError

logger = logging.getLogger(__name__)

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: How many items from the end each split's target sits.
_OFFSET = {"test": 1, "valid": 2, "train": 3}
#: Most next items a training example may score (``next_items``); co-occurrence holds out up to 2 + this many.
MAX_NEXT_ITEMS = 64


@dataclass(frozen=True)
class Example:
    """One prediction task: given ``history``, rank ``target`` against the catalogue."""

    user_id: int
    history: tuple[int, ...]
    target: int
    #: The items that follow ``history``, ``target`` first, when a reward scores several next items
    #: (``next_items`` > 1); empty otherwise.
    next_items: tuple[int, ...] = ()


@dataclass(frozen=True)
class SplitResult:
    examples: list[Example]
    skipped_users: int


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    return split  # type: ignore[return-value]


def leave_one_out(
    sequences: Mapping[int, Sequence[int]],
    split: str,
    train_targets: str = "last",
    next_items: int = 1,
) -> SplitResult:
    """Build the examples of one split; users too short for it are skipped and counted."""
    check_split(split)
    if train_targets not in ("last", "all"):
        raise ConfigError(f"unknown train_targets {train_targets!r}: choose 'last' or 'all'.")
    if not 1 <= next_items <= MAX_NEXT_ITEMS:
        raise ConfigError(f"next_items must be between 1 and {MAX_NEXT_ITEMS}, got {next_items}.")
    if next_items > 1 and split != "train":
        raise ConfigError(
            f"next_items {next_items} applies to the train split only: validation and test score one target."
        )
    offset = _OFFSET[split]
    examples: list[Example] = []
    skipped = 0
    for user, items in sequences.items():
        n = len(items)
        # With next_items K the history ends K - 1 items before the split's target, the K items after it
        # (ending at that target) are what the reward scores: no validation or test item is among them.
        target_index = n - offset - (next_items - 1)
        if target_index < 1:  # the target needs at least one history item
            skipped += 1
            continue
        first = 1 if split == "train" and train_targets == "all" else target_index
        for t in range(first, target_index + 1):
            following = tuple(items[t : t + next_items]) if next_items > 1 else ()
            examples.append(Example(user, tuple(items[:t]), items[t], following))
    if skipped:
        logger.info("split %s: skipped %d users with too few items", split, skipped)
    return SplitResult(examples=examples, skipped_users=skipped)


def training_interactions(sequences: Mapping[int, Sequence[int]]) -> Counter[int]:
    """Item counts over each user's items before the validation target (no leakage into valid/test)."""
    counts: Counter[int] = Counter()
    for items in sequences.values():
        counts.update(items[: max(len(items) - 2, 0)])
    return counts


def sample_users(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """Keep the examples of a seeded random sample of ``n`` users (all users if ``n`` is None).

    Sampling sorted user ids with one seed gives every method the same users, so evaluations can be
    compared pairwise.
    """
    if n is None:
        return examples
    users = sorted({e.user_id for e in examples})
    if n >= len(users):
        return examples
    chosen = set(random.Random(seed).sample(users, n))
    return [e for e in examples if e.user_id in chosen]
