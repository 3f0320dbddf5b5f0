"""What is evaluated: the no-LLM baselines and the LLM query writers, behind one interface.

Every method turns a chunk of examples into 1-based ranks of their targets over the full catalogue,
history masked, ties pessimistic (:func:`rl4rec.metrics.compute_ranks`). Text methods
(``last-item``, ``zero-shot``, ``policy``) go through the same :class:`RetrievalService` ranking as
the training reward, so an evaluation number and a training reward mean the same thing.

Baselines, and why each is here:
- ``random``: the floor (expected NDCG@10 ~ 0 on thousands of items).
- ``popularity``: item counts over training interactions only (each user's items before the
  validation target), the classic non-personalised baseline.
- ``last-item``: the last history item's text as the query. An LLM query writer is only worth its
  cost if it beats this.
- ``history-mean``: the mean item embedding of the last n history items, a query that needs no text.
- ``sasrec``: a trained sequential recommender (full-softmax SASRec, :mod:`rl4rec.evaluation.sasrec`),
  the bar an LLM recommender has to clear on ID data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl4rec.data.dataset import RecDataset
from rl4rec.data.splits import Example, training_interactions
from rl4rec.errors import DataError
from rl4rec.evaluation.ranking import Method, Query, ScoreMethod, TextMethod
from rl4rec.evaluation.resolved import ResolvedEval
from rl4rec.io import atomic_write_json, cache_dir
from rl4rec.retrieval.fusion import DEFAULT_HISTORY_FUSION, FusionConfig
from rl4rec.retrieval.recall import build_prompts

logger = logging.getLogger(__name__)


class RandomScores(ScoreMethod):
    """Uniform scores from a generator seeded by (seed, user): the same per user on every run and resume."""

    name = "random"

    def __init__(self, n_items: int, seed: int) -> None:
        super().__init__(n_items)
        self.seed = seed

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        rows = [np.random.default_rng([self.seed, e.user_id]).random(self.n_items) for e in examples]
        return torch.from_numpy(np.stack(rows).astype(np.float32))


class PopularityScores(ScoreMethod):
    name = "popularity"

    def __init__(self, dataset: RecDataset) -> None:
        super().__init__(dataset.n_items)
        counts = training_interactions(dataset.sequences)
        self.counts = torch.zeros(self.n_items, dtype=torch.float32)
        for item, count in counts.items():
            self.counts[item - 1] = float(count)

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(examples), -1)


class HistoryMeanScores(ScoreMethod):
    name = "history-mean"

    def __init__(self, item_embeddings: torch.Tensor, history_n: int) -> None:
        super().__init__(int(item_embeddings.shape[0]))
        self.items = item_embeddings.float().cpu()
        self.history_n = history_n

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        queries = torch.stack(
            [self.items[torch.tensor(e.history[-self.history_n :]) - 1].mean(dim=0) for e in examples]
        )
        return queries @ self.items.T


class HistoryFusion(TextMethod):
    """No text: recency-weighted similarity to the history plus item co-occurrence (fusion with w_text 0).

    The strongest training-free baseline an LLM query writer has to add to; it runs through the same
    service scoring as the fused reward, with an empty query.
    """

    name = "history-fusion"

    def __init__(self, service: Any, dataset_name: str, fusion: FusionConfig) -> None:
        super().__init__(service, dataset_name)
        self.fusion = dataclasses.replace(fusion, w_text=0.0)

    def queries(self, examples: Sequence[Example]) -> list[str]:
        return [""] * len(examples)


class LastItemQuery(TextMethod):
    name = "last-item"

    def __init__(self, service: Any, dataset: RecDataset) -> None:
        super().__init__(service, dataset.name)
        self.dataset = dataset

    def queries(self, examples: Sequence[Example]) -> list[str]:
        return [self.dataset.item_text(e.history[-1]) for e in examples]


class GeneratedQuery(TextMethod):
    """An LLM writes the query from the same prompt the policy is trained on (greedy by default).

    With ``num_queries`` N > 1 it samples N texts per user (each prompt repeated N times in one batch, so its
    prefix is computed once) and the user is ranked by their mean score (:func:`.ranking.query_scores`).
    """

    def __init__(self, service: Any, dataset_name: str, builder: Any, generator: Any, name: str,
                 prompt_settings: dict[str, Any] | None = None, seed: int = 0, num_queries: int = 1) -> None:  # fmt: skip
        super().__init__(service, dataset_name)
        self.builder, self.generator, self.name = builder, generator, name
        self.prompt_settings, self.seed, self.num_queries = prompt_settings or {}, seed, num_queries

    def queries(self, examples: Sequence[Example]) -> Sequence[Query]:
        prompts, _ = build_prompts(self.builder, examples, self.prompt_settings, self.service, self.dataset_name,
                                   self.seed)  # fmt: skip
        n = self.num_queries
        if n == 1:
            return self.generator.generate(prompts)
        texts = self.generator.generate([p for p in prompts for _ in range(n)])
        return [list(texts[i * n : (i + 1) * n]) for i in range(len(prompts))]


class FirstCandidate(TextMethod):
    """The recall stage's first candidate's text as the query: "always choose candidate 1".

    With a fusion whose history part is the recall stage's, it lifts candidate 1 (the recall stage's own
    top item, so at most a reshuffle below it): the floor a candidate-aware policy has to beat.
    """

    name = "first-candidate"

    def __init__(self, service: Any, dataset: RecDataset, stage: Any) -> None:
        super().__init__(service, dataset.name)
        self.dataset, self.stage = dataset, stage

    def queries(self, examples: Sequence[Example]) -> list[str]:
        return [self.dataset.item_text(c[0]) for c in self.stage.candidates(examples)]


class ChooserScores(ScoreMethod):
    """A discriminative re-ranker made from the policy: it reads the candidate prompt (``--task choose``) and
    one forward pass scores every candidate's letter; the recall stage's top K are re-ordered by those scores
    (:func:`rl4rec.retrieval.rerank.rerank_scores`), everything below them keeps its recall score.

    It shows what the model adds as a chooser before generation and RL enter: zero-shot with the base
    policy, or after ``rl4rec sft --task choose`` (cross-entropy on the target's letter).
    """

    name = "chooser"

    def __init__(self, service: Any, dataset: RecDataset, builder: Any, model: Any, tokenizer: Any,
                 settings: dict[str, Any], seed: int, recall_prior: float, batch_size: int) -> None:  # fmt: skip
        super().__init__(dataset.n_items)
        self.service, self.dataset, self.builder = service, dataset, builder
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.seed, self.recall_prior, self.batch_size = seed, recall_prior, batch_size
        self.k = int(settings["candidates"])
        self.cache: Path | None = None  # set by make_method: letter scores kept per user, see _logprobs

    def _logprobs(self, examples: Sequence[Example], prompts: list[Any], score: Any) -> np.ndarray:
        """The letter scores, from ``self.cache`` where this model already scored these prompts.

        Choosing ``--recall_prior`` on validation re-ranks the same users under several priors; the forward
        passes (the whole cost) are then paid once. The cache is keyed by the model's files and the prompt
        settings (:func:`chooser_cache`), and per example by user and history length.
        """
        from rl4rec.retrieval.recall import example_key

        stored = (
            json.loads(self.cache.read_text(encoding="utf-8")) if self.cache and self.cache.is_file() else {}
        )
        keys = [example_key(e) for e in examples]
        todo = [i for i, key in enumerate(keys) if key not in stored]
        if todo:
            fresh = score(self.model, self.tokenizer, [prompts[i] for i in todo], self.k, self.batch_size)
            for i, row in zip(todo, fresh, strict=True):
                stored[keys[i]] = [float(x) for x in row]
            if self.cache is not None:
                atomic_write_json(self.cache, stored, indent=None)
        return np.asarray([stored[key] for key in keys], dtype=np.float64)

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        from rl4rec.policy.choice import choice_logprobs
        from rl4rec.retrieval.rerank import rerank_examples

        scores, self.last_logprobs, self.last_scored = rerank_examples(
            self.service, self.dataset.name, self.builder, self.settings, self.seed, examples,
            lambda part, prompts: self._logprobs(part, prompts, choice_logprobs), self.recall_prior,
        )  # fmt: skip
        return scores


class StoredQuery(TextMethod):
    """Ranks the texts another run wrote for the same users (``--queries_from``; same split and dataset).

    Generating a query costs a CPU second per user, ranking it a millisecond: re-ranking a run's own texts
    under another scoring (``--fusion``) reuses them, which also makes the fused and the text-only rows
    compare *the same texts* user by user.
    """

    def __init__(
        self, service: Any, dataset_name: str, texts: dict[int, Query], source: str, name: str
    ) -> None:
        super().__init__(service, dataset_name)
        self.texts, self.source, self.name = texts, source, name

    def queries(self, examples: Sequence[Example]) -> list[Query]:
        missing = [e.user_id for e in examples if e.user_id not in self.texts]
        if missing:
            raise DataError(
                f"{self.source} has no query for {len(missing)} of these users (e.g. user {missing[0]}): "
                "use the same --num_users and --seed as that run, or let it finish first."
            )
        return [self.texts[e.user_id] for e in examples]


def chooser_cache(
    model: str, dataset: str, split: str, prompt: dict[str, Any], seed: int, dtype: str
) -> Path:
    """Where a chooser's letter scores are kept: one file per model (its files' sizes and times), dataset, split,
    prompt settings, seed (shuffled orders) and dtype."""
    files = sorted(Path(model).glob("*.safetensors")) if Path(model).is_dir() else []
    ident = json.dumps({"model": str(Path(model).resolve()) if Path(model).exists() else model,
                        "files": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files],
                        "dataset": dataset, "split": split, "prompt": prompt, "seed": seed, "dtype": dtype},
                       sort_keys=True)  # fmt: skip
    return cache_dir() / "chooser" / f"{hashlib.sha1(ident.encode()).hexdigest()[:16]}.json"


def make_method(resolved: ResolvedEval, dataset: RecDataset, service: Any) -> Method:
    """The method ``resolved.config.method`` names, from the settings resolved once (LLM methods load their
    policy here)."""
    method = _make_method(resolved, dataset, service)
    if isinstance(method, TextMethod):
        method.fusion = resolved.fusion
    return method


def _make_method(resolved: ResolvedEval, dataset: RecDataset, service: Any) -> Method:
    config = resolved.config
    if config.method == "random":
        return RandomScores(dataset.n_items, config.seed)
    if config.method == "popularity":
        return PopularityScores(dataset)
    if config.method == "history-mean":
        return HistoryMeanScores(service.item_embeddings(dataset.name), config.history_n)
    if config.method == "last-item":
        return LastItemQuery(service, dataset)
    if config.method == "history-fusion":
        return HistoryFusion(service, dataset.name, DEFAULT_HISTORY_FUSION)
    if config.method == "first-candidate":
        from rl4rec.retrieval.recall import RecallStage

        return FirstCandidate(service, dataset, RecallStage(service, dataset.name, config.candidate_fusion,
                                                             int(config.candidates or 0)))  # fmt: skip
    if resolved.queries is not None:
        return StoredQuery(service, dataset.name, resolved.queries, str(config.queries_from), config.method)
    if config.method == "sasrec":
        from rl4rec.evaluation.sasrec import sasrec_method

        return sasrec_method(config, dataset)
    from rl4rec.evaluation.policy_queries import load_query_writer

    assert resolved.model is not None and resolved.prompt is not None
    if config.method == "chooser":
        from rl4rec.evaluation.policy_queries import load_chooser

        builder, model, tokenizer = load_chooser(config, dataset, resolved.model, resolved.prompt)
        method = ChooserScores(service, dataset, builder, model, tokenizer, resolved.prompt, config.seed,
                               config.recall_prior, config.batch_size)  # fmt: skip
        method.cache = chooser_cache(resolved.model, dataset.name, config.split, resolved.prompt, config.seed,
                                     config.dtype)  # fmt: skip
        return method
    builder, generator = load_query_writer(config, dataset, resolved.model, resolved.prompt)
    return GeneratedQuery(
        service,
        dataset.name,
        builder,
        generator,
        config.method,
        resolved.prompt,
        config.seed,
        config.num_queries,
    )
