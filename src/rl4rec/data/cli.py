"""``rl4rec prepare``, ``rl4rec stats`` and ``rl4rec prompts``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rl4rec.data.dataset import DEFAULT_DATA_DIR, load_dataset
from rl4rec.errors import ConfigError

logger = logging.getLogger(__name__)


def prepare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rl4rec prepare",
        description="Write DATA_DIR/NAME/ in the P5 layout from a built-in, RecBole or raw Amazon source.",
    )
    parser.add_argument("--dataset", required=True, help="dataset name (folder name); ml-100k is built in")
    parser.add_argument(
        "--data_dir", "--data-dir", default=DEFAULT_DATA_DIR, help="output root (default: data)"
    )
    parser.add_argument(
        "--recbole_dir", help="folder holding NAME.inter and NAME.item (RecBole atomic files)"
    )
    parser.add_argument("--amazon_reviews", help="reviews_<Category>_5.json.gz: a path or an http(s) URL")
    parser.add_argument("--amazon_meta", help="meta_<Category>.json.gz: a path or an http(s) URL")
    parser.add_argument(
        "--amazon_category", help="download the 2014 dumps of this category (e.g. Beauty) from the SNAP site"
    )
    parser.add_argument("--download_dir", default="data/raw", help="where downloaded dumps are kept")
    args = parser.parse_args(argv)
    out = Path(args.data_dir) / args.dataset
    if args.amazon_category or args.amazon_reviews:
        from rl4rec.data.amazon import default_urls, prepare_amazon

        reviews, meta = args.amazon_reviews, args.amazon_meta
        if args.amazon_category:
            reviews_url, meta_url = default_urls(args.amazon_category)
            reviews, meta = reviews or reviews_url, meta or meta_url
        prepare_amazon(args.dataset, reviews, meta, out, Path(args.download_dir))
    else:
        from rl4rec.data.recbole import prepare_recbole

        if args.recbole_dir is None and args.dataset != "ml-100k":
            raise ConfigError(
                f"no source for dataset {args.dataset!r}: pass --recbole_dir, --amazon_reviews or --amazon_category "
                "(only ml-100k is built in)."
            )
        prepare_recbole(args.dataset, Path(args.recbole_dir) if args.recbole_dir else None, out)
    stats = load_dataset(args.dataset, args.data_dir).stats()
    print(json.dumps(stats))
    logger.info("wrote %s", out)
    return 0


def stats_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rl4rec stats", description="Print dataset statistics as one JSON object."
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    print(json.dumps(load_dataset(args.dataset, args.data_dir).stats()))
    return 0


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
