"""Held-out evaluation while training runs: the curve that tells learning from noise.

The training reward is measured on the users being trained on, with sampled completions; it rises
when the policy memorises those users or merely gets luckier. What this library promises is better
queries for *other* users. So at step 0, every ``--eval_steps`` steps and at the end, the live policy
writes one greedy query for a fixed, seeded sample of validation users, and each query is ranked
exactly as ``rl4rec evaluate --method policy`` ranks it: the same prompt builder with the run's prompt
settings, the same HF generator (greedy, the run's ``--max_new_tokens``), the same retrieval service
ranking over the full catalogue with the history masked, text only and, with ``--eval_fusion``,
fused. tests/test_heldout.py checks that step 0 reproduces ``rl4rec evaluate``'s ranks.

Each evaluation writes ``heldout/step_N.jsonl`` (user, target, rank, fused rank, query) in the run
directory and returns ``eval/...`` metrics: means over the users and the paired difference to step 0
with its 95 % bootstrap interval (the same users at both steps, so the interval is tight). With
``--keep_best METRIC`` the best policy so far is copied to ``checkpoint_best/``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.io import atomic_write_json, atomic_write_text, read_jsonl
from rl4rec.policy.precision import without_autocast
from rl4rec.run_layout import BEST_FILE, BEST_NAME, HELDOUT_DIR

logger = logging.getLogger(__name__)

#: Metrics of each evaluation (over the users' ranks): AUC and the top-10 metrics.
KS = (10,)


def metric_names(fused: bool) -> list[str]:
    """The metrics ``--keep_best`` may name: ``auc``, ``ndcg@10``, ``hit@10``, ``mrr@10`` (``fused/...`` too)."""
    names = ["auc", *(f"{m}@{k}" for k in KS for m in ("ndcg", "hit", "mrr"))]
    return names + [f"fused/{n}" for n in names] if fused else names


def check_heldout_flags(config: Any) -> None:
    """The held-out flags' cross-field rules (ranges live in the fields' metadata), checked before anything loads."""
    if config.eval_steps == 0:
        if config.keep_best:
            raise ConfigError("--keep_best needs held-out evaluations: set --eval_steps N (e.g. 10).")
        return
    if config.eval_fusion is not None:
        from rl4rec.retrieval.fusion import load_fusion

        load_fusion(config.eval_fusion)
    if config.keep_best and config.keep_best not in metric_names(config.eval_fusion is not None):
        raise ConfigError(
            f"--keep_best {config.keep_best!r}: choose one of {', '.join(metric_names(config.eval_fusion is not None))}"
            " (fused/... needs --eval_fusion)."
        )
    if getattr(config, "prompt_file", None):
        raise ConfigError(
            "--eval_steps with --prompt_file: held-out users have no preference texts in that file; "
            "evaluate with `rl4rec evaluate` instead, or train from history prompts."
        )


def due(step: int, every: int, last: int) -> bool:
    """Evaluate at step 0, every ``every`` steps and at the last step."""
    return every > 0 and (step == 0 or step % every == 0 or step == last)


@dataclass
class HeldOutResult:
    step: int
    ranks: np.ndarray
    fused_ranks: np.ndarray | None
    metrics: dict[str, float]


class HeldOutEvaluator:
    """Greedy queries of a seeded user sample, ranked as ``rl4rec evaluate`` ranks them."""

    def __init__(self, config: Any, tokenizer: Any, run_dir: str | Path, max_new_tokens: int) -> None:
        from rl4rec.data.dataset import load_dataset
        from rl4rec.data.prompts import PromptBuilder, prompt_config_from_flags
        from rl4rec.data.splits import leave_one_out, sample_users
        from rl4rec.metrics import count_candidates
        from rl4rec.retrieval.embedder import EmbedderConfig
        from rl4rec.retrieval.fusion import load_fusion
        from rl4rec.retrieval.recall import build_prompts
        from rl4rec.retrieval.shared import local_service

        self.config = config
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.run_dir = Path(run_dir)
        self.dataset = load_dataset(config.dataset_name, config.data_dir)
        split = leave_one_out(self.dataset.sequences, config.eval_split)
        self.examples = sample_users(split.examples, config.eval_users, config.eval_seed)
        self.targets = [e.target for e in self.examples]
        self.histories = [list(e.history) for e in self.examples]
        self.candidates = count_candidates(self.dataset.n_items, self.targets, self.histories)
        self.fusion = load_fusion(config.eval_fusion)
        self.service = local_service(
            config.dataset_name,
            config.data_dir,
            EmbedderConfig(model_name=getattr(config, "embedder", "default")),
        )
        # the run's own prompts (candidates included), built as `rl4rec evaluate --seed eval_seed` builds them
        self.builder = PromptBuilder(self.dataset, tokenizer, prompt_config_from_flags(config))
        self.prompts, _ = build_prompts(
            self.builder, self.examples, config, self.service, self.dataset.name, config.eval_seed
        )
        self.choose = getattr(config, "task", "describe") == "choose"
        self.start: HeldOutResult | None = None
        self.best: dict[str, Any] | None = self._read_best()

    # -- one evaluation --------------------------------------------------------------------------------
    def queries(self, model: Any) -> list[str]:
        from rl4rec.policy.generation import GenerationSettings, HFGenerator

        settings = GenerationSettings(
            max_new_tokens=self.max_new_tokens, temperature=0.0, batch_size=self.config.eval_batch_size
        )
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # generation pads left (SFT trains with right padding)
        try:
            with without_autocast(model):  # the precision `rl4rec evaluate` generates in
                return HFGenerator(model, self.tokenizer, settings).generate(self.prompts)
        finally:
            self.tokenizer.padding_side = side

    def evaluate(self, model: Any, step: int) -> HeldOutResult:
        """Rank every user's greedy query; log and write the step's file; return the ``eval/`` metrics."""
        started = time.perf_counter()
        if self.choose:
            return self._evaluate_chooser(model, step, started)
        texts = self.queries(model)
        ranks = np.asarray(
            self.service.rank(texts, self.dataset.name, self.targets, self.histories), dtype=np.int64
        )
        fused = None
        if self.fusion is not None:
            fused = np.asarray(
                self.service.rank(texts, self.dataset.name, self.targets, self.histories, self.fusion),
                dtype=np.int64,
            )
        self._write(step, texts, ranks, fused)
        if step > 0 and self.start is None:  # a resumed run: step 0 was evaluated before the stop
            self.start = self._load(0)
        result = HeldOutResult(step, ranks, fused, {})
        result.metrics = self._metrics(result, time.perf_counter() - started)
        if step == 0:
            self.start = result
        return result

    def _evaluate_chooser(self, model: Any, step: int, started: float) -> HeldOutResult:
        """``--task choose``: the chooser re-ranks the recall stage, through ``evaluate --method chooser``'s code."""
        import torch

        from rl4rec.data.prompts import LETTERS
        from rl4rec.metrics import compute_ranks
        from rl4rec.policy.choice import choice_logprobs
        from rl4rec.retrieval.rerank import rerank_examples

        settings = {
            key: getattr(self.config, key) for key in ("candidates", "candidate_fusion", "candidate_order")
        }
        k, batch = int(self.config.candidates), self.config.eval_batch_size
        with without_autocast(model):
            scores, logprobs, scored = rerank_examples(
                self.service, self.dataset.name, self.builder, settings, self.config.eval_seed, self.examples,
                lambda _, prompts: choice_logprobs(model, self.tokenizer, prompts, k, batch),
            )  # fmt: skip
        ranks = compute_ranks(scores, torch.tensor(self.targets), self.histories).numpy().astype(np.int64)
        # each user's letter ("-": the target is not among the candidates, so no forward pass was needed)
        letters = [
            LETTERS[int(row.argmax())] if hit else "-" for row, hit in zip(logprobs, scored, strict=True)
        ]
        self._write(step, letters, ranks, None)
        if step > 0 and self.start is None:
            self.start = self._load(0)
        result = HeldOutResult(step, ranks, None, {})
        result.metrics = self._metrics(result, time.perf_counter() - started)
        if step == 0:
            self.start = result
        return result

    def _metrics(self, result: HeldOutResult, seconds: float) -> dict[str, float]:
        from rl4rec.statistics import paired_difference, per_user

        out: dict[str, float] = {"eval/users": float(len(self.examples))}
        variants = [("", result.ranks, None if self.start is None else self.start.ranks)]
        if result.fused_ranks is not None:
            start_fused = None if self.start is None else self.start.fused_ranks
            variants.append(("fused/", result.fused_ranks, start_fused))
        for prefix, ranks, start in variants:
            values = per_user(ranks, KS, self.candidates)
            out.update({f"eval/{prefix}{name}": float(v.mean()) for name, v in values.items()})
            if start is not None and result.step > 0:
                diff = paired_difference(start, ranks, KS, samples=1000, seed=0, candidates=self.candidates)
                for name in ("auc", "ndcg@10"):
                    d = diff[name]
                    lo, hi = d["ci95"]  # type: ignore[misc]
                    out[f"eval/{prefix}{name}_vs_step0"] = float(d["diff"])  # type: ignore[arg-type]
                    out[f"eval/{prefix}{name}_vs_step0_lo"] = float(lo)
                    out[f"eval/{prefix}{name}_vs_step0_hi"] = float(hi)
        out["eval/seconds"] = seconds
        return out

    # -- files -----------------------------------------------------------------------------------------
    def _path(self, step: int) -> Path:
        return self.run_dir / HELDOUT_DIR / f"step_{step}.jsonl"

    def _write(self, step: int, texts: list[str], ranks: np.ndarray, fused: np.ndarray | None) -> None:
        lines = []
        for i, ex in enumerate(self.examples):
            record: dict[str, Any] = {"user_id": ex.user_id, "target": ex.target, "rank": int(ranks[i]),
                                      "candidates": int(self.candidates[i]), "query": texts[i],
                                      "autocast": False}  # fmt: skip
            if fused is not None:
                record["rank_fused"] = int(fused[i])
            lines.append(json.dumps(record, ensure_ascii=False))
        atomic_write_text(self._path(step), "\n".join(lines) + "\n")

    def _load(self, step: int) -> HeldOutResult | None:
        """A stored evaluation of the same users (a resumed run's step 0), or None."""
        path = self._path(step)
        if not path.is_file():
            return None
        records = read_jsonl(path)
        if [r["user_id"] for r in records] != [e.user_id for e in self.examples]:
            logger.warning("%s holds other users than this run evaluates; no comparison with step 0", path)
            return None
        if "autocast" not in records[0]:
            logger.warning(
                "%s was written by an rl4rec that generated held-out queries under the training's bf16 autocast "
                "(--bf16 on); later steps generate without it, as `rl4rec evaluate` does, so their difference to "
                "this step mixes two precisions",
                path,
            )
        ranks = np.asarray([r["rank"] for r in records], dtype=np.int64)
        fused = (
            np.asarray([r["rank_fused"] for r in records], dtype=np.int64)
            if "rank_fused" in records[0]
            else None
        )
        return HeldOutResult(step, ranks, fused, {})

    # -- the best checkpoint ---------------------------------------------------------------------------
    def _read_best(self) -> dict[str, Any] | None:
        path = self.run_dir / BEST_NAME / BEST_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def forget_after(self, step: int) -> None:
        """On resume from ``step``: a best checkpoint from a later (lost) step no longer counts."""
        if self.best is not None and int(self.best["step"]) > step:
            self.best = None

    def is_best(self, result: HeldOutResult) -> bool:
        metric = self.config.keep_best
        if not metric:
            return False
        value = result.metrics[f"eval/{metric}"]
        return self.best is None or value > float(self.best["value"])

    def save_best(self, result: HeldOutResult, write: Callable[[Path], None]) -> Path:
        """``checkpoint_best/``: the weights ``write(folder)`` writes, plus ``best.json`` (step, metric, value)."""
        from rl4rec.io import atomic_directory

        metric = self.config.keep_best
        self.best = {"step": result.step, "metric": metric, "value": result.metrics[f"eval/{metric}"]}
        target = self.run_dir / BEST_NAME
        with atomic_directory(target) as tmp:
            write(tmp)
            atomic_write_json(tmp / BEST_FILE, self.best)
        logger.info("held-out %s %.4f at step %d: saved %s", metric, self.best["value"], result.step, target)
        return target


