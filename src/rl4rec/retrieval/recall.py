"""The recall stage: the top-K items a history-fusion score proposes, for the policy to choose among.

A language model that guesses the next item from the history alone competes with a history signal it
cannot match (on Beauty, history-fusion's NDCG@10 0.0605 against the SFT policy's 0.030). Two-stage
recommenders put the model where it can add: a cheap recall stage proposes candidates, and the model's
text re-ranks them. Here the recall stage is :mod:`rl4rec.retrieval.fusion` with no text (history
similarity and co-occurrence; ``w_text`` forced to 0), scored by the same
:meth:`RetrievalService.get_scores` the reward and ``rl4rec evaluate`` use, with the user's history
masked; its top K items, best first (ties: lower item id first), are the candidates.

Candidates depend only on the history, the dataset and the fusion weights (co-occurrence counted on
training interactions, never on a validation or test target, and for training examples never on the
training target either: :func:`~rl4rec.retrieval.fusion.for_split`), so they are cached on disk per
dataset, item vectors, fusion (its ``co_holdout`` included) and K, keyed by user and history length. Recall@K
of the stage is history-fusion's Hit@K (``rl4rec evaluate --method history-fusion --fusion FILE --ks
10,20,50``) with two differences that only matter at the margin: the recall stage masks a target the user
already had in the history (evaluation keeps the target rankable), and it breaks score ties by item id
where evaluation counts them against the target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rl4rec.data.prompts import Prompt, PromptBuilder
from rl4rec.data.splits import Example
from rl4rec.errors import ConfigError
from rl4rec.io import atomic_write_json, cache_dir
from rl4rec.retrieval.fusion import DEFAULT_HISTORY_FUSION, FusionConfig, for_split, load_fusion
from rl4rec.retrieval.service import Ranker

logger = logging.getLogger(__name__)
ORDERS = ("ranked", "shuffled")
#: Users scored per ``get_scores`` call (bounds the [chunk, n_items] score matrix).
CHUNK = 256


def recall_fusion(value: FusionConfig | str | Path | None) -> FusionConfig:
    """The recall stage's weights: a fusion file's history part, or history-fusion's built-in weights."""
    fusion = load_fusion(value) or DEFAULT_HISTORY_FUSION
    return dataclasses.replace(fusion, w_text=0.0)


def example_key(example: Example) -> str:
    return f"{example.user_id}:{len(example.history)}"


class RecallStage:
    """Top-``k`` candidates per example (history masked), cached on disk.

    ``fusion`` is used as given (``w_text`` forced to 0): for training examples pass ``for_split(fusion,
    "train")``, as :func:`build_prompts` does, so their own transitions into their targets are not counted.
    """

    def __init__(self, service: Ranker, dataset_name: str, fusion: FusionConfig | str | Path | None, k: int,
                 cache: Path | None = None) -> None:  # fmt: skip
        if k < 1:
            raise ConfigError(f"--candidates must be >= 1 (0 = no candidates), got {k}.")
        self.service, self.dataset_name, self.k = service, dataset_name, k
        self.fusion = recall_fusion(fusion)
        items = service.item_embeddings(dataset_name)
        self.n_items = int(items.shape[0])
        if k >= self.n_items:
            raise ConfigError(f"--candidates {k} must be smaller than the catalogue ({self.n_items} items).")
        # the history term scores items by their vectors: another embedder or item text gives other candidates
        vectors = hashlib.sha1(items.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        ident = json.dumps({"dataset": dataset_name, "n_items": self.n_items, "fusion": self.fusion.to_dict(),
                            "k": k, "data": service.dataset_fingerprint(dataset_name), "items": vectors},
                           sort_keys=True)  # fmt: skip
        digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
        self.path = (
            cache if cache is not None else cache_dir() / "recall" / f"{dataset_name}-k{k}-{digest}.json"
        )
        self._table: dict[str, list[int]] | None = None

    def _load(self) -> dict[str, list[int]]:
        if self._table is None:
            self._table = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        return self._table

    def candidates(self, examples: Sequence[Example]) -> list[list[int]]:
        """Each example's top-k item ids, best first; computed for the examples not cached yet."""
        table = self._load()
        todo = [e for e in examples if example_key(e) not in table]
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            for example, items in zip(part, self.top_k([list(e.history) for e in part]), strict=True):
                table[example_key(example)] = items
        if todo:
            atomic_write_json(self.path, table)
            logger.info(
                "recall stage: %d new candidate lists (top %d) cached in %s", len(todo), self.k, self.path
            )
        return [list(table[example_key(e)]) for e in examples]

    def top_k(self, histories: list[list[int]]) -> list[list[int]]:
        scores = torch.from_numpy(
            self.service.get_scores([""] * len(histories), self.dataset_name, histories, self.fusion)
        )
        for row, history in enumerate(histories):  # history masked, as in every ranking here
            scores[row, torch.tensor(sorted(set(history)), dtype=torch.long) - 1] = float("-inf")
        # ties: lower item id first (a stable descending sort on the score)
        top = torch.sort(scores, dim=1, descending=True, stable=True)
        # a history covering nearly the whole catalogue leaves fewer than k items: never propose a masked one
        return [
            [int(i) + 1 for i, v in zip(items, values, strict=True) if v != float("-inf")]
            for items, values in zip(top.indices[:, : self.k], top.values[:, : self.k], strict=True)
        ]


def arrange(candidates: list[int], order: str, seed: int, key: str) -> list[int]:
    """Candidates in prompt order: as ranked, or shuffled by a generator seeded per example (position bias is real)."""
    if order not in ORDERS:
        raise ConfigError(f"--candidate_order must be one of {', '.join(ORDERS)}, got {order!r}.")
    if order == "ranked":
        return list(candidates)
    out = list(candidates)
    random.Random(f"{seed}:{key}").shuffle(out)
    return out


def _get(flags: Any, name: str, default: Any = None) -> Any:
    if isinstance(flags, dict):
        return flags.get(name, default)
    return getattr(flags, name, default)


def build_prompts(builder: PromptBuilder, examples: Sequence[Example], flags: Any, service: Ranker | None,
                  dataset_name: str, seed: int = 0, *,
                  split: str = "valid") -> tuple[list[Prompt], list[list[int]] | None]:  # fmt: skip
    """The prompts of ``examples`` (and their candidate lists, in prompt order), as ``flags`` ask.

    ``flags`` holds the prompt flags (a config or a dict of resolved settings): with ``candidates`` K > 0
    each prompt lists the recall stage's top K; without, the candidates are None. Training, SFT,
    evaluation and held-out evaluation all build their prompts here, so they agree. ``split`` is the split
    of ``examples``: for "train" the recall stage counts co-occurrence without the training targets
    (:func:`~rl4rec.retrieval.fusion.for_split`); valid and test examples keep the default.
    """
    k = int(_get(flags, "candidates", 0) or 0)
    if not k:
        return [builder.build(e.history) for e in examples], None
    if service is None:
        raise ConfigError("--candidates needs the retrieval service (the recall stage scores the catalogue).")
    fusion = for_split(recall_fusion(_get(flags, "candidate_fusion")), split)
    stage = RecallStage(service, dataset_name, fusion, k)
    order = _get(flags, "candidate_order", "ranked") or "ranked"
    lists = [
        arrange(c, order, seed, example_key(e))
        for e, c in zip(examples, stage.candidates(examples), strict=True)
    ]
    return [builder.build(e.history, c) for e, c in zip(examples, lists, strict=True)], lists
