"""Which candidate does a candidate-aware policy's query point at? The position distribution of the named candidate.

A policy that reads the recall stage's top K (``--candidates K``) and only copies candidate #1 adds nothing to the
recall stage; one that names the right candidate lifts it to the top. This reads an ``rl4rec evaluate`` run of a
candidate-aware policy (its ``ranks.jsonl`` and the recall settings in its ``eval_config.json``), rebuilds each
user's candidate list with the same recall stage (cached), and takes as the *named* candidate the one whose text is
most similar to the query (the retrieval service's cosine, the score the text contributes). It prints:

- how often the named candidate is at each recall position (1 = the recall stage's first);
- among users whose target is a candidate: how often the named one is the target, against "always #1" (how often
  the target is the recall stage's first) and a uniform guess (1 / K);
- how often the query's text contains the named candidate's title verbatim (copying), and the mean similarity.

    python scripts/named_candidates.py outputs/results/beauty/cand-sft --data_dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from rl4rec.data import load_dataset
from rl4rec.data.splits import leave_one_out
from rl4rec.evaluation.run_files import read_queries
from rl4rec.retrieval.embedder import EmbedderConfig
from rl4rec.retrieval.fusion import for_split
from rl4rec.retrieval.recall import RecallStage, recall_fusion
from rl4rec.retrieval.shared import local_service

#: Users whose queries are scored against the catalogue per call (bounds the [chunk, n_items] matrix).
CHUNK = 256
#: Where a rendered item text's first field starts (". Brand: ", ". Year: ", ...; "Dr. Scholl's" is not one).
FIELD = re.compile(r"\. (?=[A-Z][a-z]+: )")


def title(item_text: str) -> str:
    """The title part of a rendered item text ("Title. Brand: ..." / "Title. Year: ..."), lower-cased."""
    return FIELD.split(item_text, maxsplit=1)[0].lower()


def recall_settings(ident: dict) -> tuple[int, str | None]:
    """(K, recall fusion file) of an evaluation run: a policy run keeps them in its prompt settings, the
    ``first-candidate`` baseline under ``candidates``."""
    prompt = ident.get("prompt") or {}
    if prompt.get("candidates"):
        return int(prompt["candidates"]), prompt.get("candidate_fusion")
    if ident.get("candidates"):
        return int(ident["candidates"]["k"]), ident["candidates"].get("fusion")
    raise SystemExit(
        "not a candidate-aware run: its eval_config.json names no candidates (pass the text-only run of "
        "a policy trained with --candidates, not its --queries_from fused run)"
    )


def named_positions(sims: np.ndarray) -> np.ndarray:
    """0-based position of each row's most similar candidate (ties: the earlier position)."""
    return np.argmax(sims, axis=1)


def summary(positions: np.ndarray, target_pos: np.ndarray, k: int) -> dict[str, object]:
    """``positions``: the named candidate's 0-based position per user; ``target_pos``: the target's, or -1."""
    hits = target_pos >= 0
    counts = Counter(int(p) for p in positions)
    return {
        "users": len(positions),
        "named_position_share": {str(p + 1): counts.get(p, 0) / max(len(positions), 1) for p in range(k)},
        "users_with_target_among_candidates": int(hits.sum()),
        "named_is_target": float(np.mean(positions[hits] == target_pos[hits])) if hits.any() else None,
        "always_first_is_target": float(np.mean(target_pos[hits] == 0)) if hits.any() else None,
        "uniform_guess": 1.0 / k,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="an `rl4rec evaluate` run of a candidate-aware policy")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--output", help="write the summary as JSON here too")
    args = parser.parse_args(argv)

    saved = json.loads((Path(args.run_dir) / "eval_config.json").read_text(encoding="utf-8"))
    ident = saved["identity"]
    k, recall_file = recall_settings(ident)
    name, split = ident["dataset"], ident["split"]
    _, queries = read_queries(args.run_dir, name, split)
    if any(isinstance(q, list) for q in queries.values()):
        raise SystemExit(f"{args.run_dir}: several queries per user (--num_queries); pass a one-query run")
    dataset = load_dataset(name, args.data_dir)
    by_user = {e.user_id: e for e in leave_one_out(dataset.sequences, split).examples}
    users = sorted(u for u in queries if u in by_user)
    examples = [by_user[u] for u in users]
    # the run's own embedder: the recall stage's history term and the query's similarity both use its item vectors
    embedder = EmbedderConfig(model_name=saved.get("config", {}).get("embedder", "default"))
    service = local_service(name, args.data_dir, embedder)
    stage = RecallStage(service, name, for_split(recall_fusion(recall_file), split), k)
    lists = np.array(stage.candidates(examples)) - 1  # 0-based item columns, recall order

    sims = np.empty(lists.shape, dtype=np.float32)
    for start in range(0, len(users), CHUNK):
        part = slice(start, start + CHUNK)
        scores = service.get_scores([queries[u] for u in users[part]], name)
        sims[part] = np.take_along_axis(scores, lists[part], axis=1)
    positions = named_positions(sims)
    targets = np.array([e.target - 1 for e in examples])
    target_pos = np.array(
        [int(np.flatnonzero(row == t)[0]) if t in row else -1 for row, t in zip(lists, targets, strict=True)]
    )
    titles = [title(dataset.item_texts[lists[i, p]]) for i, p in enumerate(positions)]
    out = summary(positions, target_pos, k) | {
        "run_dir": args.run_dir,
        "split": split,
        "k": k,
        "copies_named_title": float(
            np.mean([t in queries[u].lower() for t, u in zip(titles, users, strict=True)])
        ),
        "mean_similarity_to_named": float(sims.max(axis=1).mean()),
    }
    print(f"{args.run_dir}: {out['users']} {split} users, top {k} candidates")
    print("named candidate's recall position: " + "  ".join(
        f"#{p} {s:.0%}" for p, s in out["named_position_share"].items()))  # fmt: skip
    if out["named_is_target"] is not None:
        print(f"target among the candidates for {out['users_with_target_among_candidates']} users: the named one is the "
              f"target for {out['named_is_target']:.1%} (always #1: {out['always_first_is_target']:.1%}, "
              f"uniform guess: {out['uniform_guess']:.1%})")  # fmt: skip
    print(f"queries containing the named candidate's title: {out['copies_named_title']:.1%}; "
          f"mean cosine to it: {out['mean_similarity_to_named']:.3f}")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
