"""``rl4rec prompts``: show a split's prompts (optionally with a model's chat template and token budget)
and write user-preference files with an LLM.

It lives with the policy, not with the data: both subcommands load a tokenizer or a model, and
:mod:`rl4rec.data` never imports :mod:`rl4rec.policy`.
"""

from __future__ import annotations

import argparse

from rl4rec.data.dataset import DEFAULT_DATA_DIR, load_dataset


def _show(argv: list[str]) -> int:
    from rl4rec.data.prompts import PromptBuilder, PromptConfig, prompt_to_text
    from rl4rec.data.splits import leave_one_out

    parser = argparse.ArgumentParser(
        prog="rl4rec prompts show", description="Print example prompts of a split."
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--split", default="train", choices=["train", "valid", "test"])
    parser.add_argument("--num", type=int, default=1, help="how many prompts to print")
    parser.add_argument("--model", default=None, help="tokenizer for the chat template and token budget")
    parser.add_argument("--max_length", type=int, default=None, help="prompt token budget (needs --model)")
    parser.add_argument("--max_history_items", type=int, default=10)
    parser.add_argument("--prompt_order", default="oldest_first", choices=["oldest_first", "recent_first"])
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset, args.data_dir)
    tokenizer = None
    if args.model:
        from rl4rec.policy.loading import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    config = PromptConfig(
        max_items=args.max_history_items, order=args.prompt_order, max_length=args.max_length
    )
    builder = PromptBuilder(dataset, tokenizer, config)
    examples = leave_one_out(dataset.sequences, args.split).examples[: args.num]
    for example in examples:
        prompt = builder.build(example.history)
        print(f"# user {example.user_id}  target {example.target}: {dataset.item_text(example.target)}")
        if tokenizer is not None:
            print(f"# prompt tokens: {builder.count_tokens(prompt)}")
        print(prompt_to_text(prompt))
        print()
    return 0


def _preference(argv: list[str]) -> int:
    from rl4rec.policy.preference import PreferenceConfig, write_preferences

    parser = argparse.ArgumentParser(
        prog="rl4rec prompts preference",
        description="Have an LLM summarise each user's history; writes "
        "OUTPUT_DIR/{dataset}_{model}_{split}_user_preference.json (resumable).",
    )
    defaults = PreferenceConfig()
    parser.add_argument("--dataset", default=defaults.dataset)
    parser.add_argument(
        "--model", default=defaults.model, help="HF id, local path, .gguf, or smollm2-135m-instruct"
    )
    parser.add_argument("--split", default=defaults.split, choices=["train", "valid", "test"])
    parser.add_argument("--data_dir", "--data-dir", default=defaults.data_dir)
    parser.add_argument("--output_dir", default=defaults.output_dir)
    parser.add_argument("--num_users", type=int, default=None, help="only the first N users of the split")
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--max_new_tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--backend", default=defaults.backend, choices=["auto", "hf", "vllm"])
    args = parser.parse_args(argv)
    path = write_preferences(PreferenceConfig(**vars(args)))
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
