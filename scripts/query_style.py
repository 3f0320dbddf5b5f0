"""Did a run learn a style that transfers? Shares of queries with a given trait, over a training run.

ml-100k (items with a year):

On ml-100k a fixed rewrite (every year set to the last watched film's year) gains +0.02 AUC on every test user
(scripts/query_variants.py), and a quarter of the untrained policy's queries name a year after the catalogue's
last. This reads a training run's sampled completions (``completions.jsonl``, by step bucket) and its held-out
greedy queries (``heldout/step_N.jsonl``) and prints, for each, the share of queries that name a year outside
the catalogue's years, the share that name any year, and the mean reward or AUC, so a run's curve can be read
next to what its queries say.

Amazon catalogues (item texts "Title. Brand: B. Categories: A > B > C"): the share of queries that name a brand,
the share that name categories, the mean depth of the categories named and the mean length, i.e. how specific the
queries are.

    python scripts/query_style.py outputs/experiments/ml-next5-grpo --dataset ml-100k --data_dir data
    python scripts/query_style.py outputs/runs/grpo-next2-beauty --dataset beauty --data_dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rl4rec.data import load_dataset
from rl4rec.io import read_jsonl
from rl4rec.metrics import auc_from_ranks

YEAR = re.compile(r"\b(?:19|20)\d\d\b")
#: An item's own year in its rendered text (titles such as "2001: A Space Odyssey" hold other numbers).
ITEM_YEAR = re.compile(r"Year: (\d{4})")
#: The fields of an Amazon item's rendered text (rl4rec.data.item_text).
BRAND, CATEGORIES = "Brand:", "Categories:"


def catalogue_traits(dataset) -> Callable[[list[str]], dict[str, float]]:
    """The traits this catalogue's texts can show: years (ml-100k) or Amazon's brand and category fields."""
    years = [int(y) for text in dataset.item_texts for y in ITEM_YEAR.findall(text)]
    if years:
        return lambda queries: traits(queries, min(years), max(years))
    if any(CATEGORIES in text for text in dataset.item_texts):
        return field_traits
    raise SystemExit("no item text names a year or categories: no trait to read for this catalogue")


def field_traits(queries: list[str]) -> dict[str, float]:
    named = [q.split(CATEGORIES, 1)[1] for q in queries if CATEGORIES in q]
    return {
        "queries": len(queries),
        "names a brand": float(np.mean([BRAND in q for q in queries])),
        "names categories": len(named) / max(len(queries), 1),
        "category depth": float(np.mean([c.count(">") + 1 for c in named])) if named else 0.0,
        "characters": float(np.mean([len(q) for q in queries])),
    }


def traits(queries: list[str], first: int, last: int) -> dict[str, float]:
    named = [[int(y) for y in YEAR.findall(q)] for q in queries]
    return {
        "queries": len(queries),
        "names a year": float(np.mean([bool(y) for y in named])),
        f"names a year outside {first}-{last}": float(
            np.mean([any(not first <= y <= last for y in ys) for ys in named])
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a training run directory")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--bucket", type=int, default=50, help="training steps per row")
    parser.add_argument("--output", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    read = catalogue_traits(load_dataset(args.dataset, args.data_dir))
    rows = []
    completions = args.run_dir / "completions.jsonl"
    if completions.is_file():
        records = read_jsonl(completions)
        for start in range(0, max(r["step"] for r in records) + 1, args.bucket):
            chosen = [r for r in records if start < r["step"] <= start + args.bucket]
            if chosen:
                rows.append({"what": f"sampled, steps {start + 1}-{start + args.bucket}",
                             **read([r["completion"] for r in chosen]),
                             "mean reward": float(np.mean([r["reward"] for r in chosen]))})  # fmt: skip
    steps = sorted((args.run_dir / "heldout").glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    for path in steps:
        records = read_jsonl(path)
        auc = auc_from_ranks(
            np.array([r["rank"] for r in records]), np.array([r["candidates"] for r in records])
        )
        rows.append({"what": f"held-out greedy, {path.stem}", **read([r["query"] for r in records]),
                     "mean reward": float(np.mean(auc))})  # fmt: skip
    if not rows:
        raise SystemExit(f"{args.run_dir}: no completions.jsonl and no heldout/ queries to read")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
