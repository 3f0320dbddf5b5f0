"""``rl4rec report RUN_DIR...``: the files a user opens first after a run.

Accepts training run directories (``metrics.jsonl``) and evaluation run directories
(``results.json``) in any mix, and writes ``report.md`` with training curves, a table of methods
with confidence intervals, and the best and worst generated queries with their target and rank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rl4rec.errors import DataError
from rl4rec.evaluation.plots import heldout_curves, methods_chart, training_curves
from rl4rec.evaluation.run_files import read_ranks
from rl4rec.io import atomic_write_text, read_jsonl
from rl4rec.run_layout import METRICS_FILE, RESULTS_FILE

TABLE_METRICS = ("ndcg@10", "hit@10", "mrr@10", "ndcg@20", "hit@20", "auc")


def _label(result: dict[str, Any]) -> str:
    model = result.get("model")
    name = (
        result["method"]
        if not model
        else f"{result['method']} ({Path(model.rstrip('/')).parent.name or model})"
    )
    return f"{name} [{result['dataset']}/{result['split']}, {result['num_users']} users]"


def _ci(m: dict[str, Any]) -> str:
    return f"{m['mean']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"


def _training_summary(name: str, records: list[dict[str, Any]]) -> str:
    rewards = [r["reward"] for r in records if isinstance(r.get("reward"), (int, float))]
    if not rewards:
        return f"- `{name}`: {len(records)} records, no reward logged"
    n = min(10, len(rewards))
    first, last = sum(rewards[:n]) / n, sum(rewards[-n:]) / n
    seconds = sum(r.get("time/step", 0.0) or 0.0 for r in records)
    return (f"- `{name}`: {records[-1]['step']} steps, mean reward of first {n} steps {first:.4f} -> last {n} "
            f"{last:.4f}; {seconds / 60:.1f} min of step time")  # fmt: skip


def heldout_table(records: list[dict[str, Any]]) -> list[str]:
    """The held-out evaluations of one run as markdown lines (empty without them).

    Each row: AUC and NDCG@10 of the validation users, and the paired difference to step 0 with its
    95 % interval; the last line says what the evaluations cost next to the training steps.
    """
    evals = [r for r in records if isinstance(r.get("eval/auc"), (int, float))]
    if not evals:
        return []

    def delta(r: dict[str, Any], key: str) -> str:
        if f"{key}_vs_step0" not in r:
            return "-"
        return f"{r[f'{key}_vs_step0']:+.4f} [{r[f'{key}_vs_step0_lo']:+.4f}, {r[f'{key}_vs_step0_hi']:+.4f}]"

    fused = "eval/fused/auc" in evals[0]
    head = "| step | AUC | AUC − step 0 | NDCG@10 | NDCG@10 − step 0 |" + (
        " fused AUC | fused AUC − step 0 |" if fused else ""
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in evals:
        row = f"| {r['step']} | {r['eval/auc']:.4f} | {delta(r, 'eval/auc')} | {r['eval/ndcg@10']:.4f} | {delta(r, 'eval/ndcg@10')} |"
        if fused:
            row += f" {r['eval/fused/auc']:.4f} | {delta(r, 'eval/fused/auc')} |"
        lines.append(row)
    eval_s = sum(float(r.get("eval/seconds", 0.0)) for r in evals)
    train_s = sum(float(r.get("time/step", 0.0) or 0.0) for r in records if "eval/auc" not in r)
    share = f", {100 * eval_s / (eval_s + train_s):.0f} % of the run" if train_s else ""
    lines.append("")
    lines.append(
        f"{len(evals)} evaluations of {int(evals[0]['eval/users'])} users took {eval_s / 60:.1f} min{share}."
    )
    return lines


def _examples(label: str, run_dir: Path, n: int) -> list[str]:
    records = [r for r in read_ranks(run_dir).values() if "query" in r]
    if not records:
        return []
    records.sort(key=lambda r: r["rank"])
    lines = [f"### {label}", "", "| | rank | generated query | target item |", "|---|---|---|---|"]

    def cell(text: str | list[str]) -> str:
        if not isinstance(text, str):  # several sampled queries (--num_queries): the first, and how many more
            text = f"{text[0]} (+{len(text) - 1} more)" if len(text) > 1 else text[0]
        return text.replace("|", "\\|").replace("\n", " ")[:300]

    for tag, chosen in (("best", records[:n]), ("worst", records[-n:][::-1])):
        for r in chosen:
            lines.append(
                f"| {tag} | {r['rank']} | {cell(r['query'])} | {cell(r.get('target_text', str(r['target'])))} |"
            )
    return [*lines, ""]


def write_report(run_dirs: list[str | Path], output_dir: str | Path, examples: int = 3) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    training: dict[str, list[dict[str, Any]]] = {}
    evals: list[tuple[Path, dict[str, Any]]] = []
    for d in map(Path, run_dirs):
        found = False
        if (d / METRICS_FILE).is_file():
            training[d.name] = read_jsonl(d / METRICS_FILE)
            found = True
        if (d / RESULTS_FILE).is_file():
            evals.append((d, json.loads((d / RESULTS_FILE).read_text(encoding="utf-8"))))
            found = True
        if not found:
            raise DataError(
                f"{d}: neither a training run ({METRICS_FILE}) nor an evaluation ({RESULTS_FILE})."
            )
    md = ["# rl4rec report", ""]
    if training:
        md += ["## Training", ""]
        md += [_training_summary(name, recs) for name, recs in training.items()]
        curves = training_curves(training, out / "training_curves.png")
        if curves:
            md += ["", f"![training curves: {', '.join(curves)}](training_curves.png)", ""]
        tables = {name: heldout_table(recs) for name, recs in training.items()}
        if any(tables.values()) and heldout_curves(training, out / "heldout_curves.png"):
            md += [
                "## Held-out users during training (greedy queries, paired with step 0, 95% bootstrap CI)",
                "",
            ]
            for name, table in tables.items():
                if table:
                    md += [f"`{name}`:", "", *table, ""]
            md += ["![held-out curves beside the training reward](heldout_curves.png)", ""]
    if evals:
        rows = [{"label": _label(r), "metrics": r["metrics"]} for _, r in evals]
        md += ["## Methods (held-out users, full ranking, history masked, 95% bootstrap CI)", ""]
        md += ["| method | " + " | ".join(TABLE_METRICS) + " | median rank |"]
        md += ["|---|" + "---|" * (len(TABLE_METRICS) + 1)]
        for (_, r), row in zip(evals, rows, strict=True):
            cells = [_ci(r["metrics"][m]) if m in r["metrics"] else "-" for m in TABLE_METRICS]
            md.append(f"| {row['label']} | " + " | ".join(cells) + f" | {r.get('median_rank', '-')} |")
        methods_chart(rows, "ndcg@10", out / "methods_ndcg10.png")
        protocol = evals[0][1]["protocol"]
        embedder = next((r["protocol"]["embedder"] for _, r in evals if r["protocol"].get("embedder")), None)
        md += ["", f"Protocol: {protocol['split']} split, full catalogue of {protocol['n_items']} items, history "
               f"masked, ties {protocol['ties']}; embedder `{embedder}` (text methods).", "",
               "![NDCG@10 by method](methods_ndcg10.png)", ""]  # fmt: skip
        example_lines = [line for d, r in evals for line in _examples(_label(r), d, examples)]
        if example_lines:
            md += ["## Example generations (best and worst ranks)", "", *example_lines]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path
