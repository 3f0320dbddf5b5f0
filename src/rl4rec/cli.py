"""The ``rl4rec`` command: one thin entry per subcommand, dispatched to the stage that owns it.

Each handler takes the remaining argv and parses it itself (typed dataclasses or argparse), so
``rl4rec <command> --help`` shows that command's options. Errors meant for the user
(:class:`~rl4rec.errors.Rl4recError`) print as one ``Error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable

from rl4rec.errors import Rl4recError

#: command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "prepare": (
        "rl4rec.data.cli",
        "prepare_main",
        "write a dataset in the P5 layout (ml-100k, RecBole, raw Amazon)",
    ),
    "stats": ("rl4rec.data.cli", "stats_main", "print dataset statistics as JSON"),
    "prompts": (
        "rl4rec.training.prompts_cli",
        "prompts_main",
        "show prompts; `prompts preference` writes a user-preference file",
    ),
    "serve": ("rl4rec.retrieval.cli", "serve_main", "start (or --stop) the Ray RetrievalService actor"),
    "sft": (
        "rl4rec.training.sft",
        "sft_main",
        "supervised warm start: the RL prompt -> the next item's text",
    ),
    "train": ("rl4rec.training.cli", "train_main", "train a policy with GRPO / RLOO / PPO"),
    "evaluate": ("rl4rec.evaluation.cli", "evaluate_main", "evaluate a method on held-out users"),
    "tune-fusion": (
        "rl4rec.evaluation.tune_fusion",
        "tune_fusion_main",
        "choose fusion weights (text + history + co-occurrence) on the validation split",
    ),
    "headroom": (
        "rl4rec.evaluation.headroom",
        "headroom_main",
        "best-of-K of the policy's own samples on held-out users: is there anything for RL to find?",
    ),
    "compare": ("rl4rec.evaluation.cli", "compare_main", "paired comparison of two evaluation runs"),
    "report": ("rl4rec.evaluation.cli", "report_main", "write report.md and plots for run directories"),
    "demo": ("rl4rec.demo", "demo_main", "the main job on built-in data: prepare, train, evaluate, report"),
}


def _usage() -> str:
    lines = ["usage: rl4rec <command> [options]   (rl4rec <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def setup_logging() -> None:
    level = os.environ.get("RL4REC_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def handler(command: str) -> Callable[[list[str]], int | None]:
    module, func, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from rl4rec import __version__

        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"Error: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    setup_logging()
    try:
        code = handler(command)(rest)
    except Rl4recError as exc:
        print(f"Error: {exc}" if not str(exc).startswith("Error:") else str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
