"""The evaluation method interface: a method turns a chunk of examples into ranks of their targets.

Score methods produce a ``[batch, n_items]`` matrix ranked by :func:`rl4rec.metrics.compute_ranks`; text
methods write one query per example and rank it with the retrieval service (fused with the history when
configured), exactly as the training reward does. Concrete methods live in :mod:`.methods`,
:mod:`.sasrec` and :mod:`.policy_queries`; they all import this module, never each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rl4rec.data.splits import Example
from rl4rec.metrics import compute_ranks
from rl4rec.retrieval.fusion import FusionConfig
from rl4rec.retrieval.service import Ranker

Ranked = tuple[list[int], list[str | None]]


def histories(examples: Sequence[Example]) -> list[list[int]]:
    return [list(e.history) for e in examples]


class Method:
    """Ranks a chunk of examples; ``queries`` are the texts used (None for score-only methods)."""

    name = "method"

    def rank(self, examples: Sequence[Example]) -> Ranked:
        raise NotImplementedError


class ScoreMethod(Method):
    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        raise NotImplementedError

    def rank(self, examples: Sequence[Example]) -> Ranked:
        scores = self.scores(examples)
        targets = torch.tensor([e.target for e in examples], dtype=torch.long)
        ranks = compute_ranks(scores, targets, histories(examples))
        return [int(r) for r in ranks.tolist()], [None] * len(examples)


class TextMethod(Method):
    """Writes one query text per example and ranks it with the retrieval service (fused when configured)."""

    #: History-aware scoring (:mod:`rl4rec.retrieval.fusion`), set by :func:`make_method` from --fusion.
    fusion: FusionConfig | None = None

    def __init__(self, service: Ranker, dataset_name: str) -> None:
        self.service = service
        self.dataset_name = dataset_name

    def queries(self, examples: Sequence[Example]) -> list[str]:
        raise NotImplementedError

    def rank(self, examples: Sequence[Example]) -> Ranked:
        texts = self.queries(examples)
        ranks = self.service.rank(
            texts, self.dataset_name, [e.target for e in examples], histories(examples), self.fusion
        )
        return [int(r) for r in ranks], list(texts)
