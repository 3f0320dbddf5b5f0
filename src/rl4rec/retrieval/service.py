"""The retrieval service: generated texts in, scores / ranks / rewards out.

One class serves both deployments. In-process (the default on one machine) it is a plain object;
on a cluster the same class runs as a detached, named Ray actor (:mod:`rl4rec.retrieval.ray_service`),
and only the transport differs. Every public method validates its arguments here, at the boundary,
so a bad call fails with a message naming the argument and the service keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from rl4rec.data.dataset import load_dataset
from rl4rec.errors import ConfigError
from rl4rec.metrics import (
    CANDIDATE_REWARD_TYPES,
    DEFAULT_MIXED_WEIGHT,
    check_reward_args,
    compute_ranks,
    count_candidates,
    reward_from_ranks,
)
from rl4rec.retrieval.batching import MAX_BATCH_TEXTS, EncodeBatcher
from rl4rec.retrieval.embedder import Embedder, EmbedderConfig
from rl4rec.retrieval.fusion import FusionConfig, HistorySignals, load_fusion
from rl4rec.retrieval.item_index import ItemIndex

logger = logging.getLogger(__name__)

#: Generated texts longer than this are cut before embedding (the embedder truncates tokens anyway).
MAX_TEXT_CHARS = 20_000

_TIMING_KEYS = ("embed", "encode", "score", "rank", "calls", "texts", "encode_batches", "encoded_texts")


class Ranker(Protocol):
    """What evaluation, the recall stage and held-out curves need of a retrieval service (in-process or a proxy)."""

    def rank(self, generated_texts: Sequence[str], dataset_name: str, target_items: Sequence[int],
             history_items: Sequence[Sequence[int]] | None = None, fusion: Any = None) -> list[int]: ...  # fmt: skip

    def get_scores(self, generated_texts: Sequence[str], dataset_name: str = ...,
                   history_items: Sequence[Sequence[int]] | None = None, fusion: Any = None) -> np.ndarray: ...  # fmt: skip

    def item_embeddings(self, dataset_name: str) -> torch.Tensor: ...

    def dataset_fingerprint(self, dataset_name: str) -> str: ...


class RetrievalService:
    def __init__(
        self,
        datasets: Sequence[str] | str = ("beauty",),
        data_dir: str | Path | None = None,
        embedder: EmbedderConfig | dict[str, Any] | None = None,
        cache_root: str | Path | None = None,
        show_progress: bool = True,
        batch_requests: bool = True,
        max_batch_texts: int = MAX_BATCH_TEXTS,
    ) -> None:
        if isinstance(embedder, dict):
            embedder = EmbedderConfig(**embedder)
        self.embedder = Embedder(embedder)
        self.data_dir = data_dir
        self.cache_root = Path(cache_root) if cache_root else None
        self.show_progress = show_progress
        self._indexes: dict[str, ItemIndex] = {}
        self._sequences: dict[str, dict[int, list[int]]] = {}
        self._signals: dict[str, HistorySignals] = {}
        self._lock = threading.Lock()  # guards index loading; scoring is thread-safe
        self._timing_lock = threading.Lock()
        #: Concurrent calls share embedder batches (``batch_requests=False``: each call encodes alone).
        self.batcher = (
            EncodeBatcher(self.embedder.encode_queries, max_batch_texts) if batch_requests else None
        )
        self.timings: dict[str, float] = dict.fromkeys(_TIMING_KEYS, 0.0)
        for name in [datasets] if isinstance(datasets, str) else datasets:
            self.add_dataset(name)

    # -- management ------------------------------------------------------------------------------
    def add_dataset(self, name: str, data_dir: str | Path | None = None) -> int:
        """Load (or reload) a dataset's item index; returns its number of items."""
        dataset = load_dataset(name, data_dir if data_dir is not None else self.data_dir)
        index = ItemIndex.load_or_build(dataset, self.embedder, self.cache_root, self.show_progress)
        with self._lock:
            self._indexes[name] = index
            self._sequences[name] = dataset.sequences
            self._signals.pop(name, None)
        logger.info("retrieval service: %s loaded (%d items)", name, index.n_items)
        return index.n_items

    def datasets(self) -> list[str]:
        return sorted(self._indexes)

    def n_items(self, dataset_name: str) -> int:
        return self._index(dataset_name).n_items

    def ping(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "datasets": {n: i.n_items for n, i in self._indexes.items()},
            "embedder": asdict(self.embedder.config),
            "device": self.embedder.device,
            "pid": os.getpid(),
            "torch_threads": torch.get_num_threads(),
            "batch_requests": self.batcher is not None,
        }

    def get_timings(self) -> dict[str, float]:
        """Cumulative seconds since start (or :meth:`reset_timings`): ``embed`` (callers waiting for vectors,
        merged-batch queueing included), ``encode`` (the embedder running), ``score`` (the matrix product),
        ``rank`` (counting ranks), and counters ``calls``, ``texts``, ``encode_batches``, ``encoded_texts``."""
        with self._timing_lock:
            out = dict(self.timings)
        if self.batcher is not None:
            out.update(encode=self.batcher.seconds, encode_batches=self.batcher.batches)
            out["encoded_texts"] = self.batcher.texts
        return out

    def reset_timings(self) -> None:
        with self._timing_lock:
            self.timings = dict.fromkeys(_TIMING_KEYS, 0.0)
        if self.batcher is not None:
            with self.batcher._lock:
                self.batcher.seconds, self.batcher.batches, self.batcher.texts = 0.0, 0, 0

    def _add_timings(self, **values: float) -> None:
        with self._timing_lock:
            for key, value in values.items():
                self.timings[key] += value

    # -- validation ------------------------------------------------------------------------------
    def dataset_fingerprint(self, dataset_name: str) -> str:
        """A digest of the dataset's sequences (caches derived from them, e.g. recall candidates, key on it)."""
        self._index(dataset_name)
        digest = hashlib.sha1()
        for user, items in sorted(self._sequences[dataset_name].items()):
            digest.update(f"{user}:{','.join(map(str, items))};".encode())
        return digest.hexdigest()[:16]

    def item_embeddings(self, dataset_name: str) -> torch.Tensor:
        """``[n_items, dim]`` item vectors (row j = item j+1), e.g. for embedding-only baselines."""
        return self._index(dataset_name).embeddings

    def _index(self, dataset_name: str) -> ItemIndex:
        if not isinstance(dataset_name, str) or dataset_name not in self._indexes:
            raise ConfigError(
                f"unknown dataset_name {dataset_name!r}: this service has {self.datasets()}. Start it with that "
                f"dataset (`rl4rec serve --datasets {dataset_name}`) or call add_dataset()."
            )
        return self._indexes[dataset_name]

    @staticmethod
    def _texts(generated_texts: Any) -> list[str]:
        if isinstance(generated_texts, str):
            raise ConfigError(
                "generated_texts must be a list of strings, got a single string; wrap it in a list."
            )
        try:
            texts = list(generated_texts)
        except TypeError:
            raise ConfigError(
                f"generated_texts must be a list of strings, got {type(generated_texts).__name__}."
            ) from None
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"generated_texts[{i}] must be a string, got {type(t).__name__}.")
        return texts

    @staticmethod
    def _ids(values: Any, name: str, n_items: int, batch: int) -> list[int]:
        try:
            ids = [int(v) for v in values]
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name} must be a list of integer item ids.") from None
        if any(isinstance(v, float) and not float(v).is_integer() for v in values):
            raise ConfigError(f"{name} must hold integer item ids.")
        if len(ids) != batch:
            raise ConfigError(
                f"{name} has {len(ids)} entries but generated_texts has {batch}; they must match."
            )
        for i, v in enumerate(ids):
            if not 1 <= v <= n_items:
                raise ConfigError(f"{name}[{i}] = {v} is not an item id of this dataset (1..{n_items}).")
        return ids

    @staticmethod
    def _histories(values: Any, n_items: int, batch: int) -> list[list[int]]:
        if values is None:
            return [[] for _ in range(batch)]
        try:
            rows = list(values)
        except TypeError:
            raise ConfigError("history_items must be a list of lists of item ids (one per text).") from None
        if len(rows) != batch:
            raise ConfigError(
                f"history_items has {len(rows)} rows but generated_texts has {batch}; they must match."
            )
        out = []
        for i, row in enumerate(rows):
            try:
                ids = [int(v) for v in (row if row is not None else [])]
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"history_items[{i}] must be a list of integer item ids.") from None
            bad = [v for v in ids if not 0 <= v <= n_items]
            if bad:
                raise ConfigError(
                    f"history_items[{i}] holds {bad[0]}, not an item id of this dataset (1..{n_items})."
                )
            out.append(ids)
        return out

    # -- scoring ---------------------------------------------------------------------------------
    def _score_tensor(self, texts: list[str], index: ItemIndex) -> tuple[torch.Tensor, np.ndarray]:
        """Scores ``[B, n_items]`` and a mask of rows that carry no signal (empty or non-finite)."""
        t0 = time.perf_counter()
        empty = np.array([not t.strip() for t in texts], dtype=bool)
        live = [t[:MAX_TEXT_CHARS] for t, e in zip(texts, empty, strict=True) if not e]
        emb = torch.zeros(
            (len(texts), self.embedder.dim), dtype=torch.float32, device=index.embeddings.device
        )
        if live:
            encode = self.batcher.encode if self.batcher is not None else self.embedder.encode_queries
            emb[torch.from_numpy(~empty).to(emb.device)] = encode(live).to(emb.device)
        t1 = time.perf_counter()
        scores = index.scores(emb)
        bad = ~torch.isfinite(scores).all(dim=1)
        if bad.any():
            logger.warning(
                "retrieval service: %d query embeddings were not finite; treated as empty", int(bad.sum())
            )
            scores[bad] = 0.0
        dead = empty | bad.cpu().numpy()
        self._add_timings(embed=t1 - t0, score=time.perf_counter() - t1)
        if self.batcher is None:
            self._add_timings(encode=t1 - t0, encode_batches=1.0 if live else 0.0, encoded_texts=len(live))
        return scores, dead

    def history_signals(self, dataset_name: str) -> HistorySignals:
        """The dataset's fusion state (co-occurrence tables are built on first use, then kept)."""
        index = self._index(dataset_name)
        with self._lock:
            if dataset_name not in self._signals:
                self._signals[dataset_name] = HistorySignals(index.embeddings, self._sequences[dataset_name])
            return self._signals[dataset_name]

    def _fused(
        self,
        texts: list[str],
        dataset_name: str,
        histories: list[list[int]],
        fusion: FusionConfig | None,
    ) -> torch.Tensor:
        """Scores of each text (text-only, or fused with the history when ``fusion`` says so)."""
        index = self._index(dataset_name)
        if fusion is None or fusion.text_only:
            scores, _ = self._score_tensor(texts, index)
            return scores if fusion is None else scores * fusion.w_text
        text_scores = self._score_tensor(texts, index)[0] if fusion.uses_text else None
        t0 = time.perf_counter()
        scores = self.history_signals(dataset_name).fuse(text_scores, histories, fusion)
        self._add_timings(score=time.perf_counter() - t0)
        return scores

    def get_scores(
        self,
        generated_texts: Sequence[str],
        dataset_name: str = "beauty",
        history_items: Sequence[Sequence[int]] | None = None,
        fusion: FusionConfig | dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Score of every item for each text: ``[B, n_items]`` float32, column j = item j+1.

        Without ``fusion`` this is the cosine similarity of text and item; with it, the fused score
        of :mod:`rl4rec.retrieval.fusion` (which reads ``history_items``).
        """
        texts = self._texts(generated_texts)
        index = self._index(dataset_name)
        histories = self._histories(history_items, index.n_items, len(texts))
        fusion = load_fusion(fusion)  # checked before any work, an empty batch included
        return self._fused(texts, dataset_name, histories, fusion).cpu().numpy()

    def rank(
        self,
        generated_texts: Sequence[str],
        dataset_name: str,
        target_items: Sequence[int],
        history_items: Sequence[Sequence[int]] | None = None,
        fusion: FusionConfig | dict[str, Any] | None = None,
    ) -> list[int]:
        """1-based rank of each target (history masked, pessimistic ties).

        Empty texts score 0 on the text part: alone they get the worst rank, fused they are ranked by
        the history part only.
        """
        texts = self._texts(generated_texts)
        index = self._index(dataset_name)
        targets = self._ids(target_items, "target_items", index.n_items, len(texts))
        histories = self._histories(history_items, index.n_items, len(texts))
        fusion = load_fusion(fusion)  # checked before any work: a bad fusion fails on an empty batch too
        if not texts:
            return []
        scores = self._fused(texts, dataset_name, histories, fusion)
        t0 = time.perf_counter()
        ranks = compute_ranks(scores, torch.tensor(targets), histories).cpu().tolist()
        self._add_timings(rank=time.perf_counter() - t0, calls=1, texts=len(texts))
        return [int(r) for r in ranks]

    def evaluate(
        self,
        generated_texts: Sequence[str],
        dataset_name: str,
        target_items: Sequence[int],
        history_items: Sequence[Sequence[int]] | None = None,
        reward_type: str = "ndcg",
        k: int = 10,
        mixed_weight: float = DEFAULT_MIXED_WEIGHT,
        fusion: FusionConfig | dict[str, Any] | None = None,
    ) -> dict[str, list[float] | list[int]]:
        """Rewards and ranks in one call: ``{"reward": [...], "rank": [...]}``.

        Empty or whitespace-only texts get reward 0, fused or not (a policy must not learn to leave the
        query to the history). Rewards are always finite.
        """
        check_reward_args(reward_type, k, mixed_weight)
        texts = self._texts(generated_texts)
        ranks = self.rank(texts, dataset_name, target_items, history_items, fusion)
        candidates = None
        if reward_type in CANDIDATE_REWARD_TYPES:
            n_items = self._index(dataset_name).n_items
            candidates = count_candidates(n_items, [int(t) for t in target_items], history_items)
        rewards = reward_from_ranks(
            np.asarray(ranks, dtype=np.int64), reward_type, int(k), float(mixed_weight), candidates
        )
        out = []
        for text, r in zip(texts, rewards.tolist(), strict=True):
            out.append(0.0 if not text.strip() or not math.isfinite(r) else float(r))
        return {"reward": out, "rank": ranks}

    def calculate_reward(
        self,
        generated_texts: Sequence[str],
        dataset_name: str = "beauty",
        target_items: Sequence[int] | None = None,
        history_items: Sequence[Sequence[int]] | None = None,
        reward_type: str = "ndcg",
        k: int = 10,
        mixed_weight: float = DEFAULT_MIXED_WEIGHT,
        fusion: FusionConfig | dict[str, Any] | None = None,
    ) -> list[float] | np.ndarray:
        """Reward of each text; empty or whitespace-only texts get 0.

        As in the seed, a call without ``target_items`` returns the score matrix (see get_scores).
        """
        if target_items is None:
            return self.get_scores(generated_texts, dataset_name, history_items, fusion)
        result = self.evaluate(
            generated_texts, dataset_name, target_items, history_items, reward_type, k, mixed_weight, fusion
        )
        return result["reward"]
