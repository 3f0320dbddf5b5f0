"""``rl4rec sft``: supervised warm start of the query writer before RL.

An untrained 135M policy writes queries far from any item text, so RL starts where almost every
completion ranks the target in the thousands and the reward barely separates them. Teaching it first
to write *the next item's own text* from the very prompt RL uses puts the policy's queries in the
item-text space the retrieval service embeds, and RL then refines from there.

Data: TRL's prompt-completion format. The prompt is :class:`~rl4rec.data.prompts.PromptBuilder`'s
(the same settings names as ``rl4rec train``, so ``evaluate`` and ``train`` rebuild it from
``run_config.json``); the completion is the target item's rendered text. Targets come from the
training split only (``leave_one_out(..., "train")``: the third-to-last item, or with
``--train_targets all`` every earlier position), so no validation or test target is ever learned.
The loss is on the completion only. Run directory: the same conventions as ``rl4rec train``.

``--loss dpo`` (with ``--completions_from``, a ``rl4rec headroom --split train`` ranks file) trains on preference
pairs instead: each user's best sampled query against its worst, with TRL's DPOTrainer and the starting policy as
the frozen reference. Best-of-K fine-tuning imitates the winner only; DPO also pushes away from the loser, so what
separates good from bad samples of the same prompt (a style, a field) is what it learns, not the winner's title.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.config_cli import check_fields, opt
from rl4rec.data.dataset import RecDataset, load_dataset
from rl4rec.data.prompts import PromptBuilder, PromptFlags, prompt_config_from_flags
from rl4rec.data.splits import Example, leave_one_out
from rl4rec.errors import ConfigError
from rl4rec.policy.loading import DEFAULT_POLICY
from rl4rec.training.config import (
    CANDIDATE_MISSES,
    ON_OFF_AUTO,
    TRAIN_TARGETS,
    check_prompt_flags,
)
from rl4rec.training.ranked_samples import RankedSamples, best_queries, preference_pairs, ranked_samples
from rl4rec.training.run_context import RunContext, checkpoint_step, set_seed
from rl4rec.training.shared_flags import HeldOutFlags, LoraFlags

logger = logging.getLogger(__name__)
DPO = "dpo"
#: ``--loss``: supervised cross-entropy on one completion, or DPO on a (best, worst) pair of sampled queries.
LOSSES = ("sft", DPO)


@dataclass
class SFTConfig(HeldOutFlags, LoraFlags, PromptFlags):
    """``rl4rec sft``: the prompt flags are ``rl4rec train``'s (shared group), so both build the same prompt."""

    model_name: str = opt(
        DEFAULT_POLICY, "Policy to fine-tune: HF id, local folder, .gguf, or the offline default."
    )
    dataset_name: str = opt("beauty", "Dataset folder under --data_dir (P5 layout).")
    data_dir: str = opt("data", "Folder holding the dataset folders.")
    checkpoint_dir: str = opt(
        "checkpoints/sft", "Run directory: checkpoints, metrics.jsonl, run_config.json."
    )
    device: str = opt("auto", "cuda | cpu | auto.")
    # -- data (prompt settings share their names with `rl4rec train`) -------------------------------
    max_length: int = opt(
        256, "Prompt token budget (chat template included); oldest history items are dropped."
    )
    train_targets: str = opt(
        "last", "last (each user's third-to-last item) | all (every earlier position of s[:-2] too).",
        one_of=TRAIN_TARGETS,
    )  # fmt: skip
    max_examples: int | None = opt(
        None, "Train on a seeded random sample of this many examples (default: all of the split).", at_least=1
    )
    max_completion_tokens: int = opt(
        64, "Completion (item text) tokens kept; longer texts are cut.", at_least=1
    )
    completions_from: str | None = opt(
        None,
        "Reward-ranked fine-tuning: a `rl4rec headroom --split train` ranks file; each user's best sampled query "
        "(lowest rank) becomes the completion instead of the target's text (best-of-K, as in rejection sampling).",
    )
    loss: str = opt(
        "sft",
        "sft: cross-entropy on the completion | dpo: preference pairs from --completions_from (each user's best "
        "sampled query against its worst; users whose samples all rank alike are left out), TRL's DPOTrainer "
        "with the starting policy as the frozen reference.",
        one_of=LOSSES,
    )
    dpo_beta: float = opt(
        0.1, "--loss dpo: beta, the strength of the pull toward the reference (larger = closer).", above=0
    )
    candidate_misses: str = opt(
        "skip",
        "With --candidates: examples whose target is not among the candidates are skipped (skip, the default "
        "here; `rl4rec train` keeps them by default) or kept (keep: with the target's text, it teaches naming "
        "items the recall stage missed; with --completions_from, the sampled queries).",
        one_of=CANDIDATE_MISSES,
    )
    # -- optimisation ---------------------------------------------------------------------------------
    learning_rate: float = opt(5e-5, "AdamW learning rate (linear decay to 0).", above=0)
    warmup_ratio: float = opt(0.03, "Share of steps with linear warm-up.", at_least=0, at_most=0.99)
    batch_size: int = opt(8, "Examples per optimisation step.", at_least=1)
    mini_batch_size: int = opt(
        8, "Per-device micro-batch; gradient accumulation = batch_size / mini_batch_size.", at_least=1
    )
    num_epochs: float = opt(1.0, "Passes over the examples.", above=0)
    max_steps: int = opt(-1, "Stop after this many steps (-1: run num_epochs).", at_least=-1)
    gradient_checkpointing: bool = opt(
        False, "Recompute activations in the backward pass (less memory, ~30 %% more compute; TRL's default)."
    )
    bf16: str = opt(
        "auto",
        "bfloat16 autocast with fp32 master weights: on | off | auto (on where the device computes bf16 "
        "natively: a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), as in `rl4rec train`.",
        one_of=ON_OFF_AUTO,
    )
    # -- run --------------------------------------------------------------------------------------------
    seed: int = opt(42, "Random seed (example sample, data order, initialisation).")
    save_steps: int = opt(100, "Write checkpoint_dir/checkpoint_step_N every N steps.", at_least=1)
    save_total_limit: int | None = opt(
        None,
        "Keep only the newest N checkpoint_step_N folders (about 1.6 GB each with optimizer state); "
        "checkpoint_final and checkpoint_best are never deleted. Default: keep all.",
        at_least=1,
    )
    resume: bool = opt(False, "Continue from the newest checkpoint_step_N in checkpoint_dir.")

    def validate(self) -> SFTConfig:
        check_fields(self)
        check_prompt_flags(self)
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"--batch_size ({self.batch_size}) must be divisible by --mini_batch_size ({self.mini_batch_size})."
            )
        if self.max_steps == 0:
            raise ConfigError("--max_steps must be -1 (run --num_epochs) or >= 1, got 0.")
        from rl4rec.data.prompts import CHOOSE

        if self.task == CHOOSE and (self.candidate_misses != "skip" or self.completions_from):
            raise ConfigError(
                "--task choose trains on the target's letter: it needs --candidate_misses skip and no "
                "--completions_from."
            )
        if self.completions_from is not None and self.train_targets != "last":
            raise ConfigError(
                "--completions_from holds one prompt's samples per user (its last training target): use it with "
                "--train_targets last."
            )
        if self.loss == DPO and (self.completions_from is None or self.task == CHOOSE):
            raise ConfigError(
                "--loss dpo trains on pairs of sampled queries: it needs --completions_from RANKS "
                "(`rl4rec headroom --split train --output FILE.json` writes FILE.ranks.jsonl) and --task describe."
            )
        from rl4rec.training.heldout import check_heldout_flags

        check_heldout_flags(self)
        return self

    def to_json(self) -> str:
        import json

        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


