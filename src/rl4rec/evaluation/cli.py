"""``rl4rec evaluate | compare | report``: each command's settings dataclass, parsed by :mod:`rl4rec.config_cli`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rl4rec.config_cli import comma_ints, opt, parse_config
from rl4rec.evaluation.config import EvalConfig


def evaluate_main(argv: list[str]) -> int:
    from rl4rec.evaluation.runner import run_evaluation

    config = parse_config(
        EvalConfig,
        argv,
        "rl4rec evaluate",
        "Rank each held-out target over the full catalogue (history masked) and report Hit/NDCG/MRR with 95%% "
        "bootstrap intervals. Resumable: rerun the same command to continue.",
    )
    result = run_evaluation(config)
    m = result["metrics"]
    print(json.dumps({"method": result["method"], "num_users": result["num_users"],
                      **{k: round(m[k]["mean"], 4) for k in m if k.endswith("@10")},
                      "run_dir": result["run"]["run_dir"]}))  # fmt: skip
    return 0


@dataclass
class CompareConfig:
    """``rl4rec compare RUN_A RUN_B``."""

    run_a: str = opt(help="evaluation run directory A (the reference)", positional=True)
    run_b: str = opt(help="evaluation run directory B (differences are B minus A)", positional=True)
    ks: tuple[int, ...] = opt((5, 10, 20), "cut-offs, e.g. 5,10,20", parse=comma_ints)
    bootstrap_samples: int = opt(1000, "paired bootstrap resamples")
    seed: int = opt(0, "bootstrap seed")
    output: str | None = opt(None, "write the comparison JSON here")


@dataclass
class ReportConfig:
    """``rl4rec report RUN_DIR...``."""

    run_dirs: list[str] = opt(  # noqa: RUF009 (opt returns a dataclasses.field)
        help="training run directories and/or evaluation run directories", positional=True, nargs="+"
    )
    output_dir: str = opt("outputs/report", "where report.md and the plots are written")
    examples: int = opt(3, "best and worst generations shown per LLM run")


def compare_main(argv: list[str]) -> int:
    from rl4rec.evaluation.compare import compare_runs, format_comparison

    a = parse_config(CompareConfig, argv, "rl4rec compare", "Paired comparison (B minus A) on shared users.")
    result = compare_runs(a.run_a, a.run_b, tuple(a.ks), a.bootstrap_samples, a.seed, a.output)
    print(format_comparison(result))
    return 0


def report_main(argv: list[str]) -> int:
    from rl4rec.evaluation.report import write_report

    a = parse_config(ReportConfig, argv, "rl4rec report", "report.md + plots from training/eval runs.")
    path = write_report(a.run_dirs, a.output_dir, a.examples)
    print(f"report: {path}")
    return 0
