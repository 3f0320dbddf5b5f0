"""``rl4rec headroom``: is there anything for RL to find? The policy's own samples, best-of-K.

GRPO can at most move the policy toward the better of its own samples. Before a long run, draw K
sampled queries per held-out user (at the training temperature), rank each exactly as ``rl4rec
evaluate`` ranks a query (full catalogue, history masked, pessimistic ties; fused too with
``--fusion``), and compare the mean sample and the best of K with last-item and history-fusion on
the same users. If best-of-K is not clearly above the bar, the prompt, the format or the policy has
to change before RL can win. ``zero_spread`` is the share of users whose K samples all score the
same under a metric: such GRPO groups have zero advantage and teach nothing. ``merged_k`` ranks each
user's K samples as one, by the mean of their scores: what ``rl4rec evaluate --num_queries K`` would
give, without generating again.

Writes ``--output`` (JSON: every number with its 95 % bootstrap interval) and
``<output stem>.ranks.jsonl`` (each user's K queries and ranks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rl4rec.config_cli import check_fields, opt
from rl4rec.errors import ConfigError
from rl4rec.evaluation.config import EvalConfig
from rl4rec.io import atomic_write_json, atomic_write_text
from rl4rec.policy.loading import DEFAULT_POLICY

logger = logging.getLogger(__name__)
METRICS = ("auc", "ndcg@10", "hit@10")
#: Users per scoring call when the K samples are merged.
MERGE_CHUNK = 64


@dataclass
class HeadroomConfig:
    """``rl4rec headroom``: each field is a flag (``--name``), with its help text."""

    dataset: str = opt("ml-100k", "dataset folder under --data_dir")
    data_dir: str = opt("data", "root of the dataset folders")
    split: str = opt(
        "valid",
        "valid (choose on it) | test | train (the training targets: samples for reward-ranked fine-tuning, "
        "`rl4rec sft --completions_from`)",
        one_of=("valid", "test", "train"),
    )
    model: str = opt(DEFAULT_POLICY, "policy: HF id, folder (checkpoint), .gguf")
    num_users: int = opt(500, "seeded sample of held-out users")
    seed: int = opt(0, "user sample, sampling and bootstrap")
    samples: int = opt(8, "sampled queries per user (K)")
    temperature: float = opt(0.8, "sampling temperature (use the training temperature)")
    top_p: float = opt(0.95, "nucleus sampling")
    max_new_tokens: int = opt(32, "tokens generated per query (use the training --max_new_tokens)")
    max_length: int | None = opt(None, "prompt token budget (default: as trained, or 256)")
    max_history_items: int | None = opt(None, "history items in the prompt (default: as trained, or 10)")
    prompt_order: str | None = opt(None, "oldest_first | recent_first (default: as trained)")
    candidates: int | None = opt(
        None, "candidate-aware prompts: the recall stage's top K (default: as trained)"
    )
    candidate_fusion: str | None = opt(None, "fusion file of the recall stage (default: as trained)")
    candidate_order: str | None = opt(None, "ranked | shuffled (default: as trained)")
    fusion: str | None = opt(
        None, "fusion file: also rank each query fused with the history, and history-fusion"
    )
    users_per_batch: int = opt(4, "users per generate call (each with its K samples)")
    device: str = opt("auto", "auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    embedder: str = opt("default", "sentence-embedding model (default: all-MiniLM-L6-v2)")
    output: str = opt("outputs/headroom.json", "result JSON (per-user ranks beside it)")

    def validate(self) -> HeadroomConfig:
        for ok, message in [
            (self.num_users >= 2, f"--num_users must be >= 2, got {self.num_users}."),
            (self.samples >= 2, f"--samples must be >= 2 (best-of-K needs K > 1), got {self.samples}."),
            (
                self.temperature > 0,
                f"--temperature must be > 0 (samples, not greedy), got {self.temperature}.",
            ),
            (self.users_per_batch >= 1, f"--users_per_batch must be >= 1, got {self.users_per_batch}."),
        ]:
            if not ok:
                raise ConfigError(message)
        check_fields(self)
        self.eval_config().validate()
        return self

    def eval_config(self) -> EvalConfig:
        """The ``rl4rec evaluate`` settings that load the same query writer (prompts, decoding)."""
        return EvalConfig(
            dataset=self.dataset, data_dir=self.data_dir, split="valid" if self.split == "train" else self.split,
            method="policy", model=self.model,
            num_users=self.num_users, seed=self.seed, max_new_tokens=self.max_new_tokens,
            temperature=self.temperature, top_p=self.top_p, batch_size=self.samples * self.users_per_batch,
            backend="hf", device=self.device, max_length=self.max_length, max_history_items=self.max_history_items,
            prompt_order=self.prompt_order, embedder=self.embedder, fusion=self.fusion, candidates=self.candidates,
            candidate_fusion=self.candidate_fusion, candidate_order=self.candidate_order,
        )  # fmt: skip


def summarize(values: np.ndarray, merged: np.ndarray, seed: int) -> dict[str, Any]:
    """``values`` [users, K] of one metric: mean sample, best of K, the share of zero-spread users; and
    ``merged`` [users], the metric of the K samples ranked as one (``rl4rec evaluate --num_queries K``)."""
    from rl4rec.statistics import interval

    return {
        "mean_of_k": interval(values.mean(axis=1), seed=seed),
        "best_of_k": interval(values.max(axis=1), seed=seed),
        "merged_k": interval(merged, seed=seed),
        "zero_spread": float((values.max(axis=1) == values.min(axis=1)).mean()),
    }


def merged_ranks(
    service: Any, dataset: str, texts: list[str], examples: list[Any], k: int, fusion: Any
) -> np.ndarray:
    """Each user's K samples ranked once by their mean score, as ``evaluate --num_queries K`` ranks them."""
    from rl4rec.evaluation.ranking import rank_queries

    out: list[int] = []
    for start in range(0, len(examples), MERGE_CHUNK):  # bounds the [users x K, n_items] score matrix
        part = examples[start : start + MERGE_CHUNK]
        queries = [texts[(start + i) * k : (start + i + 1) * k] for i in range(len(part))]
        out += rank_queries(service, dataset, queries, part, fusion)
    return np.asarray(out, dtype=np.int64)