# -- data --------------------------------------------------------------------------------------------
def sft_examples(
    dataset: RecDataset, config: SFTConfig, samples: RankedSamples | None = None
) -> list[Example]:
    """Training-split examples only (targets at or before each user's third-to-last item), sampled."""
    examples = leave_one_out(dataset.sequences, "train", config.train_targets).examples
    if config.completions_from is not None:
        # reward-ranked: the examples whose prompt was sampled (same user, same target) and, for DPO, whose
        # samples differ
        samples = samples if samples is not None else ranked_samples(config.completions_from)
        sampled = {u: target for u, (target, _) in samples.items()}
        paired = preference_pairs(samples, config.completions_from) if config.loss == DPO else sampled
        examples = [e for e in examples if sampled.get(e.user_id) == e.target and e.user_id in paired]
    if config.max_examples is not None and config.max_examples < len(examples):
        examples = random.Random(config.seed).sample(examples, config.max_examples)
    if not examples:
        raise ConfigError(
            f"no training examples in {dataset.name}: every user is too short for the train split."
        )
    return examples


def sft_rows(
    dataset: RecDataset,
    examples: list[Example],
    builder: PromptBuilder,
    prompts: list[Any] | None = None,
    answers: dict[int, str] | None = None,
    letters: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Prompt-completion rows: the RL prompt (given, or built from the history) and the target item's text (or
    ``answers[user]``: the user's best sampled query, for reward-ranked fine-tuning; or ``letters[i]``: the
    target's candidate letter, for a chooser)."""
    rows = []
    for i, ex in enumerate(examples):
        prompt = prompts[i] if prompts is not None else builder.build(ex.history)
        if letters is not None:
            answer = letters[i]
        else:
            answer = answers[ex.user_id] if answers is not None else dataset.item_text(ex.target)
        rows.append({"prompt": prompt, "completion": as_completion(prompt, answer)})
    return rows


def as_completion(prompt: Any, text: str) -> Any:
    """A completion in the prompt's format: an assistant message after a chat prompt, or text after a plain one."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else " " + text


def dpo_rows(
    examples: list[Example],
    builder: PromptBuilder,
    pairs: dict[int, tuple[str, str]],
    prompts: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """TRL's preference format: the RL prompt, the user's best sampled query (chosen) and its worst (rejected)."""
    rows = []
    for i, ex in enumerate(examples):
        prompt = prompts[i] if prompts is not None else builder.build(ex.history)
        best, worst = pairs[ex.user_id]
        rows.append(
            {
                "prompt": prompt,
                "chosen": as_completion(prompt, best),
                "rejected": as_completion(prompt, worst),
            }
        )
    return rows


def candidate_examples(
    dataset: RecDataset, examples: list[Example], builder: PromptBuilder, config: SFTConfig
) -> tuple[list[Example], list[Any], list[str] | None]:
    """Candidate-aware SFT data: the prompts list the recall stage's top K; ``--candidate_misses`` decides
    what happens to examples whose target the recall stage missed (skip them, or keep them). With
    ``--task choose`` the completions are the target's letters (a chooser has no answer for a miss)."""
    from rl4rec.data.prompts import CHOOSE, LETTERS
    from rl4rec.retrieval.recall import build_prompts
    from rl4rec.retrieval.shared import local_service
    from rl4rec.training.data import target_hits, warn_own_transitions

    warn_own_transitions(config)
    service = local_service(config.dataset_name, config.data_dir)
    prompts, lists = build_prompts(
        builder, examples, config, service, dataset.name, config.seed, split="train"
    )
    assert lists is not None
    kept = target_hits(examples, lists, config.candidates, config.candidate_misses)
    if config.candidate_misses == "keep":
        return examples, prompts, None
    letters = [LETTERS[lists[i].index(examples[i].target)] for i in kept] if config.task == CHOOSE else None
    if letters is not None:
        shares = {letter: letters.count(letter) / len(letters) for letter in sorted(set(letters))}
        logger.info("chooser targets by letter: %s", ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return [examples[i] for i in kept], [prompts[i] for i in kept], letters


def _truncate_completions(rows: list[dict[str, Any]], tokenizer: Any, max_tokens: int) -> None:
    for row in rows:
        for key in ("completion", "chosen", "rejected"):
            completion = row.get(key)
            if completion is None:
                continue
            text = completion[0]["content"] if isinstance(completion, list) else completion
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > max_tokens:
                text = tokenizer.decode(ids[:max_tokens])
                if isinstance(completion, list):
                    completion[0]["content"] = text
                else:
                    row[key] = text


# -- run ---------------------------------------------------------------------------------------------
def run_sft(config: SFTConfig, callbacks: list[Any] | None = None) -> Path:
    """Fine-tune and write ``checkpoint_final`` (LoRA merged); returns its path."""
    from datasets import Dataset
    from trl import SFTConfig as TrlSFTConfig

    from rl4rec.devices import resolve_device
    from rl4rec.policy.loading import load_policy
    from rl4rec.policy.precision import resolve_bf16
    from rl4rec.training.trl_backend import build_run_trainer

    config.validate()
    device = resolve_device(config.device)
    dataset = load_dataset(config.dataset_name, config.data_dir)  # fails fast on a missing dataset
    run = RunContext(config, callbacks=list(callbacks or []))
    resume_from = run.resume_checkpoint()
    run.prepare(resume_from)
    set_seed(config.seed)

    model, tokenizer = load_policy(config.model_name, device="cpu")
    tokenizer.padding_side = "right"  # training pads on the right; generation sets left again on load
    builder = PromptBuilder(
        dataset,
        tokenizer,
        prompt_config_from_flags(config),
    )
    samples = ranked_samples(config.completions_from) if config.completions_from else None  # read once
    examples = sft_examples(dataset, config, samples)
    prompts = letters = None
    if config.candidates:
        examples, prompts, letters = candidate_examples(dataset, examples, builder, config)
    if config.loss == DPO:
        assert samples is not None  # validated: dpo needs --completions_from
        rows = dpo_rows(examples, builder, preference_pairs(samples, str(config.completions_from)), prompts)
    else:
        answers = best_queries(samples) if samples is not None else None
        rows = sft_rows(dataset, examples, builder, prompts, answers, letters)
    _truncate_completions(rows, tokenizer, config.max_completion_tokens)
    logger.info(
        "%s data: %d examples from %d users", config.loss, len(rows), len({e.user_id for e in examples})
    )
    common = dict(
        output_dir=str(run.run_dir),
        per_device_train_batch_size=config.mini_batch_size,
        gradient_accumulation_steps=config.batch_size // config.mini_batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps (transformers 5)
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        max_length=config.max_length + config.max_completion_tokens + 8,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=resolve_bf16(config.bf16, device),
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5's name
        dataloader_num_workers=0,
    )
    ref_model = None
    if config.loss == DPO:
        from trl import DPOConfig

        args = DPOConfig(**common, beta=config.dpo_beta)  # the sigmoid (original) DPO loss
        # The reference is the starting policy: with LoRA the adapter-off model, else a frozen copy (TRL would
        # rebuild it from the model's config path, which for the offline GGUF policy is not a loadable id).
        if not config.use_peft:
            ref_model, _ = load_policy(config.model_name, device="cpu")
    else:
        args = TrlSFTConfig(**common, completion_only_loss=True)
    trainer = build_run_trainer(config.loss, run, model, tokenizer, args, Dataset.from_list(rows),
                                max_new_tokens=config.max_completion_tokens, merge_lora=config.use_peft,
                                ref_model=ref_model)  # fmt: skip
    done = checkpoint_step(resume_from) if resume_from is not None else 0
    if 0 < config.max_steps <= done and not config.use_peft:  # (a LoRA checkpoint holds adapters only)
        # HF would still run one more (zero learning-rate) step; the run is already complete.
        logger.info(
            "--resume: %s is at --max_steps %d already; writing the final checkpoint", resume_from, done
        )
        trainer.model, _ = load_policy(str(resume_from), device="cpu")
    else:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    out_model = trainer.model.merge_and_unload() if config.use_peft else trainer.model
    tokenizer.padding_side = "left"
    return run.save_final(lambda folder: out_model.save_pretrained(str(folder)), tokenizer)


def sft_main(argv: list[str] | None = None) -> int:
    from rl4rec.config_cli import parse_config

    config = parse_config(
        SFTConfig,
        argv,
        "rl4rec sft",
        "Supervised warm start: fine-tune the policy on the RL prompt -> the next item's text.",
    )  # validated
    final = run_sft(config)
    print(f"run directory: {config.checkpoint_dir}")
    print(f"final checkpoint: {final}")
    return 0
