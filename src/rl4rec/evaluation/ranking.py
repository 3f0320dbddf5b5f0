"""The evaluation method interface: a method turns a chunk of examples into ranks of their targets.

Score methods produce a ``[batch, n_items]`` matrix ranked by :func:`rl4rec.metrics.compute_ranks`; text
methods write one query per example and rank it with the retrieval service (fused with the history when
configured), exactly as the training reward does. Concrete methods live in :mod:`.methods`,
:mod:`.sasrec` and :mod:`.policy_queries`; they all import this module, never each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from rl4rec.data.splits import Example
from rl4rec.errors import DataError
from rl4rec.metrics import compute_ranks
from rl4rec.retrieval.fusion import FusionConfig
from rl4rec.retrieval.service import Ranker

#: A user's query: one text, or several sampled texts ranked as one (``rl4rec evaluate --num_queries``).
Query = str | list[str]
Ranked = tuple[list[int], list[Query | None]]


def query_scores(
    service: Ranker,
    dataset_name: str,
    queries: Sequence[Query],
    histories: Sequence[Sequence[int]] | None = None,
    fusion: FusionConfig | None = None,
) -> torch.Tensor:
    """Scores ``[B, n_items]`` of each user's query; a list of texts scores as the mean of its texts' scores.

    Why the mean of scores and not one embedding of the joined texts: each sampled query votes with its own
    ranking, so one query that names the right title is not blurred into the others' words. The fused score
    is linear in the text's similarity, so the mean of the fused scores is the history part once plus
    ``w_text`` times the mean similarity: merging never counts the history twice.
    """
    flat: list[str] = []
    owner: list[int] = []
    for i, query in enumerate(queries):
        texts = [query] if isinstance(query, str) else list(query)
        if not texts:
            raise DataError(f"query {i} is an empty list of texts; each user needs at least one query text.")
        flat += texts
        owner += [i] * len(texts)
    rows = None if histories is None else [list(histories[i]) for i in owner]
    scores = torch.from_numpy(service.get_scores(flat, dataset_name, rows, fusion)).double()
    index = torch.tensor(owner, dtype=torch.long)
    total = torch.zeros(len(queries), scores.shape[1], dtype=torch.float64).index_add_(0, index, scores)
    counts = torch.bincount(index, minlength=len(queries)).to(torch.float64)
    return total / counts.unsqueeze(1)


def is_merged(queries: Sequence[Any]) -> bool:
    """True when any user's query is several texts (``--num_queries`` > 1)."""
    return any(not isinstance(q, str) for q in queries)


def rank_queries(
    service: Ranker,
    dataset_name: str,
    queries: Sequence[Query],
    examples: Sequence[Example],
    fusion: FusionConfig | None = None,
) -> list[int]:
    """1-based rank of each example's target under its query: one text through the service's own ranking,
    several texts by their mean score (:func:`query_scores`); history masked, pessimistic ties either way."""
    targets = [e.target for e in examples]
    rows = histories(examples)
    if is_merged(queries):
        scores = query_scores(service, dataset_name, queries, rows, fusion)
        ranks = compute_ranks(scores, torch.tensor(targets, dtype=torch.long), rows).tolist()
    else:
        ranks = service.rank(cast(list[str], queries), dataset_name, targets, rows, fusion)
    return [int(r) for r in ranks]


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
    """Writes one query per example and ranks it with the retrieval service (fused when configured).

    A query of several texts (``--num_queries``) is ranked by the mean of its texts' scores (:func:`query_scores`).
    """

    #: History-aware scoring (:mod:`rl4rec.retrieval.fusion`), set by :func:`make_method` from --fusion.
    fusion: FusionConfig | None = None

    def __init__(self, service: Ranker, dataset_name: str) -> None:
        self.service = service
        self.dataset_name = dataset_name

    def queries(self, examples: Sequence[Example]) -> Sequence[Query]:
        raise NotImplementedError

    def rank(self, examples: Sequence[Example]) -> Ranked:
        texts = self.queries(examples)
        return rank_queries(self.service, self.dataset_name, texts, examples, self.fusion), list(texts)
