"""Reward-ranked samples: a ``rl4rec headroom --split train`` ranks file read once, and what SFT trains on.

Best-of-K fine-tuning imitates each user's best sample; DPO pairs it with the worst. Both come from the same
parsed file, so a run reads it once.
"""

from __future__ import annotations

import json
from pathlib import Path

from rl4rec.errors import ConfigError

#: ``{user_id: (target, [(text rank, sampled query), ...] best first)}``
RankedSamples = dict[int, tuple[int, list[tuple[int, str]]]]


def ranked_samples(path: str | Path) -> RankedSamples:
    """``{user_id: (target, [(text rank, sampled query), ...] best first)}`` from a ``rl4rec headroom --split
    train`` ranks file (the sort is stable: equal ranks keep their sampling order)."""
    out: RankedSamples = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: not valid JSON.") from None
        keys = {"user_id", "target", "queries", "ranks_text"}
        if record.get("split", "train") != "train" or not keys <= set(record):
            raise ConfigError(f"{where}: not a `rl4rec headroom --split train` ranks line.")
        ranks, queries = record["ranks_text"], record["queries"]
        if not queries or len(ranks) != len(queries):
            raise ConfigError(f"{where}: {len(queries)} queries but {len(ranks)} ranks; the file is damaged.")
        samples = sorted(zip(ranks, queries, strict=True), key=lambda pair: pair[0])
        out[int(record["user_id"])] = (int(record["target"]), samples)
    if not out:
        raise ConfigError(
            f"{path}: no users; write it with `rl4rec headroom --split train --output FILE.json`."
        )
    return out


def best_queries(samples: RankedSamples) -> dict[int, str]:
    """``{user_id: best sampled query}`` (lowest text rank; the first sampled among equals)."""
    return {user: ranked[0][1] for user, (_, ranked) in samples.items()}


def preference_pairs(samples: RankedSamples, source: str = "the ranks file") -> dict[int, tuple[str, str]]:
    """``{user_id: (best, worst sampled query)}`` for DPO; a user whose samples all rank alike has no preference
    and is left out."""
    pairs = {u: (s[0][1], s[-1][1]) for u, (_, s) in samples.items() if s[0][0] < s[-1][0]}
    if not pairs:
        raise ConfigError(
            f"{source}: every user's samples rank alike; there is no preference pair to train on (sample more "
            "queries per user, or at a higher temperature)."
        )
    return pairs
