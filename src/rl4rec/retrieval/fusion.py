"""History-aware scoring: the query is more than the text.

On Amazon Beauty the last history item's text alone (NDCG@10 0.040) beats every query a small LLM
writes, and training-free retrieval that mixes semantic similarity, item co-occurrence and recency over
the history reaches about 0.052. A recommender built on rl4rec should therefore combine the policy's
text with the history signal, and RL should improve the combination, not compete with it::

    score(item) = w_text * cos(text, item)
                + w_hist * sum_h r_h * cos(h, item)          # semantic similarity to the history
                + w_co   * sum_h r_h * P(item | h)           # co-occurrence with the history

over the ``history_n`` most recent history items ``h``, with recency weights ``r_h`` proportional to
``decay ** age`` (age 0 = the most recent item) and summing to 1. ``P(item | h)`` is the share of
``h``'s co-occurrences (``item`` within ``co_window`` positions after ``h``, or on either side when
``co_directed`` is false) counted over **interactions before the example's target only**: each user's
sequence without its last ``co_holdout`` items. ``co_holdout`` 2 (the default) leaves out the validation
and test targets, the cut of :func:`rl4rec.data.splits.training_interactions`, for ranking validation
and test examples; training prompts and the training reward use 3 (:func:`for_split`), which also
leaves out the training target, so a training example's own transition into its target
(``items[-4] -> items[-3]``) never scores that target.

One implementation serves the reward, the in-process and Ray services and ``rl4rec evaluate``: the
:class:`~rl4rec.retrieval.service.RetrievalService` calls :meth:`HistorySignals.fuse`. The default
:class:`FusionConfig` (text weight 1, others 0) is the seed's text-only score, unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl4rec.data.splits import MAX_NEXT_ITEMS, check_split
from rl4rec.errors import ConfigError, DataError
from rl4rec.io import atomic_write_json

#: Sane maxima: weights beyond this only rescale the score; windows and histories beyond these exceed any sequence
#: (the co-occurrence loop is also bounded by the longest sequence, so no request can hang the service).
MAX_WEIGHT = 1e6
MAX_CO_WINDOW = 1000
MAX_HISTORY_N = 10000
#: ``co_holdout``: 2 leaves out the validation and test targets, 3 the training target too, 2 + K the K next items
#: of a ``--next_items K`` reward (see :func:`for_split`).
CO_HOLDOUT_RANGE = (2, 2 + MAX_NEXT_ITEMS)


@dataclass(frozen=True)
class FusionConfig:
    w_text: float = 1.0
    w_hist: float = 0.0
    w_co: float = 0.0
    decay: float = 0.7
    history_n: int = 20
    co_window: int = 3
    co_directed: bool = True
    #: Trailing items of each user's sequence left out of the co-occurrence counts (2: evaluation; 3: training).
    co_holdout: int = 2

    def __post_init__(self) -> None:
        for name in ("w_text", "w_hist", "w_co"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 <= value <= MAX_WEIGHT
            ):
                raise ConfigError(f"fusion {name} must be a number in [0, {MAX_WEIGHT:g}], got {value!r}.")
            object.__setattr__(self, name, float(value))  # an int weight (e.g. 10**30) never reaches torch
        if self.w_text + self.w_hist + self.w_co <= 0:
            raise ConfigError("fusion weights are all 0: at least one of w_text, w_hist, w_co must be > 0.")
        if (
            isinstance(self.decay, bool)
            or not isinstance(self.decay, (int, float))
            or not 0 < self.decay <= 1
        ):
            raise ConfigError(f"fusion decay must be a number in (0, 1], got {self.decay!r}.")
        for name, most in (("history_n", MAX_HISTORY_N), ("co_window", MAX_CO_WINDOW)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise ConfigError(f"fusion {name} must be an integer in [1, {most}], got {value!r}.")
        if not isinstance(self.co_directed, bool):
            raise ConfigError(f"fusion co_directed must be true or false, got {self.co_directed!r}.")
        low, high = CO_HOLDOUT_RANGE
        if (
            isinstance(self.co_holdout, bool)
            or not isinstance(self.co_holdout, int)
            or not low <= self.co_holdout <= high
        ):
            raise ConfigError(
                f"fusion co_holdout must be an integer in [{low}, {high}] (2: leave out the validation and test "
                f"targets; 3: the training target too; 2 + K: a --next_items K reward's items), got {self.co_holdout!r}."
            )

    @property
    def text_only(self) -> bool:
        return self.w_hist == 0 and self.w_co == 0

    @property
    def uses_text(self) -> bool:
        return self.w_text > 0

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``co_holdout`` only when it is not the default 2, so the files, evaluation identities and
        recall-stage cache keys written before the field existed stay valid (and a holdout of 3 keys its own)."""
        out = dataclasses.asdict(self)
        if out["co_holdout"] == 2:
            del out["co_holdout"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "fusion config") -> FusionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown fusion keys {', '.join(unknown)} (known: {', '.join(sorted(known))})."
            )
        return cls(**dict(data))

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write ``{"fusion": {...}, **extra}`` (extra: how the weights were chosen)."""
        atomic_write_json(Path(path), {"fusion": self.to_dict(), **extra})


def for_split(config: FusionConfig, split: str, next_items: int = 1) -> FusionConfig:
    """``config`` as it must score examples of ``split``: ``co_holdout`` 3 for "train", unchanged otherwise.

    An example's features must come from data before its target. Co-occurrence is counted over each
    user's sequence less its last ``co_holdout`` items; the default 2 keeps the training target
    (``items[-3]``), so for a training example the user's own transition into that target would be counted
    and its fused score would leak the target (on Beauty the recall stage's top 10 held the training
    target for 66 % of training examples against 11 % of test users). Training prompts (the recall stage)
    and the training reward therefore count without it; validation and test examples keep the default.
    A reward over the next ``next_items`` training items leaves those out too (``co_holdout`` 2 + K).
    """
    holdout = 2 + max(int(next_items), 1)
    if check_split(split) == "train" and config.co_holdout < holdout:
        return dataclasses.replace(config, co_holdout=holdout)
    return config


#: history-fusion's weights when no fusion file is given (tune them: `rl4rec tune-fusion`); also the recall stage's.
DEFAULT_HISTORY_FUSION = FusionConfig(w_text=0.0, w_hist=1.0, w_co=1.0)


def load_fusion(value: FusionConfig | Mapping[str, Any] | str | Path | None) -> FusionConfig | None:
    """A FusionConfig from a config, a dict (a Ray call's argument) or a JSON file written by tune-fusion."""
    if value is None or isinstance(value, FusionConfig):
        return value
    if isinstance(value, Mapping):
        inner = value.get("fusion", value)
        if not isinstance(inner, Mapping):
            raise ConfigError(f'fusion: "fusion" must be an object of weights, got {type(inner).__name__}.')
        return FusionConfig.from_dict(inner)
    if not isinstance(value, (str, Path)):
        raise ConfigError(
            f"fusion must be a FusionConfig, a dict of weights or a path to a fusion JSON file, "
            f"got {type(value).__name__} ({value!r:.80})."
        )
    path = Path(value)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: fusion file not found. Write one with `rl4rec tune-fusion`.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(raw, dict):
        raise DataError(f'{path}: expected a JSON object with a "fusion" entry.')
    return FusionConfig.from_dict(raw.get("fusion", raw), source=str(path))


def recency_weights(n: int, decay: float) -> np.ndarray:
    """Weights of the last ``n`` history items, oldest first, summing to 1."""
    w = decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return (w / w.sum()).astype(np.float32)


def cooccurrence(
    sequences: Mapping[int, Sequence[int]], n_items: int, window: int, directed: bool, holdout: int = 2
) -> torch.Tensor:
    """Row-normalised co-occurrence ``P(b | a)``, sparse COO ``[n_items, n_items]`` (row/col j = item j+1).

    Counted over each user's items less the last ``holdout`` only: ``items[:-2]`` (before the validation
    target) by default, ``items[:-3]`` (before the training target) with 3.
    """
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    for items in sequences.values():
        seq = np.asarray(items[: max(len(items) - holdout, 0)], dtype=np.int64) - 1
        for gap in range(1, min(window, len(seq) - 1) + 1):  # bounded by the data, whatever the window
            src.append(seq[:-gap])
            dst.append(seq[gap:])
            if not directed:
                src.append(seq[gap:])
                dst.append(seq[:-gap])
    if src:
        a, b = np.concatenate(src), np.concatenate(dst)
        keep = a != b
        a, b = a[keep], b[keep]
    else:
        a = b = np.zeros(0, dtype=np.int64)
    counts = np.zeros((0,), dtype=np.float32)
    if len(a):
        flat, counts = np.unique(a * n_items + b, return_counts=True)
        a, b = flat // n_items, flat % n_items
    row_sums = np.bincount(a, weights=counts, minlength=n_items)
    values = counts / np.maximum(row_sums[a], 1.0)
    coo = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([a, b])),
        torch.from_numpy(values.astype(np.float32)),
        (n_items, n_items),
        check_invariants=True,
    )
    return coo.coalesce()


