"""Recompute the popularity and last-item baselines without rl4rec's ranking code, as a cross-check.

``rl4rec evaluate`` must agree with this within ±0.003 NDCG@10 (issue 5's acceptance). Everything
that decides a number is re-implemented here with plain numpy: reading the sequences, the
leave-one-out split, training-interaction counts, history masking, pessimistic ties and NDCG.
Only the item *text* rendering (part of the protocol's definition) and the sentence-transformers
model are shared.

    python scripts/independent_baselines.py --dataset beauty --data_dir data \
        --compare outputs/eval/beauty-test-popularity outputs/eval/beauty-test-last-item
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def read_sequences(path: Path) -> dict[int, list[int]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts:
            out[int(parts[0])] = [int(x) for x in parts[1:]]
    return out


def pessimistic_ranks(scores: np.ndarray, targets: np.ndarray, histories: list[list[int]]) -> np.ndarray:
    ranks = np.empty(len(targets), dtype=np.int64)
    for i, (row, target, history) in enumerate(zip(scores, targets, histories, strict=True)):
        keep = np.ones(row.shape[0], dtype=bool)
        masked = np.array([h for h in set(history) if h != target], dtype=np.int64)
        if masked.size:
            keep[masked - 1] = False
        ranks[i] = int(((row >= row[target - 1]) & keep).sum())
    return ranks


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean([1.0 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--compare", nargs="*", default=[], help="rl4rec evaluation run dirs to check against")
    p.add_argument("--output", default=None)
    args = p.parse_args()

    sequences = read_sequences(Path(args.data_dir) / args.dataset / "sequential_data.txt")
    n_items = max(i for s in sequences.values() for i in s)
    test = [(u, s[:-1], s[-1]) for u, s in sorted(sequences.items()) if len(s) >= 2]
    histories = [h for _, h, _ in test]
    targets = np.array([t for _, _, t in test])

    counts = np.zeros(n_items, dtype=np.float64)
    for s in sequences.values():
        for item in s[:-2]:  # training interactions: everything before the validation target
            counts[item - 1] += 1
    pop_ranks = pessimistic_ranks(np.broadcast_to(counts, (len(test), n_items)), targets, histories)
    results = {"popularity": ndcg_at(pop_ranks, args.k)}

    from sentence_transformers import SentenceTransformer

    from rl4rec.data.dataset import load_dataset  # the item-text rendering is part of the protocol
    from rl4rec.retrieval.embedder import resolve_embedder_path

    dataset = load_dataset(args.dataset, args.data_dir)
    model = SentenceTransformer(resolve_embedder_path("default"), device="cpu")
    model.max_seq_length = 256
    items = model.encode(
        dataset.item_texts, batch_size=128, normalize_embeddings=True, show_progress_bar=True
    )
    # MiniLM uses no query/document prefixes, so the query made of an item's text is that item's vector:
    # encode each distinct text once (the evaluation encodes one query per user).
    queries = items[[h[-1] - 1 for h in histories]]
    ranks = np.concatenate([
        pessimistic_ranks(queries[i : i + 512] @ items.T, targets[i : i + 512], histories[i : i + 512])
        for i in range(0, len(test), 512)
    ])  # fmt: skip
    results["last-item"] = ndcg_at(ranks, args.k)

    report = {"dataset": args.dataset, "users": len(test), "metric": f"ndcg@{args.k}", "independent": results}
    for run in args.compare:
        res = json.loads((Path(run) / "results.json").read_text())
        mine = res["metrics"][f"ndcg@{args.k}"]["mean"]
        ref = results.get(res["method"])
        if ref is not None:
            report.setdefault("rl4rec", {})[res["method"]] = {"ndcg": mine, "abs_diff": abs(mine - ref),
                                                              "users": res["num_users"]}  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
