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

from rl4rec.config_cli import check_fields, comma_ints, opt
from rl4rec.data.prompts import CANDIDATE_ORDERS, PROMPT_ORDERS
from rl4rec.errors import ConfigError

BASELINE_METHODS = (
    "random",
    "popularity",
    "last-item",
    "history-mean",
    "history-fusion",
    "sasrec",
    "first-candidate",
)
LLM_METHODS = ("zero-shot", "policy", "chooser")
METHODS = BASELINE_METHODS + LLM_METHODS
#: Methods whose ranking can fuse the query text with the history (``--fusion FILE``).
FUSION_METHODS = ("last-item", "history-fusion", "first-candidate", "zero-shot", "policy")
#: Most sampled queries per user that ``--num_queries`` merges (bounds the [users x N, n_items] score matrix).
MAX_NUM_QUERIES = 64
#: LLM methods run on a fixed, seeded sample of this many users unless --num_users says otherwise.
DEFAULT_LLM_USERS = 500


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
    split: str = opt("test", "held-out split", one_of=("valid", "test"))
    method: str = opt("last-item", "what ranks the catalogue", one_of=METHODS)
    model: str | None = opt(None, "policy for zero-shot/policy: HF id, folder (checkpoint), .gguf")
    num_users: int | None = opt(
        None,
        f"seeded user sample ('all' or 0 = all; default: all for baselines, {DEFAULT_LLM_USERS} for LLM methods)",
        parse=_num_users,
    )
    seed: int = opt(0, "user sample, random baseline, bootstrap (and the order of shuffled candidates)")
    ks: tuple[int, ...] = opt((5, 10, 20), "cut-offs, e.g. 5,10,20", parse=comma_ints)
    history_n: int = opt(10, "items averaged by history-mean", at_least=1)
    # -- sasrec (trained once per setting, then reused from the cache; --device picks cpu/cuda) --------
    sasrec_epochs: int = opt(200, "sasrec: most training epochs", at_least=1)
    sasrec_patience: int = opt(
        10, "sasrec: stop after this many epochs without better validation NDCG@10", at_least=1
    )
    sasrec_dropout: float = opt(0.5, "sasrec: dropout", at_least=0, at_most=0.99)
    sasrec_seed: int = opt(0, "sasrec: init and batch order")
    # -- generation (LLM methods) -------------------------------------------------------------------
    max_new_tokens: int = opt(64, "tokens generated per query", at_least=1)
    temperature: float = opt(0.0, "0 = greedy (default: one deterministic query per user)", at_least=0)
    top_p: float = opt(1.0, "nucleus sampling (with --temperature > 0)", above=0, at_most=1)
    batch_size: int = opt(16, "users per generate call (each with its --num_queries samples)", at_least=1)
    num_queries: int = opt(
        1,
        "zero-shot/policy: sample this many queries per user (needs --temperature > 0) and rank the catalogue "
        "once, by the mean of their scores (fused or not)",
        at_least=1,
        at_most=MAX_NUM_QUERIES,
    )
    backend: str = opt(
        "auto",
        "auto = vLLM when installed and a GPU is present, else HF generate",
        one_of=("auto", "hf", "vllm"),
    )
    device: str = opt("auto", "auto | cpu | cuda", one_of=("auto", "cpu", "cuda"))
    dtype: str = opt(
        "auto",
        "policy weights for generation: auto = as saved; bfloat16 generates ~2.3x faster on a CPU with native "
        "bf16 but changes about a third of greedy texts (docs/BENCHMARKS.md, 'bf16 on CPU')",
        one_of=("auto", "float32", "bfloat16"),
    )
    # -- prompts (default: as the checkpoint was trained, read from its run_config.json) ----------------
    max_length: int | None = opt(None, "prompt token budget (default: as trained, or 256)", at_least=16)
    max_history_items: int | None = opt(
        None, "history items in the prompt (default: as trained, or 10)", at_least=1
    )
    prompt_order: str | None = opt(None, "default: as trained, or oldest_first", one_of=PROMPT_ORDERS)
    candidates: int | None = opt(
        None, "list the recall stage's top K in the prompt (default: as trained, or 0 = off)", at_least=0
    )
    candidate_fusion: str | None = opt(
        None, "fusion file of the recall stage (default: as trained, or history-fusion's built-in weights)"
    )
    candidate_order: str | None = opt(
        None, "ranked | shuffled (default: as trained, or ranked)", one_of=CANDIDATE_ORDERS
    )
    recall_prior: float = opt(
        0.0,
        "chooser: rank the candidates by log p(letter) - PRIOR * log(1 + recall position), so the recall stage's "
        "order can temper the chooser (0 = the chooser alone; choose it on validation)",
        at_least=0,
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
    bootstrap_samples: int = opt(1000, "bootstrap resamples for the 95%% intervals", at_least=100)
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
        if self.method in ("policy", "chooser") and self.model:
            suffix = "-" + Path(self.model.rstrip("/")).name
        if self.fusion and self.method != "history-fusion":
            suffix += "-fusion"
        return Path("outputs") / "eval" / f"{self.dataset}-{self.split}-{self.method}{suffix}"

    def validate(self) -> EvalConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        self.ks = tuple(self.ks)  # a --config YAML file gives a list
        check_fields(self)
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
        need(
            self.method != "first-candidate" or bool(self.candidates),
            "--method first-candidate needs --candidates K (the recall stage's list it copies from).",
        )
        need(
            self.fusion is None or self.method in FUSION_METHODS,
            f"--fusion applies to {', '.join(FUSION_METHODS)}; drop it for {self.method}.",
        )
        need(
            self.method != "chooser" or self.queries_from is None,
            "--queries_from applies to zero-shot and policy; a chooser writes no query (drop it).",
        )
        need(
            self.queries_from is None or self.method in LLM_METHODS,
            f"--queries_from applies to {', '.join(LLM_METHODS)}; drop it for {self.method}.",
        )
        if self.num_queries > 1:
            need(
                self.method in ("zero-shot", "policy"),
                f"--num_queries applies to zero-shot and policy (they write queries); drop it for {self.method}.",
            )
            need(
                self.queries_from is None,
                "--num_queries samples new queries; with --queries_from the stored run's queries are reused as "
                "they are (drop --num_queries).",
            )
            need(
                self.temperature > 0,
                f"--num_queries {self.num_queries} needs --temperature > 0: greedy decoding writes the same "
                "query every time (e.g. --temperature 0.8, the training temperature).",
            )
        if self.model and self.method not in LLM_METHODS:
            raise ConfigError(f"--model is only used by {', '.join(LLM_METHODS)}; drop it for {self.method}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ks"] = list(self.ks)
        return out