class HistorySignals:
    """Per-dataset state of the fused score: item vectors and co-occurrence tables (built once, cached)."""

    def __init__(self, item_embeddings: torch.Tensor, sequences: Mapping[int, Sequence[int]]) -> None:
        self.items = item_embeddings.float()
        self.n_items = int(item_embeddings.shape[0])
        self.sequences = sequences
        self._co: dict[tuple[int, bool, int], torch.Tensor] = {}

    def co_table(self, window: int, directed: bool, holdout: int = 2) -> torch.Tensor:
        key = (window, directed, holdout)
        if key not in self._co:
            # stored transposed: one sparse @ dense product then scores a whole batch
            table = cooccurrence(self.sequences, self.n_items, window, directed, holdout)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is all we use
                warnings.simplefilter("ignore", UserWarning)
                self._co[key] = table.t().coalesce().to_sparse_csr()
        return self._co[key]

    def history_weights(self, histories: Sequence[Sequence[int]], config: FusionConfig) -> torch.Tensor:
        """``[batch, n_items]`` recency weight of each item in each history (repeats add up)."""
        weights = torch.zeros((len(histories), self.n_items), dtype=torch.float32)
        for row, history in enumerate(histories):
            recent = [int(h) for h in history if int(h) > 0][-config.history_n :]
            if recent:
                idx = torch.tensor(recent, dtype=torch.long) - 1
                weights[row].index_add_(0, idx, torch.from_numpy(recency_weights(len(recent), config.decay)))
        return weights

    def fuse(
        self, text_scores: torch.Tensor | None, histories: Sequence[Sequence[int]], config: FusionConfig
    ) -> torch.Tensor:
        """Fused ``[batch, n_items]`` scores; ``text_scores`` may be None when ``w_text`` is 0."""
        batch = len(histories)
        device = self.items.device
        out = torch.zeros((batch, self.n_items), dtype=torch.float32, device=device)
        if config.w_text:
            if text_scores is None:
                raise ConfigError("fusion with w_text > 0 needs the text scores.")
            out += config.w_text * text_scores.to(device, torch.float32)
        if config.w_hist or config.w_co:
            weights = self.history_weights(histories, config)
            if config.w_hist:
                out += config.w_hist * ((weights.to(device) @ self.items) @ self.items.T)
            if config.w_co:
                co = self.co_table(config.co_window, config.co_directed, config.co_holdout)
                out += config.w_co * (co @ weights.T).T.to(device)
        return out
