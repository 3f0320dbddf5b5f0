"""The second stage: a chooser's scores re-order the recall stage's top K, the rest of the ranking stays.

A re-ranker may only permute the candidates it was shown: every candidate stays above every other item
(their recall scores put them there), and the items below keep the recall stage's fused scores. So the
result is still a full-catalogue score matrix, ranked by the same :func:`rl4rec.metrics.compute_ranks`
as every other row (history masked, ties pessimistic), and a target the recall stage missed keeps its
rank: the chooser can only gain where the recall stage found the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rl4rec.data.splits import Example
from rl4rec.errors import DataError
from rl4rec.retrieval.recall import RecallStage, build_prompts


def rerank_scores(base: torch.Tensor, ranked: Sequence[Sequence[int]], shown: Sequence[Sequence[int]],
                  logprobs: np.ndarray, recall_prior: float = 0.0) -> torch.Tensor:  # fmt: skip
    """``[B, n_items]`` scores with each row's candidates re-ordered by the chooser.

    ``ranked``: each row's candidates in recall order (item ids); ``shown``: the same items in the order
    the prompt lettered them (``logprobs[:, j]`` belongs to ``shown[row][j]``). A candidate's key is
    ``log p(letter) - recall_prior * log(1 + recall position)``; keys are mapped into ``(top, top + 1)``
    above the row's best base score, so the order among candidates is the keys' and nothing else moves.
    """
    out = base.to(torch.float64).clone()
    for row, (order, letters) in enumerate(zip(ranked, shown, strict=True)):
        if sorted(order) != sorted(letters) or len(letters) != logprobs.shape[1]:
            raise DataError(f"row {row}: the chooser scored other candidates than the recall stage proposed.")
        position = {item: i for i, item in enumerate(order)}
        keys = np.asarray(
            [
                float(logprobs[row, j]) - recall_prior * math.log1p(position[item])
                for j, item in enumerate(letters)
            ]
        )
        if not np.isfinite(keys).all():
            raise DataError(f"row {row}: the chooser's scores are not finite ({keys.tolist()}).")
        spread = float(keys.max() - keys.min())
        scaled = (keys - keys.min()) / (spread * (1 + 1e-6)) if spread > 0 else np.zeros_like(keys)
        top = float(out[row].max())
        index = torch.tensor([item - 1 for item in letters], dtype=torch.long)
        out[row, index] = torch.from_numpy(top + 1.0 + scaled * 0.5)
    return out


def rerank_examples(service: Any, dataset_name: str, builder: Any, settings: Mapping[str, Any], seed: int,
                    examples: Sequence[Example], letter_scores: Callable[[list[Example], list[Any]], np.ndarray],
                    recall_prior: float = 0.0,
                    skip_misses: bool = True) -> tuple[torch.Tensor, np.ndarray, list[bool]]:  # fmt: skip
    """The two stages for ``examples``: their candidate prompts (``settings`` as ``rl4rec evaluate`` resolves
    them), the recall stage's fused scores, the chooser's ``[B, K]`` letter log-probs
    (``letter_scores(examples, prompts)``) and the re-ranked full-catalogue scores; also which rows were scored.
    ``evaluate --method chooser`` and the held-out curve of a ``--task choose`` run both call this, so they rank
    alike.

    ``skip_misses``: a target outside the top K keeps its recall rank whatever the chooser says (the chooser
    only permutes the top K), so the forward pass, the whole cost, runs only for the examples whose target is
    among the candidates; the others get uniform letter scores. The targets' ranks are exactly those of scoring
    every example (tested); only the order inside a missed user's top K is not the chooser's.
    """
    stage = RecallStage(service, dataset_name, settings.get("candidate_fusion"), int(settings["candidates"]))
    prompts, shown = build_prompts(builder, examples, settings, service, dataset_name, seed)
    assert shown is not None
    ranked = stage.candidates(examples)
    histories = [list(e.history) for e in examples]
    base = torch.from_numpy(service.get_scores([""] * len(examples), dataset_name, histories, stage.fusion))
    scored = [not skip_misses or e.target in c for e, c in zip(examples, ranked, strict=True)]
    rows = [i for i, s in enumerate(scored) if s]
    logprobs = np.full((len(examples), stage.k), -np.log(stage.k))
    if rows:
        part = np.asarray(letter_scores([examples[i] for i in rows], [prompts[i] for i in rows]))
        if part.shape != (len(rows), stage.k):
            raise DataError(
                f"the chooser returned scores of shape {part.shape}, expected ({len(rows)}, {stage.k})."
            )
        logprobs[rows] = part
    return rerank_scores(base, ranked, shown, logprobs, recall_prior), logprobs, scored
