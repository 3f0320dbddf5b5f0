"""Which part of a policy's text carries its score: rewrite stored queries and rank the variants exactly as
`rl4rec evaluate` ranks them (full catalogue, history masked), paired with the queries as generated.

A gain that a fixed rewrite brings to every user (a plausible year, a format) is style that RL can learn once and
carry to new users; the rest of a sample's reward is which title it happens to name for that one user.

    python scripts/query_variants.py outputs/experiments/test-zero-shot-all --dataset ml-100k --data_dir data
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from rl4rec.data import load_dataset
from rl4rec.data.splits import leave_one_out
from rl4rec.evaluation.run_files import candidate_counts, read_ranks
from rl4rec.retrieval.service import RetrievalService
from rl4rec.run_layout import EVAL_CONFIG_FILE
from rl4rec.statistics import paired_difference

YEAR = re.compile(r"\b(?:19|20)\d\d\b")


def item_year(text: str, default: str) -> str:
    found = re.search(r"Year: (\d{4})", text)
    return found.group(1) if found else default


def variants(queries: list[str], histories: list[list[int]], item_text) -> dict[str, list[str]]:
    preamble = re.compile(r"^[^\n]*:[ \t]*\n+")  # a first line ending in ":" ("... most likely to want is:")
    last_year = [item_year(item_text(h[-1]), "1996") for h in histories]
    return {
        "as generated": queries,
        "first line (the preamble) removed": [preamble.sub("", q, count=1).strip() or q for q in queries],
        "every year replaced by the last watched item's year": [
            YEAR.sub(y, q) for q, y in zip(queries, last_year, strict=True)
        ],
        "the last watched item's text": [item_text(h[-1]) for h in histories],
        "the last 3 watched items' texts": [" ".join(item_text(i) for i in h[-3:]) for h in histories],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_dir", type=Path, help="an evaluation run directory (its ranks.jsonl has the queries)"
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--output", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    records = list(read_ranks(args.run_dir).values())
    if not records or "query" not in records[0]:
        raise SystemExit(
            f"{args.run_dir}: no queries there; pass the run_dir of an `rl4rec evaluate` zero-shot or policy run"
        )
    if not isinstance(records[0]["query"], str):
        raise SystemExit(
            f"{args.run_dir} holds several sampled queries per user (--num_queries); the variants rewrite one "
            "query each: pass a run without --num_queries"
        )
    identity = json.loads((args.run_dir / EVAL_CONFIG_FILE).read_text())["identity"]
    dataset = load_dataset(args.dataset, args.data_dir)
    split = identity["split"]
    history = {e.user_id: list(e.history) for e in leave_one_out(dataset.sequences, split).examples}
    histories = [history[r["user_id"]] for r in records]
    targets = [r["target"] for r in records]
    service = RetrievalService([args.dataset], data_dir=args.data_dir, show_progress=False)
    candidates = candidate_counts(records)
    if candidates is None:
        raise SystemExit(f"{args.run_dir} predates candidate counts (no AUC); rerun that evaluation")
    stored = np.asarray([r["rank"] for r in records])
    table = {}
    print(f"{len(records)} users ({args.dataset}, {split}); paired with the queries as generated (B minus A)")
    print("| variant | AUC | NDCG@10 | ΔAUC [95% CI] | ΔNDCG@10 [95% CI] |\n|---|---|---|---|---|")
    for name, texts in variants([r["query"] for r in records], histories, dataset.item_text).items():
        ranks = np.asarray(service.rank(texts, args.dataset, targets, histories))
        if name == "as generated" and not np.array_equal(ranks, stored):
            raise SystemExit(
                "the stored ranks differ from this ranking: the run used other settings (fusion?)"
            )
        pair = paired_difference(stored, ranks, ks=[10], candidates=candidates)
        table[name] = {m: pair[m] for m in ("auc", "ndcg@10")}
        auc, ndcg = pair["auc"], pair["ndcg@10"]
        print(
            f"| {name} | {auc['b']:.4f} | {ndcg['b']:.4f} | {auc['diff']:+.4f} [{auc['ci95'][0]:+.4f}, "
            f"{auc['ci95'][1]:+.4f}] | {ndcg['diff']:+.4f} [{ndcg['ci95'][0]:+.4f}, {ndcg['ci95'][1]:+.4f}] |"
        )
    if args.output:
        args.output.write_text(
            json.dumps({"run_dir": str(args.run_dir), "users": len(records), "rows": table}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
