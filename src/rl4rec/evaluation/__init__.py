"""Evaluation on held-out users: baselines, LLM methods, bootstrap statistics, comparison, report."""

from rl4rec.evaluation.config import BASELINE_METHODS, LLM_METHODS, METHODS, EvalConfig

__all__ = ["BASELINE_METHODS", "LLM_METHODS", "METHODS", "EvalConfig"]
