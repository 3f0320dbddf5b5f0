"""``rl4rec prompts``: show a split's prompts (optionally with a model's chat template and token budget)
and write user-preference files with an LLM.

It lives with training: ``show`` prints the prompts training builds (a tokenizer from :mod:`rl4rec.policy`,
candidates from :mod:`rl4rec.retrieval`), and both floors are below this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rl4rec.config_cli import opt, parse_config
from rl4rec.data.dataset import DEFAULT_DATA_DIR, load_dataset
from rl4rec.data.prompts import PromptFlags


@dataclass(kw_only=True)  # after PromptFlags' defaults, --dataset stays required
class ShowConfig(PromptFlags):
    """``rl4rec prompts show``: each field is a flag (``--name``), with its help text; the prompt flags are
    ``rl4rec train``'s."""

    dataset: str = opt()
    data_dir: str = opt(DEFAULT_DATA_DIR)
    split: str = opt("train", one_of=("train", "valid", "test"))
    num: int = opt(1, "how many prompts to print", at_least=1)
    model: str | None = opt(None, "tokenizer for the chat template and token budget")
    max_length: int | None = opt(None, "prompt token budget (needs --model)", at_least=16)


def _show(argv: list[str]) -> int:
    from rl4rec.data.prompts import PromptBuilder, prompt_config_from_flags, prompt_to_text
    from rl4rec.data.splits import leave_one_out
    from rl4rec.retrieval.recall import build_prompts

    args = parse_config(ShowConfig, argv, "rl4rec prompts show", "Print example prompts of a split.")
    dataset = load_dataset(args.dataset, args.data_dir)
    tokenizer = None
    if args.model:
        from rl4rec.policy.loading import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    builder = PromptBuilder(dataset, tokenizer, prompt_config_from_flags(args))
    examples = leave_one_out(dataset.sequences, args.split).examples[: args.num]
    service = None
    if args.candidates:
        from rl4rec.retrieval.shared import local_service

        service = local_service(args.dataset, args.data_dir)
    prompts, _ = build_prompts(builder, examples, args, service, dataset.name, split=args.split)
    for example, prompt in zip(examples, prompts, strict=True):
        print(f"# user {example.user_id}  target {example.target}: {dataset.item_text(example.target)}")
        if tokenizer is not None:
            print(f"# prompt tokens: {builder.count_tokens(prompt)}")
        print(prompt_to_text(prompt))
        print()
    return 0


def _preference(argv: list[str]) -> int:
    from rl4rec.policy.preference import PreferenceConfig, write_preferences

    config = parse_config(
        PreferenceConfig,
        argv,
        "rl4rec prompts preference",
        "Have an LLM summarise each user's history; writes "
        "OUTPUT_DIR/{dataset}_{model}_{split}_user_preference.json (resumable).",
    )
    path = write_preferences(config)
    print(path)
    return 0


def prompts_main(argv: list[str]) -> int:
    if argv and argv[0] == "preference":
        return _preference(argv[1:])
    if argv and argv[0] == "show":
        return _show(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print("usage: rl4rec prompts {show,preference} [options]")
        return 0
    return _show(argv)
