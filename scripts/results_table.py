"""Print a markdown table of evaluation results (the tables in docs/RESULTS.md).

python scripts/results_table.py outputs/results/ml-100k/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("ndcg@10", "hit@10", "mrr@10", "ndcg@20", "auc")


def main(paths: list[str]) -> None:
    print("| method | users | " + " | ".join(f"{c} [95% CI]" for c in COLUMNS) + " | median rank |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    for path in paths:
        r = json.loads(Path(path).read_text())
        if "metrics" not in r or "method" not in r:
            continue  # a comparison file
        name = r["method"] if not r.get("model") else f"{r['method']} `{r['model']}`"
        cells = [f"{r['metrics'][c]['mean']:.4f} [{r['metrics'][c]['ci95'][0]:.4f}, {r['metrics'][c]['ci95'][1]:.4f}]"
                 if c in r["metrics"] else "-" for c in COLUMNS]  # fmt: skip
        print(f"| {name} | {r['num_users']} | " + " | ".join(cells) + f" | {r['median_rank']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
