"""``rl4rec prepare`` and ``rl4rec stats`` (``rl4rec prompts`` loads models: :mod:`rl4rec.training.prompts_cli`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from rl4rec.config_cli import opt, parse_config
from rl4rec.data.dataset import DEFAULT_DATA_DIR, load_dataset
from rl4rec.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    """``rl4rec prepare``: each field is a flag (``--name``), with its help text."""

    dataset: str = opt(help="dataset name (folder name); ml-100k is built in")
    data_dir: str = opt(DEFAULT_DATA_DIR, "output root (default: %(default)s)")
    interactions: str | None = opt(
        None, "CSV of interactions: user_id, item_id[, timestamp] (your own data; see docs/data.md)"
    )
    items: str | None = opt(None, "CSV of items: item_id and text columns such as title, brand, categories")
    recbole_dir: str | None = opt(None, "folder holding NAME.inter and NAME.item (RecBole atomic files)")
    amazon_reviews: str | None = opt(None, "reviews_<Category>_5.json.gz: a path or an http(s) URL")
    amazon_meta: str | None = opt(None, "meta_<Category>.json.gz: a path or an http(s) URL")
    amazon_category: str | None = opt(
        None, "download the 2014 dumps of this category (e.g. Beauty) from the SNAP site"
    )
    download_dir: str = opt("data/raw", "where downloaded dumps are kept")


@dataclass
class StatsConfig:
    """``rl4rec stats``."""

    dataset: str = opt()
    data_dir: str = opt(DEFAULT_DATA_DIR)


def prepare_main(argv: list[str]) -> int:
    args = parse_config(
        PrepareConfig,
        argv,
        "rl4rec prepare",
        "Write DATA_DIR/NAME/ in the P5 layout from a built-in, RecBole or raw Amazon source.",
    )
    out = Path(args.data_dir) / args.dataset
    if args.items and not args.interactions:
        raise ConfigError("--items needs --interactions (the CSV of user_id, item_id[, timestamp] rows).")
    if args.interactions:
        from rl4rec.data.csv_files import prepare_csv

        prepare_csv(args.dataset, Path(args.interactions), Path(args.items) if args.items else None, out)
    elif args.amazon_category or args.amazon_reviews:
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
                f"no source for dataset {args.dataset!r}: pass --interactions (CSV), --recbole_dir, --amazon_reviews "
                "or --amazon_category "
                "(only ml-100k is built in)."
            )
        prepare_recbole(args.dataset, Path(args.recbole_dir) if args.recbole_dir else None, out)
    stats = load_dataset(args.dataset, args.data_dir).stats()
    print(json.dumps(stats))
    logger.info("wrote %s", out)
    return 0


def stats_main(argv: list[str]) -> int:
    args = parse_config(StatsConfig, argv, "rl4rec stats", "Print dataset statistics as one JSON object.")
    print(json.dumps(load_dataset(args.dataset, args.data_dir).stats()))
    return 0
