"""The files of an evaluation run directory, and reading them back.

``eval_config.json`` (the protocol: ``identity`` + ``config``), ``ranks.jsonl`` (one line per user: target,
rank, candidates, and the query text for text methods) and ``results.json``. The runner writes them; compare,
report, fusion tuning and ``--queries_from`` read them through this module.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rl4rec.errors import ConfigError, DataError
from rl4rec.run_layout import EVAL_CONFIG_FILE, RANKS_FILE

logger = logging.getLogger(__name__)


def candidate_counts(records: list[dict[str, Any]]) -> list[int] | None:
    """Per-user candidate counts for AUC, or None when a record predates them (then AUC is left out)."""
    if not records or any("candidates" not in r for r in records):
        return None
    return [int(r["candidates"]) for r in records]


def read_ranks(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Per-user records of a run directory (a torn last line from a crash is ignored)."""
    path = Path(run_dir) / RANKS_FILE
    out: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return out
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                logger.warning("%s: ignoring a torn last line (interrupted write)", path)
                continue
            raise DataError(
                f"{path}:{i}: not valid JSON; delete the run directory or pass --overwrite."
            ) from None
        out[int(record["user_id"])] = record
    return out


def read_queries(
    run_dir: str | Path, dataset: str, split: str
) -> tuple[dict[str, Any], dict[int, str | list[str]]]:
    """``(identity, {user_id: query})`` of an ``rl4rec evaluate`` run, checked against dataset and split.

    A query is one text, or a list of sampled texts for a run with ``--num_queries``."""
    path = Path(run_dir)
    try:
        ident = json.loads((path / EVAL_CONFIG_FILE).read_text(encoding="utf-8")).get("identity", {})
    except FileNotFoundError:
        raise DataError(
            f"{path}: not an evaluation run (no {EVAL_CONFIG_FILE}); pass an `rl4rec evaluate` run_dir."
        ) from None
    if ident.get("dataset") != dataset:
        raise ConfigError(f"{path} is a run on {ident.get('dataset')!r}, not {dataset!r}.")
    if ident.get("split") != split:
        hint = " (fusion weights are tuned on validation queries only)" if split == "valid" else ""
        raise ConfigError(
            f"{path} was evaluated on split {ident.get('split')!r}, not {split!r}{hint}. "
            f"Rerun that method with `rl4rec evaluate --split {split}`."
        )
    texts = {u: r["query"] for u, r in read_ranks(path).items() if "query" in r}
    if not texts:
        raise DataError(f"{path}: its ranks.jsonl holds no query texts (a score-only method?).")
    return ident, texts
