"""``rl4rec tune-fusion``: choose the fusion weights on the validation split, never on test.

The fused score is linear in its weights, so each component (text, history similarity, co-occurrence)
is computed once per user and setting, and every grid point is a weighted sum of the same matrices:
the number a grid point reports is the number ``rl4rec evaluate --fusion FILE`` computes on the same
users (the same service scoring, history masking and pessimistic ties).

Without ``--queries`` the text weight is 0 (the weights of ``history-fusion``). With ``--queries RUN``
(an ``rl4rec evaluate --split valid`` run of ``last-item``, ``zero-shot`` or ``policy``), the text of
each of that run's users joins the grid, so the text weight is chosen for that query writer on its
own validation queries.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from rl4rec.config_cli import comma_floats, comma_ints, opt, parse_config
from rl4rec.data.dataset import load_dataset
from rl4rec.data.splits import leave_one_out, sample_users
from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.ranking import Query, query_scores
from rl4rec.metrics import compute_ranks
from rl4rec.retrieval.fusion import FusionConfig, load_fusion
from rl4rec.statistics import per_user

logger = logging.getLogger(__name__)

CHUNK = 512


def _bools(text: str) -> tuple[bool, ...]:
    """``true,false`` -> ``(True, False)``."""
    values = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    try:
        return tuple(values[v.strip().lower()] for v in text.split(","))
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated true/false values, got {text!r}"
        ) from None


@dataclass
class TuneConfig:
    """``rl4rec tune-fusion``: each field is a flag (``--name``), with its help text."""

    dataset: str = opt("beauty")
    data_dir: str = opt("data")
    output: str = opt("fusion.json", "fusion JSON to write")
    queries: str | None = opt(None, "an `rl4rec evaluate --split valid` run whose query texts join the grid")
    #: With ``queries``: keep this file's history weights (tuned on many users) and choose only w_text.
    base: str | None = opt(
        None, "with --queries: keep this fusion file's history weights and choose only w_text"
    )
    num_users: int = opt(3000, "seeded validation users (without --queries)")
    seed: int = opt(0)
    metric: str = opt("ndcg@10", "what the grid maximises, e.g. ndcg@10")
    embedder: str = opt("default")
    decays: tuple[float, ...] = opt((0.3, 0.5, 0.7), parse=comma_floats)
    windows: tuple[int, ...] = opt(
        (1, 3, 5), "co-occurrence windows in the grid, e.g. 1,3,5", parse=comma_ints
    )
    directed: tuple[bool, ...] = opt(
        (True, False), "co-occurrence directions in the grid, e.g. true,false", parse=_bools
    )
    w_hist: tuple[float, ...] = opt((0.0, 0.5, 1.0), parse=comma_floats)
    w_co: tuple[float, ...] = opt((0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0), parse=comma_floats)
    w_text: tuple[float, ...] = opt(
        (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0), parse=comma_floats
    )

    def validate(self) -> TuneConfig:
        """Checks the command line (``tune`` itself accepts any ``num_users``, as before)."""
        if self.num_users < 1:
            raise ConfigError(f"--num_users must be >= 1, got {self.num_users}.")
        for name in ("decays", "windows", "directed", "w_hist", "w_co", "w_text"):
            setattr(self, name, tuple(getattr(self, name)))  # a --config YAML file gives a list
        return self


def _components(
    config: TuneConfig, examples: list[Any], texts: list[Query] | None, service: Any
) -> dict[tuple[str, Any], torch.Tensor]:
    """Each fused-score component on the chosen users, keyed by (component, setting); a user's several sampled
    queries (``--num_queries``) give the mean of their text scores, as ``rl4rec evaluate`` ranks them."""
    histories = [list(e.history) for e in examples]
    signals = service.history_signals(config.dataset)
    parts: dict[tuple[str, Any], list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(examples), CHUNK), desc="fusion components", unit="chunk"):
        hist = histories[start : start + CHUNK]
        if texts is not None:
            text_scores = query_scores(service, config.dataset, texts[start : start + CHUNK]).float()
            parts.setdefault(("text", None), []).append(text_scores)
        for decay in config.decays:
            one = FusionConfig(w_text=0.0, w_hist=1.0, decay=decay)
            parts.setdefault(("hist", decay), []).append(signals.fuse(None, hist, one))
            for window, directed in itertools.product(config.windows, config.directed):
                co = FusionConfig(w_text=0.0, w_co=1.0, decay=decay, co_window=window, co_directed=directed)
                parts.setdefault(("co", (decay, window, directed)), []).append(signals.fuse(None, hist, co))
    return {key: torch.cat(chunks) for key, chunks in parts.items()}


def tune(config: TuneConfig, service: Any = None) -> dict[str, Any]:
    """Grid search on validation users; writes ``config.output`` and returns it as a dict."""
    name, _, k = config.metric.partition("@")
    if name not in ("ndcg", "hit", "mrr") or not k.isdigit():
        raise ConfigError(f"--metric must look like ndcg@10, hit@20 or mrr@10, got {config.metric!r}.")
    if service is None:
        from rl4rec.retrieval.embedder import EmbedderConfig
        from rl4rec.retrieval.shared import local_service

        service = local_service(config.dataset, config.data_dir, EmbedderConfig(model_name=config.embedder))
    if config.base:
        if not config.queries:
            raise ConfigError(
                "--base only applies with --queries (it fixes the history weights, tunes w_text)."
            )
        b = load_fusion(config.base)
        assert b is not None
        config = dataclasses.replace(
            config, decays=(b.decay,), windows=(b.co_window,), directed=(b.co_directed,), w_hist=(b.w_hist,),
            w_co=(b.w_co,),
        )  # fmt: skip
    dataset = load_dataset(config.dataset, config.data_dir)
    examples = leave_one_out(dataset.sequences, "valid").examples
    texts = None
    if config.queries:
        from rl4rec.evaluation.run_files import read_queries

        _, by_user = read_queries(config.queries, config.dataset, "valid")
        examples = [e for e in examples if e.user_id in by_user]
        texts = [by_user[e.user_id] for e in examples]
    else:
        examples = sample_users(examples, config.num_users, config.seed)
    if not examples:
        raise DataError("no validation users to tune on.")
    comps = _components(config, examples, texts, service)
    targets = torch.tensor([e.target for e in examples])
    histories = [list(e.history) for e in examples]
    text_weights = config.w_text if texts is not None else (0.0,)
    results = []
    grid = list(
        itertools.product(
            config.decays, config.windows, config.directed, config.w_hist, config.w_co, text_weights
        )
    )
    for decay, window, directed, wh, wc, wt in tqdm(grid, desc="fusion grid", unit="point"):
        if wh + wc + wt == 0 or (wc == 0 and (window, directed) != (config.windows[0], config.directed[0])):
            continue  # all-zero, or a co-occurrence setting that does not enter the score
        scores = wh * comps[("hist", decay)] + wc * comps[("co", (decay, window, directed))]
        if wt:
            scores = scores + wt * comps[("text", None)]
        ranks = compute_ranks(scores, targets, histories).numpy()
        value = float(per_user(ranks, [int(k)])[config.metric].mean())
        results.append((value, FusionConfig(wt, wh, wc, decay, FusionConfig.history_n, window, directed)))
    results.sort(key=lambda r: -r[0])
    best_value, best = results[0]
    info = {
        "tuned_on": {
            "dataset": config.dataset,
            "split": "valid",
            "users": len(examples),
            "seed": config.seed,
            "metric": config.metric,
            "value": round(best_value, 6),
            "queries": str(config.queries) if config.queries else None,
            "base": str(config.base) if config.base else None,
            "grid_points": len(results),
        },
        "top": [{"value": round(v, 6), **c.to_dict()} for v, c in results[:10]],
    }
    best.save(config.output, **info)
    logger.info(
        "fusion: best %s %.4f on %d validation users -> %s",
        config.metric,
        best_value,
        len(examples),
        config.output,
    )
    return {"fusion": best.to_dict(), **info}


def tune_fusion_main(argv: list[str]) -> int:
    config = parse_config(
        TuneConfig,
        argv,
        "rl4rec tune-fusion",
        "Pick fusion weights (text + history similarity + co-occurrence) by grid search on the "
        "VALIDATION split and write them to a file that `rl4rec train --fusion` and `rl4rec evaluate --fusion` read.",
    )
    result = tune(config)
    print(json.dumps({"fusion": result["fusion"], **result["tuned_on"]}))
    return 0
