"""The evaluation protocol as one typed config: what ``rl4rec evaluate`` measures and how.

Everything that changes a number lives here and is written into every result file (``protocol``),
so a table entry can always be traced back to its split, user sample, tie rule and embedder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.data.splits import check_split
from rl4rec.errors import ConfigError

BASELINE_METHODS = ("random", "popularity", "last-item", "history-mean", "history-fusion", "sasrec")
LLM_METHODS = ("zero-shot", "policy")
METHODS = BASELINE_METHODS + LLM_METHODS
#: Methods whose ranking can fuse the query text with the history (``--fusion FILE``).
FUSION_METHODS = ("last-item", "history-fusion", "zero-shot", "policy")
#: LLM methods run on a fixed, seeded sample of this many users unless --num_users says otherwise.
DEFAULT_LLM_USERS = 500
DEFAULT_POLICY = "smollm2-135m-instruct"


@dataclass
class EvalConfig:
    dataset: str = "ml-100k"
    data_dir: str = "data"
    split: str = "test"
    method: str = "last-item"
    #: Policy for zero-shot / policy: HF id, local folder (e.g. a checkpoint), .gguf, or the offline default.
    model: str | None = None
    #: ``None``: all users for baselines, DEFAULT_LLM_USERS for LLM methods; 0 = all users.
    num_users: int | None = None
    seed: int = 0
    ks: tuple[int, ...] = (5, 10, 20)
    #: Most recent history items averaged by ``history-mean``.
    history_n: int = 10
    # -- sasrec (trained once per setting, then reused from the cache; --device picks cpu/cuda) --------
    sasrec_epochs: int = 200
    #: Stop after this many epochs without a better validation NDCG@10.
    sasrec_patience: int = 10
    sasrec_dropout: float = 0.5
    sasrec_seed: int = 0
    # -- generation (LLM methods) -------------------------------------------------------------------
    max_new_tokens: int = 64
    #: 0 = greedy (the default: one deterministic query per user).
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 16
    backend: str = "auto"
    device: str = "auto"
    #: Prompt settings; ``None`` = the policy checkpoint's training settings, else the defaults below.
    max_length: int | None = None
    max_history_items: int | None = None
    prompt_order: str | None = None
    embedder: str = "default"
    #: Fusion file (``rl4rec tune-fusion``): text methods rank by the fused score; ``history-fusion``
    #: uses its history weights (its text weight is ignored). None: text only / the built-in weights.
    fusion: str | None = None
    #: Re-rank the query texts of this earlier evaluate run (same dataset, split, users) instead of generating.
    queries_from: str | None = None
    # -- statistics and output ---------------------------------------------------------------------
    bootstrap_samples: int = 1000
    run_dir: str | None = None
    output: str | None = None
    overwrite: bool = False

    @property
    def is_llm(self) -> bool:
        return self.method in LLM_METHODS

    def users_to_evaluate(self) -> int | None:
        """How many users to sample (``None`` = all)."""
        if self.num_users is None:
            return DEFAULT_LLM_USERS if self.is_llm else None
        return None if self.num_users == 0 else self.num_users

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        suffix = ""
        if self.method == "policy" and self.model:
            suffix = "-" + Path(self.model.rstrip("/")).name
        if self.fusion and self.method != "history-fusion":
            suffix += "-fusion"
        return Path("outputs") / "eval" / f"{self.dataset}-{self.split}-{self.method}{suffix}"

    def validate(self) -> EvalConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        check_split(self.split)
        need(
            self.method != "policy" or bool(self.model),
            "--method policy needs --model PATH (a checkpoint folder such as RUN/checkpoint_final).",
        )
        need(
            self.num_users is None or self.num_users >= 0,
            f"--num_users must be >= 0 (0 = all users), got {self.num_users}.",
        )
        need(
            bool(self.ks) and all(k >= 1 for k in self.ks), f"--ks must be positive integers, got {self.ks}."
        )
        need(self.history_n >= 1, f"--history_n must be >= 1, got {self.history_n}.")
        need(self.sasrec_epochs >= 1, f"--sasrec_epochs must be >= 1, got {self.sasrec_epochs}.")
        need(self.sasrec_patience >= 1, f"--sasrec_patience must be >= 1, got {self.sasrec_patience}.")
        need(0 <= self.sasrec_dropout < 1, f"--sasrec_dropout must be in [0, 1), got {self.sasrec_dropout}.")
        need(self.max_new_tokens >= 1, f"--max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        need(self.temperature >= 0, f"--temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        need(0 < self.top_p <= 1, f"--top_p must be in (0, 1], got {self.top_p}.")
        need(self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}.")
        need(
            self.backend in ("auto", "hf", "vllm"),
            f"--backend must be auto, hf or vllm, got {self.backend!r}.",
        )
        need(
            self.device in ("auto", "cpu", "cuda"),
            f"--device must be auto, cpu or cuda, got {self.device!r}.",
        )
        need(
            self.bootstrap_samples >= 100,
            f"--bootstrap_samples must be >= 100 for a usable interval, got {self.bootstrap_samples}.",
        )
        need(
            self.prompt_order in (None, "oldest_first", "recent_first"),
            f"--prompt_order must be oldest_first or recent_first, got {self.prompt_order!r}.",
        )
        need(
            self.fusion is None or self.method in FUSION_METHODS,
            f"--fusion applies to {', '.join(FUSION_METHODS)}; drop it for {self.method}.",
        )
        need(
            self.queries_from is None or self.method in LLM_METHODS,
            f"--queries_from applies to {', '.join(LLM_METHODS)}; drop it for {self.method}.",
        )
        if self.model and self.method not in LLM_METHODS:
            raise ConfigError(f"--model is only used by {', '.join(LLM_METHODS)}; drop it for {self.method}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ks"] = list(self.ks)
        return out