def run_headroom(config: HeadroomConfig) -> dict[str, Any]:
    from rl4rec.data.dataset import load_dataset
    from rl4rec.data.splits import leave_one_out, sample_users
    from rl4rec.evaluation.policy_queries import load_query_writer
    from rl4rec.evaluation.resolved import resolve
    from rl4rec.metrics import count_candidates
    from rl4rec.retrieval.embedder import EmbedderConfig
    from rl4rec.retrieval.fusion import DEFAULT_HISTORY_FUSION, for_split, load_fusion
    from rl4rec.retrieval.recall import build_prompts
    from rl4rec.retrieval.shared import local_service
    from rl4rec.statistics import interval, per_user

    config.validate()
    dataset = load_dataset(config.dataset, config.data_dir)
    examples = sample_users(
        leave_one_out(dataset.sequences, config.split).examples, config.num_users, config.seed
    )
    service = local_service(config.dataset, config.data_dir, EmbedderConfig(model_name=config.embedder))
    resolved = resolve(config.eval_config())
    assert resolved.model is not None and resolved.prompt is not None
    settings = resolved.prompt
    builder, generator = load_query_writer(resolved.config, dataset, resolved.model, settings)
    fusion = load_fusion(config.fusion)
    if fusion is not None:  # --split train: without each user's own transition into the target
        fusion = for_split(fusion, config.split)
    k, texts = config.samples, []
    step = config.users_per_batch
    for start in tqdm(range(0, len(examples), step), desc="headroom", unit="batch", dynamic_ncols=True):
        part = examples[start : start + step]
        prompts, _ = build_prompts(
            builder, part, settings, service, dataset.name, config.seed, split=config.split
        )
        texts += generator.generate([p for p in prompts for _ in range(k)])
    targets = [e.target for e in examples for _ in range(k)]
    histories = [list(e.history) for e in examples for _ in range(k)]
    candidates = count_candidates(
        dataset.n_items, [e.target for e in examples], [list(e.history) for e in examples]
    )
    variants = {"text": service.rank(texts, dataset.name, targets, histories)}
    if fusion is not None:
        variants["fused"] = service.rank(texts, dataset.name, targets, histories, fusion)
    out: dict[str, Any] = {"config": dataclasses.asdict(config), "users": len(examples), "samples": k}
    for name, flat in variants.items():
        ranks = np.asarray(flat, dtype=np.int64).reshape(len(examples), k)
        values = {
            m: np.stack([per_user(ranks[:, j], (10,), candidates)[m] for j in range(k)], axis=1)
            for m in METRICS
        }
        merged = per_user(
            merged_ranks(service, dataset.name, texts, examples, k, fusion if name == "fused" else None),
            (10,),
            candidates,
        )
        out[name] = {m: summarize(v, merged[m], config.seed) for m, v in values.items()}
    baselines = {"last-item": service.rank([dataset.item_text(e.history[-1]) for e in examples], dataset.name,
                                           [e.target for e in examples], [list(e.history) for e in examples])}  # fmt: skip
    history = for_split(dataclasses.replace(fusion or DEFAULT_HISTORY_FUSION, w_text=0.0), config.split)
    baselines["history-fusion"] = service.rank([""] * len(examples), dataset.name, [e.target for e in examples],
                                               [list(e.history) for e in examples], history)  # fmt: skip
    out["baselines"] = {
        name: {m: interval(per_user(np.asarray(r), (10,), candidates)[m], seed=config.seed) for m in METRICS}
        for name, r in baselines.items()
    }
    path = Path(config.output)
    atomic_write_json(path, out)
    lines = [json.dumps({"user_id": e.user_id, "split": config.split, "target": e.target, "queries": texts[i * k : (i + 1) * k],
                         **{f"ranks_{n}": list(map(int, flat[i * k : (i + 1) * k])) for n, flat in variants.items()}},
                        ensure_ascii=False) for i, e in enumerate(examples)]  # fmt: skip
    atomic_write_text(path.with_suffix(".ranks.jsonl"), "\n".join(lines) + "\n")
    return out


