"""The evaluation protocol as one typed config: what ``rl4rec evaluate`` measures and how.

Everything that changes a number lives here and is written into every result file (``protocol``),
so a table entry can always be traced back to its split, user sample, tie rule and embedder.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.config_cli import comma_ints, opt
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


def _num_users(text: str) -> int:
    if text == "all":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of users or 'all', got {text!r}") from None


@dataclass
class EvalConfig:
    """``rl4rec evaluate``: each field is a flag (``--name``), with its help text."""

    dataset: str = opt("ml-100k", "dataset folder under --data_dir")
    data_dir: str = opt("data", "root of the dataset folders")
    split: str = opt("test", "held-out split", choices=("valid", "test"))
    method: str = opt("last-item", "what ranks the catalogue", choices=METHODS)
    model: str | None = opt(None, "policy for zero-shot/policy: HF id, folder (checkpoint), .gguf")
    num_users: int | None = opt(
        None,
        f"seeded user sample ('all' or 0 = all; default: all for baselines, {DEFAULT_LLM_USERS} for LLM methods)",
        parse=_num_users,
    )
    seed: int = opt(0, "user sample, random baseline, bootstrap")
    ks: tuple[int, ...] = opt((5, 10, 20), "cut-offs, e.g. 5,10,20", parse=comma_ints)
    history_n: int = opt(10, "items averaged by history-mean")
    # -- sasrec (trained once per setting, then reused from the cache; --device picks cpu/cuda) --------
    sasrec_epochs: int = opt(200, "sasrec: most training epochs")
    sasrec_patience: int = opt(10, "sasrec: stop after this many epochs without better validation NDCG@10")
    sasrec_dropout: float = opt(0.5, "sasrec: dropout")
    sasrec_seed: int = opt(0, "sasrec: init and batch order")
    # -- generation (LLM methods) -------------------------------------------------------------------
    max_new_tokens: int = opt(64, "tokens generated per query")
    temperature: float = opt(0.0, "0 = greedy (default: one deterministic query per user)")
    top_p: float = opt(1.0, "nucleus sampling (with --temperature > 0)")
    batch_size: int = opt(16, "prompts per generate call")
    backend: str = opt(
        "auto",
        "auto = vLLM when installed and a GPU is present, else HF generate",
        choices=("auto", "hf", "vllm"),
    )
    device: str = opt("auto", "auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    dtype: str = opt(
        "auto",
        "policy weights for generation: auto = as saved; bfloat16 generates ~2.3x faster on a CPU with native "
        "bf16 but changes about a third of greedy texts (docs/BENCHMARKS.md, 'bf16 on CPU')",
        choices=("auto", "float32", "bfloat16"),
    )
    max_length: int | None = opt(None, "prompt token budget (default: as trained, or 256)")
    max_history_items: int | None = opt(None, "history items in the prompt (default: as trained, or 10)")
    prompt_order: str | None = opt(
        None, "default: as trained, or oldest_first", choices=("oldest_first", "recent_first")
    )
    embedder: str = opt("default", "sentence-embedding model (default: all-MiniLM-L6-v2)")
    fusion: str | None = opt(
        None,
        "fusion file from `rl4rec tune-fusion`: rank by text + history + co-occurrence "
        "(last-item, zero-shot, policy; history-fusion uses its history weights and ignores its text weight)",
    )
    queries_from: str | None = opt(
        None,
        "zero-shot/policy: re-rank the query texts of this earlier evaluate run (same split and users) "
        "instead of generating them again, e.g. to add --fusion",
    )
    # -- statistics and output ---------------------------------------------------------------------
    bootstrap_samples: int = opt(1000, "bootstrap resamples for the 95%% intervals")
    run_dir: str | None = opt(None, "default: outputs/eval/DATASET-SPLIT-METHOD")
    output: str | None = opt(None, "also write the result JSON here")
    overwrite: bool = opt(False, "discard an earlier run in --run_dir")

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

        self.ks = tuple(self.ks)  # a --config YAML file gives a list
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
            self.dtype in ("auto", "float32", "bfloat16"),
            f"--dtype must be auto, float32 or bfloat16, got {self.dtype!r}.",
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
