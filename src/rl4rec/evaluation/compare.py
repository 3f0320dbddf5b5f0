"""``rl4rec compare RUN_A RUN_B``: paired differences on the users both runs evaluated.

Two methods measured on the same users differ by much less noise than two independent means, so
the comparison is per user (B minus A) with a paired bootstrap interval. Runs on different datasets
or splits are refused rather than silently compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.run_files import candidate_counts, read_ranks
from rl4rec.io import atomic_write_json
from rl4rec.run_layout import EVAL_CONFIG_FILE as CONFIG_FILE
from rl4rec.statistics import paired_difference


def _identity(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: {run_dir} is not an evaluation run directory (see `rl4rec evaluate`)."
        )
    return json.loads(path.read_text(encoding="utf-8"))["identity"]


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    ks: tuple[int, ...] = (5, 10, 20),
    samples: int = 1000,
    seed: int = 0,
    output: str | Path | None = None,
) -> dict[str, Any]:
    a_dir, b_dir = Path(run_a), Path(run_b)
    ident_a, ident_b = _identity(a_dir), _identity(b_dir)
    for key in ("dataset", "split"):
        if ident_a.get(key) != ident_b.get(key):
            raise ConfigError(
                f"cannot compare runs on different {key}s: {ident_a.get(key)!r} ({a_dir}) vs "
                f"{ident_b.get(key)!r} ({b_dir})."
            )
    ranks_a, ranks_b = read_ranks(a_dir), read_ranks(b_dir)
    users = sorted(set(ranks_a) & set(ranks_b))
    if not users:
        raise DataError(f"{a_dir} and {b_dir} share no evaluated users; evaluate both with the same --seed.")
    for user in users:
        if ranks_a[user]["target"] != ranks_b[user]["target"]:
            raise DataError(f"user {user} has different targets in {a_dir} and {b_dir}; the data changed.")
    ra = np.array([ranks_a[u]["rank"] for u in users])
    rb = np.array([ranks_b[u]["rank"] for u in users])
    result = {
        "a": {"run_dir": str(a_dir), "method": ident_a.get("method"), "model": ident_a.get("model")},
        "b": {"run_dir": str(b_dir), "method": ident_b.get("method"), "model": ident_b.get("model")},
        "dataset": ident_a.get("dataset"),
        "split": ident_a.get("split"),
        "num_users": len(users),
        "users_only_in_a": len(set(ranks_a) - set(ranks_b)),
        "users_only_in_b": len(set(ranks_b) - set(ranks_a)),
        "b_better_users": int((rb < ra).sum()),
        "a_better_users": int((ra < rb).sum()),
        "bootstrap": {"samples": samples, "seed": seed, "interval": "95% paired percentile"},
        "metrics": paired_difference(
            ra, rb, ks, samples, seed, candidate_counts([ranks_a[u] for u in users])
        ),
    }
    if output:
        atomic_write_json(output, result)
    return result


def format_comparison(result: dict[str, Any]) -> str:
    a, b = result["a"]["method"], result["b"]["method"]
    lines = [
        f"{b} minus {a} on {result['num_users']} shared users ({result['dataset']}, {result['split']}):",
        f"{'metric':<10} {'A':>8} {'B':>8} {'B-A':>9}  95% CI",
    ]
    for name, m in result["metrics"].items():
        lo, hi = m["ci95"]
        lines.append(f"{name:<10} {m['a']:>8.4f} {m['b']:>8.4f} {m['diff']:>+9.4f}  [{lo:+.4f}, {hi:+.4f}]")
    return "\n".join(lines)
