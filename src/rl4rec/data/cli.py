"""``rl4rec prepare`` and ``rl4rec stats`` (``rl4rec prompts`` loads models: :mod:`rl4rec.policy.cli`)."""

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
