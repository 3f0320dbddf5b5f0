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
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl4rec.data.dataset import RecDataset, load_dataset
from rl4rec.data.prompts import PromptBuilder, prompt_config_from_flags
from rl4rec.data.splits import Example, leave_one_out
from rl4rec.errors import ConfigError
from rl4rec.training.config import HeldOutFlags, _f, check_prompt_flags
from rl4rec.training.run_context import RunContext, checkpoint_step, lora_config, set_seed

logger = logging.getLogger(__name__)


@dataclass
class SFTConfig(HeldOutFlags):
    model_name: str = _f(
        "smollm2-135m-instruct", "Policy to fine-tune: HF id, local folder, .gguf, or the offline default."
    )
    dataset_name: str = _f("beauty", "Dataset folder under --data_dir (P5 layout).")
    data_dir: str = _f("data", "Folder holding the dataset folders.")
    checkpoint_dir: str = _f("checkpoints/sft", "Run directory: checkpoints, metrics.jsonl, run_config.json.")
    device: str = _f("auto", "cuda | cpu | auto.")
    # -- data (prompt settings share their names with `rl4rec train`) -------------------------------
    max_length: int = _f(
        256, "Prompt token budget (chat template included); oldest history items are dropped."
    )
    max_history_items: int = _f(10, "Most recent history items shown in a prompt.")
    prompt_order: str = _f("oldest_first", "oldest_first | recent_first.")
    train_targets: str = _f(
        "last", "last (each user's third-to-last item) | all (every earlier position of s[:-2] too)."
    )
    max_examples: int | None = _f(
        None, "Train on a seeded random sample of this many examples (default: all of the split)."
    )
    max_completion_tokens: int = _f(64, "Completion (item text) tokens kept; longer texts are cut.")
    # -- optimisation ---------------------------------------------------------------------------------
    learning_rate: float = _f(5e-5, "AdamW learning rate (linear decay to 0).")
    warmup_ratio: float = _f(0.03, "Share of steps with linear warm-up.")
    batch_size: int = _f(8, "Examples per optimisation step.")
    mini_batch_size: int = _f(
        8, "Per-device micro-batch; gradient accumulation = batch_size / mini_batch_size."
    )
    num_epochs: float = _f(1.0, "Passes over the examples.")
    max_steps: int = _f(-1, "Stop after this many steps (-1: run num_epochs).")
    gradient_checkpointing: bool = _f(
        False, "Recompute activations in the backward pass (less memory, ~30 %% more compute; TRL's default)."
    )
    bf16: str = _f(
        "auto",
        "bfloat16 autocast with fp32 master weights: on | off | auto (on where the device computes bf16 "
        "natively: a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), as in `rl4rec train`.",
    )
    use_peft: bool = _f(
        False, "Train LoRA adapters (merged into the final checkpoint) instead of all weights."
    )
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    # -- run --------------------------------------------------------------------------------------------
    seed: int = _f(42, "Random seed (example sample, data order, initialisation).")
    save_steps: int = _f(100, "Write checkpoint_dir/checkpoint_step_N every N steps.")
    resume: bool = _f(False, "Continue from the newest checkpoint_step_N in checkpoint_dir.")

    def validate(self) -> SFTConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        check_prompt_flags(self)
        need(self.bf16 in ("auto", "on", "off"), f"--bf16 must be auto, on or off, got {self.bf16!r}.")
        need(
            self.max_examples is None or self.max_examples >= 1,
            f"--max_examples must be >= 1, got {self.max_examples}.",
        )
        need(self.max_completion_tokens >= 1, "--max_completion_tokens must be >= 1.")
        need(self.learning_rate > 0, f"--learning_rate must be > 0, got {self.learning_rate}.")
        need(0 <= self.warmup_ratio < 1, f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        need(
            self.batch_size >= 1 and self.mini_batch_size >= 1,
            "--batch_size and --mini_batch_size must be >= 1.",
        )
        need(
            self.batch_size % self.mini_batch_size == 0,
            f"--batch_size ({self.batch_size}) must be divisible by --mini_batch_size ({self.mini_batch_size}).",
        )
        need(self.num_epochs > 0, f"--num_epochs must be > 0, got {self.num_epochs}.")
        need(
            self.max_steps == -1 or self.max_steps >= 1,
            f"--max_steps must be -1 or >= 1, got {self.max_steps}.",
        )
        need(self.save_steps >= 1, f"--save_steps must be >= 1, got {self.save_steps}.")
        need(self.lora_r >= 1, f"--lora_r must be >= 1, got {self.lora_r}.")
        from rl4rec.training.heldout import check_heldout_flags

        check_heldout_flags(self)
        return self

    def to_json(self) -> str:
        import json

        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


# -- data --------------------------------------------------------------------------------------------
def sft_examples(dataset: RecDataset, config: SFTConfig) -> list[Example]:
    """Training-split examples only (targets at or before each user's third-to-last item), sampled."""
    examples = leave_one_out(dataset.sequences, "train", config.train_targets).examples
    if config.max_examples is not None and config.max_examples < len(examples):
        examples = random.Random(config.seed).sample(examples, config.max_examples)
    if not examples:
        raise ConfigError(
            f"no training examples in {dataset.name}: every user is too short for the train split."
        )
    return examples


def sft_rows(dataset: RecDataset, examples: list[Example], builder: PromptBuilder) -> list[dict[str, Any]]:
    """Prompt-completion rows: the RL prompt and the target item's text as the assistant's answer."""
    rows = []
    for ex in examples:
        prompt = builder.build(ex.history)
        answer = dataset.item_text(ex.target)
        completion: Any = (
            [{"role": "assistant", "content": answer}] if isinstance(prompt, list) else " " + answer
        )
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def _truncate_completions(rows: list[dict[str, Any]], tokenizer: Any, max_tokens: int) -> None:
    for row in rows:
        completion = row["completion"]
        text = completion[0]["content"] if isinstance(completion, list) else completion
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            text = tokenizer.decode(ids[:max_tokens])
            if isinstance(completion, list):
                completion[0]["content"] = text
            else:
                row["completion"] = text


# -- run ---------------------------------------------------------------------------------------------
def _trainer_class() -> type:
    from trl import SFTTrainer

    from rl4rec.training.trl_backend import CheckpointPublishMixin

    class Rl4recSFTTrainer(CheckpointPublishMixin, SFTTrainer):
        pass

    return Rl4recSFTTrainer


def run_sft(config: SFTConfig, callbacks: list[Any] | None = None) -> Path:
    """Fine-tune and write ``checkpoint_final`` (LoRA merged); returns its path."""
    from datasets import Dataset
    from trl import SFTConfig as TrlSFTConfig

    from rl4rec.devices import resolve_device
    from rl4rec.policy.loading import load_policy
    from rl4rec.policy.precision import resolve_bf16
    from rl4rec.training.callbacks import MetricsFileCallback, ProgressCallback, add_heldout_callback

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
    examples = sft_examples(dataset, config)
    rows = sft_rows(dataset, examples, builder)
    _truncate_completions(rows, tokenizer, config.max_completion_tokens)
    logger.info("sft data: %d examples from %d users", len(rows), len({e.user_id for e in examples}))
    args = TrlSFTConfig(
        output_dir=str(run.run_dir),
        per_device_train_batch_size=config.mini_batch_size,
        gradient_accumulation_steps=config.batch_size // config.mini_batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps (transformers 5)
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        max_length=config.max_length + config.max_completion_tokens + 8,
        completion_only_loss=True,
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
    metrics_cb = MetricsFileCallback(run.metrics_log)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=[metrics_cb, ProgressCallback(metrics_cb), *run.callbacks],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.rl4rec_config = config
    add_heldout_callback(trainer, run, tokenizer, config.max_completion_tokens, merge_lora=config.use_peft)
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
