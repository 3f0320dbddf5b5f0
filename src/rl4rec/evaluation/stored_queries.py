"""Query texts an earlier evaluation run wrote, reused instead of generated again.

Generating a query costs a CPU second per user; ranking it costs a millisecond. Re-ranking a run's own
texts under another scoring (``--fusion``) therefore reuses them (``--queries_from RUN``), which also
guarantees that the fused and the text-only rows compare *the same texts* user by user. Fusion
weights are tuned on a validation run's texts the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rl4rec.data.splits import Example
from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.methods import TextMethod


def read_queries(run_dir: str | Path, dataset: str, split: str) -> tuple[dict[str, Any], dict[int, str]]:
    """``(identity, {user_id: query})`` of an ``rl4rec evaluate`` run, checked against dataset and split."""
    from rl4rec.evaluation.runner import CONFIG_FILE, read_ranks

    path = Path(run_dir)
    try:
        ident = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")).get("identity", {})
    except FileNotFoundError:
        raise DataError(
            f"{path}: not an evaluation run (no {CONFIG_FILE}); pass an `rl4rec evaluate` run_dir."
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


class StoredQuery(TextMethod):
    """Ranks the texts another run wrote for the same users (same split and dataset)."""

    def __init__(
        self, service: Any, dataset_name: str, texts: dict[int, str], source: str, name: str
    ) -> None:
        super().__init__(service, dataset_name)
        self.texts, self.source, self.name = texts, source, name

    def queries(self, examples: Sequence[Example]) -> list[str]:
        missing = [e.user_id for e in examples if e.user_id not in self.texts]
        if missing:
            raise DataError(
                f"{self.source} has no query for {len(missing)} of these users (e.g. user {missing[0]}): "
                "use the same --num_users and --seed as that run, or let it finish first."
            )
        return [self.texts[e.user_id] for e in examples]
