"""``rl4rec evaluate``: rank every sampled user's held-out item and summarise with intervals.

A run directory holds ``eval_config.json`` (the protocol), ``ranks.jsonl`` (one line per user:
target, rank, query text) and ``results.json``. Ranks are appended chunk by chunk and fsynced, so an
interrupted evaluation resumes where it stopped; settings that would change the numbers must match
the stored protocol, or the run refuses to mix them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rl4rec.data.dataset import load_dataset
from rl4rec.data.splits import Example, leave_one_out, sample_users
from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.config import EvalConfig
from rl4rec.evaluation.resolved import identity, resolve
from rl4rec.evaluation.run_files import read_ranks
from rl4rec.io import atomic_write_json, atomic_write_text
from rl4rec.metrics import count_candidates
from rl4rec.run_layout import EVAL_CONFIG_FILE as CONFIG_FILE
from rl4rec.run_layout import RANKS_FILE, RESULTS_FILE
from rl4rec.statistics import metric_table

logger = logging.getLogger(__name__)

TIES = "pessimistic: items scoring equal to the target rank above it"
#: Examples per chunk for score-only baselines (bounds the [chunk, n_items] score matrix).
SCORE_CHUNK = 256


def _backfill_candidates(run_dir: Path, done: dict[int, dict[str, Any]], candidates: dict[int, int]) -> None:
    """Add candidate counts to records written before AUC existed, so ``rl4rec compare`` reports it.

    Ranks are untouched; the file is rewritten atomically, so an interruption leaves the old one.
    """
    if all("candidates" in done[user] for user in candidates):
        return
    for user, n in candidates.items():
        done[user]["candidates"] = n
    lines = [json.dumps(r, ensure_ascii=False) for r in done.values()]
    atomic_write_text(run_dir / RANKS_FILE, "\n".join(lines) + "\n")


def _prepare_run_dir(run_dir: Path, ident: dict[str, Any], config: EvalConfig) -> dict[int, dict[str, Any]]:
    stored_path = run_dir / CONFIG_FILE
    if config.overwrite:
        for name in (CONFIG_FILE, RANKS_FILE, RESULTS_FILE):
            (run_dir / name).unlink(missing_ok=True)
    elif stored_path.is_file():
        stored = json.loads(stored_path.read_text(encoding="utf-8")).get("identity", {})
        diffs = [f"{k}: {stored.get(k)!r} vs {v!r}" for k, v in ident.items() if stored.get(k) != v]
        if diffs:
            raise ConfigError(
                f"{run_dir} holds an evaluation with other settings ({'; '.join(diffs)}). "
                "Pass --overwrite to replace it, or choose another --run_dir."
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored_path, {"identity": ident, "config": config.to_dict()})
    return read_ranks(run_dir)


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _service(config: EvalConfig) -> Any:
    from rl4rec.retrieval.embedder import EmbedderConfig
    from rl4rec.retrieval.shared import local_service

    return local_service(config.dataset, config.data_dir, EmbedderConfig(model_name=config.embedder))


def run_evaluation(config: EvalConfig) -> dict[str, Any]:
    config.validate()
    started = time.monotonic()
    dataset = load_dataset(config.dataset, config.data_dir)
    split = leave_one_out(dataset.sequences, config.split)
    examples = sample_users(split.examples, config.users_to_evaluate(), config.seed)
    if not examples:
        raise DataError(f"{config.dataset}: no user has enough items for the {config.split} split.")
    needs_service = config.method not in ("random", "popularity", "sasrec")
    service = _service(config) if needs_service else None
    embedder_id = None
    if service is not None:  # a readable name for tables; the item-index cache key holds the exact weights
        name = "all-MiniLM-L6-v2" if config.embedder == "default" else config.embedder
        embedder_id = f"{name} (dim {service.embedder.dim}, cosine)"
    run_dir = config.resolved_run_dir()
    resolved = resolve(config)
    ident = identity(resolved, embedder_id)
    done = _prepare_run_dir(run_dir, ident, config)
    # Candidates per user (catalogue minus masked history): AUC's denominator, stored with each rank.
    counts = count_candidates(dataset.n_items, [e.target for e in examples], [e.history for e in examples])
    candidates = dict(zip((e.user_id for e in examples), counts.tolist(), strict=True))
    todo = [e for e in examples if e.user_id not in done]
    if done:
        logger.info("evaluate: resuming %s, %d of %d users already ranked", run_dir, len(done), len(examples))
    if todo:
        from rl4rec.evaluation.methods import make_method

        method = make_method(resolved, dataset, service)
        chunk = config.batch_size if config.is_llm else SCORE_CHUNK
        with tqdm(total=len(examples), initial=len(examples) - len(todo), desc=f"evaluate {config.method}",
                  unit="user", dynamic_ncols=True) as bar:  # fmt: skip
            for start in range(0, len(todo), chunk):
                part: list[Example] = todo[start : start + chunk]
                ranks, queries = method.rank(part)
                records = []
                for ex, rank, query in zip(part, ranks, queries, strict=True):
                    record: dict[str, Any] = {
                        "user_id": ex.user_id,
                        "target": ex.target,
                        "rank": rank,
                        "candidates": candidates[ex.user_id],
                    }
                    if query is not None:
                        record["query"] = query
                        record["target_text"] = dataset.item_text(ex.target)
                    records.append(record)
                    done[ex.user_id] = record
                _append(run_dir / RANKS_FILE, records)
                bar.update(len(part))
    ranks = [int(done[e.user_id]["rank"]) for e in examples]
    _backfill_candidates(run_dir, done, candidates)
    seconds = time.monotonic() - started
    result = {
        "dataset": config.dataset,
        "split": config.split,
        "method": config.method,
        "model": config.model,
        "num_users": len(examples),
        "protocol": {
            **ident,
            "eligible_users": len(split.examples),
            "skipped_users": split.skipped_users,
            "n_items": dataset.n_items,
            "ranking": "full catalogue",
            "history_masked": True,
            "ties": TIES,
            "bootstrap": {
                "samples": config.bootstrap_samples,
                "seed": config.seed,
                "interval": "95% percentile",
            },
        },
        "metrics": metric_table(
            ranks, config.ks, config.bootstrap_samples, config.seed, list(candidates.values())
        ),
        "median_rank": float(sorted(ranks)[len(ranks) // 2]),
        "run": {
            "seconds": round(seconds, 2),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "run_dir": str(run_dir),
        },
    }
    atomic_write_json(run_dir / RESULTS_FILE, result)
    if config.output:
        atomic_write_json(config.output, result)
    return result
