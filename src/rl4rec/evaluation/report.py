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
from rl4rec.evaluation.plots import methods_chart, training_curves
from rl4rec.evaluation.run_files import RESULTS_FILE, read_ranks
from rl4rec.io import atomic_write_text
from rl4rec.training.run_log import METRICS_FILE

TABLE_METRICS = ("ndcg@10", "hit@10", "mrr@10", "ndcg@20", "hit@20", "auc")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line of a run that is still writing
    return out


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
        return f"- `{name}`: {len(records)} steps, no reward logged"
    n = min(10, len(rewards))
    first, last = sum(rewards[:n]) / n, sum(rewards[-n:]) / n
    seconds = sum(r.get("time/step", 0.0) or 0.0 for r in records)
    return (f"- `{name}`: {records[-1]['step']} steps, mean reward of first {n} steps {first:.4f} -> last {n} "
            f"{last:.4f}; {seconds / 60:.1f} min of step time")  # fmt: skip


def _examples(label: str, run_dir: Path, n: int) -> list[str]:
    records = [r for r in read_ranks(run_dir).values() if "query" in r]
    if not records:
        return []
    records.sort(key=lambda r: r["rank"])
    lines = [f"### {label}", "", "| | rank | generated query | target item |", "|---|---|---|---|"]

    def cell(text: str) -> str:
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
            training[d.name] = _read_jsonl(d / METRICS_FILE)
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
