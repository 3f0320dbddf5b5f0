"""An evaluation's settings, resolved once: what the run's identity records and what its method uses.

An ``EvalConfig`` leaves much to resolve: the fusion (a file, history-fusion's built-in weights, or none),
the model (the offline default when unset), the prompt (the command line, else the checkpoint's training
config, else defaults), the texts of ``--queries_from`` (read from that run's files), SASRec's settings.
Resolving them once, here, means the identity a resumed run is checked against and the method that
produces the ranks cannot disagree, and no file is read twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.evaluation.config import EvalConfig
from rl4rec.retrieval.fusion import DEFAULT_HISTORY_FUSION, FusionConfig, load_fusion


@dataclass(frozen=True)
class ResolvedEval:
    config: EvalConfig
    fusion: FusionConfig | None
    #: LLM methods: the policy (the offline default when --model is unset), its prompt settings.
    model: str | None = None
    prompt: dict[str, Any] | None = None
    #: --queries_from: that run's identity and its texts by user.
    queries_source: dict[str, Any] | None = None
    queries: dict[int, str | list[str]] | None = None
    #: sasrec: the settings that pick the cached model.
    sasrec: dict[str, Any] | None = None


def resolve_fusion(config: EvalConfig) -> FusionConfig | None:
    """The fusion a run uses: its --fusion file, history-fusion's built-in weights, or None (text only)."""
    fusion = load_fusion(config.fusion)
    if config.method == "history-fusion":
        return dataclasses.replace(fusion or DEFAULT_HISTORY_FUSION, w_text=0.0)
    return fusion


def resolve(config: EvalConfig) -> ResolvedEval:
    fields: dict[str, Any] = {"fusion": resolve_fusion(config)}
    if config.method == "sasrec":
        from rl4rec.evaluation.sasrec import sasrec_config

        fields["sasrec"] = sasrec_config(config).key_fields()
    if config.queries_from:  # the texts are that run's: its model, prompts and decoding are the identity
        from rl4rec.evaluation.run_files import read_queries

        fields["queries_source"], fields["queries"] = read_queries(
            config.queries_from, config.dataset, config.split
        )
    elif config.is_llm:
        from rl4rec.evaluation.policy_queries import prompt_settings
        from rl4rec.policy.loading import DEFAULT_POLICY

        fields["model"] = config.model or DEFAULT_POLICY
        fields["prompt"] = prompt_settings(config, fields["model"])
    return ResolvedEval(config=config, **fields)


def identity(resolved: ResolvedEval, embedder_id: str | None) -> dict[str, Any]:
    """The settings that change the ranks; a resumed run must match them exactly."""
    config = resolved.config
    ident: dict[str, Any] = {
        "dataset": config.dataset,
        "split": config.split,
        "method": config.method,
        "seed": config.seed,
        "num_users": config.users_to_evaluate(),
        "embedder": embedder_id,
    }
    if config.method == "history-mean":
        ident["history_n"] = config.history_n
    if config.method == "first-candidate":
        ident["candidates"] = {"k": config.candidates, "fusion": config.candidate_fusion}
    if resolved.fusion is not None:
        ident["fusion"] = resolved.fusion.to_dict()
    if resolved.sasrec is not None:
        ident["sasrec"] = resolved.sasrec
    if resolved.queries_source is not None:
        ident["queries_from"] = {
            "run_dir": str(Path(config.queries_from or "").resolve()),
            **resolved.queries_source,
        }
        return ident
    if resolved.model is not None:
        model = resolved.model
        ident.update(
            model=str(Path(model).resolve()) if Path(model).exists() else model,
            prompt=resolved.prompt,
            generation={
                "max_new_tokens": config.max_new_tokens,
                "temperature": config.temperature,
                "top_p": config.top_p if config.temperature > 0 else 1.0,
                "decoding": "greedy" if config.temperature == 0 else "sampling",
            },
        )
        if config.dtype != "auto":  # absent for "auto", so runs written before the flag still resume
            ident["generation"]["dtype"] = config.dtype
        if config.num_queries > 1:  # absent for one query, likewise
            ident["generation"]["num_queries"] = config.num_queries
        if config.method == "chooser":  # one forward pass per user: no decoding settings
            ident["generation"] = {"dtype": config.dtype, "recall_prior": config.recall_prior}
    return ident
