"""``rl4rec evaluate | compare | report``: argparse front ends over the evaluation package."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rl4rec.evaluation.config import DEFAULT_LLM_USERS, METHODS, EvalConfig


def _ks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 5,10,20, got {text!r}"
        ) from None


def _num_users(text: str) -> int:
    if text == "all":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of users or 'all', got {text!r}") from None


def evaluate_parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    p = argparse.ArgumentParser(
        prog="rl4rec evaluate",
        description="Rank each held-out target over the full catalogue (history masked) and report "
        "Hit/NDCG/MRR with 95%% bootstrap intervals. Resumable: rerun the same command to continue.",
    )
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--data_dir", default=d.data_dir)
    p.add_argument("--split", default=d.split, choices=("valid", "test"))
    p.add_argument("--method", default=d.method, choices=METHODS)
    p.add_argument(
        "--model", default=None, help="policy for zero-shot/policy: HF id, folder (checkpoint), .gguf"
    )
    p.add_argument("--num_users", type=_num_users, default=None,
                   help=f"seeded user sample ('all' or 0 = all; default: all for baselines, "
                        f"{DEFAULT_LLM_USERS} for LLM methods)")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help="user sample, random baseline, bootstrap")
    p.add_argument("--ks", type=_ks, default=d.ks, help="cut-offs, e.g. 5,10,20")
    p.add_argument("--history_n", type=int, default=d.history_n, help="items averaged by history-mean")
    p.add_argument("--sasrec_epochs", type=int, default=d.sasrec_epochs, help="sasrec: most training epochs")
    p.add_argument("--sasrec_patience", type=int, default=d.sasrec_patience,
                   help="sasrec: stop after this many epochs without better validation NDCG@10")  # fmt: skip
    p.add_argument("--sasrec_dropout", type=float, default=d.sasrec_dropout)
    p.add_argument("--sasrec_seed", type=int, default=d.sasrec_seed, help="sasrec: init and batch order")
    p.add_argument("--max_new_tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy (default)")
    p.add_argument("--top_p", type=float, default=d.top_p)
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="prompts per generate call")
    p.add_argument("--backend", default=d.backend, choices=("auto", "hf", "vllm"),
                   help="auto = vLLM when installed and a GPU is present, else HF generate")  # fmt: skip
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--max_length", type=int, default=None, help="prompt token budget (default: as trained, or 256)"
    )
    p.add_argument("--max_history_items", type=int, default=None, help="default: as trained, or 10")
    p.add_argument("--prompt_order", default=None, choices=("oldest_first", "recent_first"))
    p.add_argument(
        "--embedder", default=d.embedder, help="sentence-embedding model (default: all-MiniLM-L6-v2)"
    )
    p.add_argument("--fusion", default=None,
                   help="fusion file from `rl4rec tune-fusion`: rank by text + history + co-occurrence "
                        "(last-item, zero-shot, policy; history-fusion uses its history weights)")  # fmt: skip
    p.add_argument("--queries_from", default=None,
                   help="zero-shot/policy: re-rank the query texts of this earlier evaluate run (same split "
                        "and users) instead of generating them again, e.g. to add --fusion")  # fmt: skip
    p.add_argument("--bootstrap_samples", type=int, default=d.bootstrap_samples)
    p.add_argument("--run_dir", default=None, help="default: outputs/eval/DATASET-SPLIT-METHOD")
    p.add_argument("--output", default=None, help="also write the result JSON here")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in --run_dir")
    return p


def evaluate_main(argv: list[str]) -> int:
    from rl4rec.evaluation.runner import run_evaluation

    args = vars(evaluate_parser().parse_args(argv))
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    config = EvalConfig(**{k: v for k, v in args.items() if k in fields})
    result = run_evaluation(config)
    m = result["metrics"]
    print(json.dumps({"method": result["method"], "num_users": result["num_users"],
                      **{k: round(m[k]["mean"], 4) for k in m if k.endswith("@10")},
                      "run_dir": result["run"]["run_dir"]}))  # fmt: skip
    return 0


def compare_main(argv: list[str]) -> int:
    from rl4rec.evaluation.compare import compare_runs, format_comparison

    p = argparse.ArgumentParser(
        prog="rl4rec compare", description="Paired comparison (B minus A) on shared users."
    )
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--ks", type=_ks, default=(5, 10, 20))
    p.add_argument("--bootstrap_samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write the comparison JSON here")
    a = p.parse_args(argv)
    result = compare_runs(a.run_a, a.run_b, a.ks, a.bootstrap_samples, a.seed, a.output)
    print(format_comparison(result))
    return 0


def report_main(argv: list[str]) -> int:
    from rl4rec.evaluation.report import write_report

    p = argparse.ArgumentParser(
        prog="rl4rec report", description="report.md + plots from training/eval runs."
    )
    p.add_argument("run_dirs", nargs="+", help="training run directories and/or evaluation run directories")
    p.add_argument("--output_dir", default="outputs/report")
    p.add_argument("--examples", type=int, default=3, help="best and worst generations shown per LLM run")
    a = p.parse_args(argv)
    path = write_report(a.run_dirs, a.output_dir, a.examples)
    print(f"report: {path}")
    return 0
