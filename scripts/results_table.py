"""Print markdown tables of evaluation results and paired comparisons (the tables in docs/RESULTS.md).

python scripts/results_table.py outputs/results/ml-100k/*.json          # one row per result file
python scripts/results_table.py --stem outputs/results/beauty/{last-item,sft-fusion}.json   # rows named by file
python scripts/results_table.py --paired outputs/results/beauty/*-vs-*.json                 # B minus A tables
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("ndcg@10", "hit@10", "mrr@10", "ndcg@20", "auc")
PAIRED = ("ndcg@10", "hit@10", "mrr@10", "auc")


def _ci(m: dict) -> str:
    return f"{m['mean']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"


def results(paths: list[str], stem: bool) -> None:
    print("| method | users | " + " | ".join(f"{c} [95% CI]" for c in COLUMNS) + " | median rank |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    for path in paths:
        r = json.loads(Path(path).read_text())
        if "metrics" not in r or "method" not in r:
            continue  # a comparison file
        name = (
            Path(path).stem
            if stem
            else (r["method"] if not r.get("model") else f"{r['method']} `{r['model']}`")
        )
        cells = [_ci(r["metrics"][c]) if c in r["metrics"] else "-" for c in COLUMNS]
        print(f"| {name} | {r['num_users']} | " + " | ".join(cells) + f" | {r['median_rank']:.0f} |")


def paired(paths: list[str]) -> None:
    print(
        "| B minus A | shared users | "
        + " | ".join(f"Δ{c} [95% CI]" for c in PAIRED)
        + " | users B better / A better |"
    )
    print("|---|---|" + "---|" * (len(PAIRED) + 1))
    for path in paths:
        r = json.loads(Path(path).read_text())
        if "b_better_users" not in r:
            continue
        b_name, _, a_name = Path(path).stem.partition("-vs-")
        cells = []
        for c in PAIRED:
            m = r["metrics"].get(c)
            if m is None:
                cells.append("-")
                continue
            text = f"{m['diff']:+.4f} [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}]"
            cells.append(f"**{text}**" if m["ci95"][0] > 0 or m["ci95"][1] < 0 else text)
        better = f"{r['b_better_users']} / {r['a_better_users']}"
        print(f"| {b_name} − {a_name} | {r['num_users']} | " + " | ".join(cells) + f" | {better} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--stem", action="store_true", help="name result rows by file name")
    p.add_argument("--paired", action="store_true", help="the files are `rl4rec compare --output` files")
    a = p.parse_args()
    paired(a.files) if a.paired else results(a.files, a.stem)