def format_table(result: dict[str, Any]) -> str:
    """The headroom numbers as a small text table."""

    def cell(d: dict[str, Any]) -> str:
        return f"{d['mean']:.4f} [{d['ci95'][0]:.4f}, {d['ci95'][1]:.4f}]"

    rows = [f"{'':28}" + "".join(f"{m:>28}" for m in METRICS)]
    for name in ("text", "fused"):
        if name not in result:
            continue
        for kind in ("mean_of_k", "best_of_k", "merged_k"):
            label = f"{name} {kind.replace('_', ' ')} (K={result['samples']})"
            rows.append(f"{label:28}" + "".join(f"{cell(result[name][m][kind]):>28}" for m in METRICS))
        rows.append(
            f"{name + ' zero-spread users':28}"
            + "".join(f"{result[name][m]['zero_spread']:>28.2f}" for m in METRICS)
        )
    for name, metrics in result["baselines"].items():
        rows.append(f"{name:28}" + "".join(f"{cell(metrics[m]):>28}" for m in METRICS))
    return "\n".join(rows)


def headroom_main(argv: list[str] | None = None) -> int:
    from rl4rec.config_cli import parse_config

    config = parse_config(HeadroomConfig, argv, "rl4rec headroom", __doc__ or "")
    result = run_headroom(config)
    print(format_table(result))
    print(f"wrote {config.output}")
    return 0
