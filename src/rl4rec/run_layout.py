"""The names of everything a run directory holds, in one place (training and evaluation runs alike).

A training run (``--checkpoint_dir``) holds the resolved config, the logs, ``checkpoint_step_N/`` folders,
``checkpoint_best/`` and ``checkpoint_final/``, and the held-out evaluations; an evaluation run
(``rl4rec evaluate --run_dir``) holds its protocol, its ranks and its results. Every module that reads or
writes one of these names imports it from here, so evaluation never needs training for a file name.
"""

from __future__ import annotations

#: Training runs.
RUN_CONFIG = "run_config.json"
METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
STEP_PREFIX = "checkpoint_step_"
FINAL_NAME = "checkpoint_final"
BEST_NAME = "checkpoint_best"
BEST_FILE = "best.json"
HELDOUT_DIR = "heldout"

#: Evaluation runs.
EVAL_CONFIG_FILE = "eval_config.json"
RANKS_FILE = "ranks.jsonl"
RESULTS_FILE = "results.json"