def summary_line(result: HeldOutResult) -> str:
    """One line for the log and the progress output."""
    m = result.metrics
    parts = [f"held-out step {result.step}: auc {m['eval/auc']:.4f} ndcg@10 {m['eval/ndcg@10']:.4f}"]
    if "eval/auc_vs_step0" in m:
        parts.append(
            f"(auc vs step 0 {m['eval/auc_vs_step0']:+.4f} [{m['eval/auc_vs_step0_lo']:+.4f}, "
            f"{m['eval/auc_vs_step0_hi']:+.4f}])"
        )
    if "eval/fused/auc" in m:
        parts.append(f"fused auc {m['eval/fused/auc']:.4f} ndcg@10 {m['eval/fused/ndcg@10']:.4f}")
    parts.append(f"{m['eval/seconds']:.0f} s")
    return " ".join(parts)


class HeldOutSchedule:
    """Evaluates when due, logs the ``eval/`` metrics through ``log(metrics, step)`` and keeps the best policy.

    The algorithms differ only in how they log and save a model, so GRPO/RLOO/SFT (HF trainers, through
    :class:`rl4rec.training.callbacks.HeldOutCallback`) and PPO (its own loop) share this.
    """

    def __init__(
        self,
        evaluator: HeldOutEvaluator,
        log: Callable[[dict[str, float], int], None],
        write_model: Callable[[Path], None],
    ) -> None:
        self.evaluator, self.log, self.write_model = evaluator, log, write_model

    @property
    def every(self) -> int:
        return int(self.evaluator.config.eval_steps)

    def resumed(self, step: int) -> None:
        self.evaluator.forget_after(step)

    def maybe(self, model: Any, step: int, last: int) -> HeldOutResult | None:
        if not due(step, self.every, last):
            return None
        result = self.evaluator.evaluate(model, step)
        self.log(dict(result.metrics), step)
        logger.info(summary_line(result))
        if self.evaluator.is_best(result):
            self.evaluator.save_best(result, self.write_model)
        return result


def heldout_schedule(
    config: Any,
    tokenizer: Any,
    run_dir: str | Path,
    max_new_tokens: int,
    log: Callable[[dict[str, float], int], None],
    write_model: Callable[[Path], None],
) -> HeldOutSchedule | None:
    """The run's held-out schedule; None without ``--eval_steps`` and on every process but rank 0."""
    from rl4rec.training.distributed import is_main_process

    if not config.eval_steps or not is_main_process():
        return None
    evaluator = HeldOutEvaluator(config, tokenizer, run_dir, max_new_tokens)
    logger.info(
        "held-out evaluation: %d %s users, greedy, at step 0, every %d steps and at the end",
        len(evaluator.examples), config.eval_split, config.eval_steps,
    )  # fmt: skip
    return HeldOutSchedule(evaluator, log, write_model)
