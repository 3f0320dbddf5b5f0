"""Raw Amazon 2014 review dumps -> P5 layout, with P5's conventions.

Inputs are ``reviews_<Category>_5.json.gz`` (one JSON object per line: reviewerID, asin,
unixReviewTime, ...) and ``meta_<Category>.json.gz`` (one Python-literal dict per line: asin,
title, brand, categories, ...), as published by McAuley et al. Sequences are ordered by review
time; ids follow :mod:`rl4rec.data.remap`; HTML entities in text are decoded.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import logging
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from rl4rec.data.p5 import write_p5
from rl4rec.data.remap import build_sequences
from rl4rec.errors import DataError
from rl4rec.io import atomic_open

logger = logging.getLogger(__name__)

BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


def default_urls(category: str) -> tuple[str, str]:
    return f"{BASE_URL}/reviews_{category}_5.json.gz", f"{BASE_URL}/meta_{category}.json.gz"


def fetch(source: str, download_dir: Path) -> Path:
    """Return a local path for ``source``, downloading it first when it is an http(s) URL."""
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: file not found.")
        return path
    target = download_dir / source.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    logger.info("downloading %s", source)
    try:
        with urllib.request.urlopen(source, timeout=60) as response, atomic_open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise DataError(
            f"could not download {source} ({exc}). Download it by hand and pass the local file instead."
        ) from None
    return target


def _open_lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from enumerate(handle, start=1)


def _parse_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        try:  # the metadata dumps are Python literals, not JSON
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise DataError(f"{path}:{lineno}: neither JSON nor a Python dict literal.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected an object, got {type(obj).__name__}.")
    return obj


def _unescape(value: Any) -> Any:
    if isinstance(value, str):
        value = " ".join(html.unescape(value).split())
        return value or None
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


def read_amazon(
    reviews_path: Path, meta_path: Path | None
) -> tuple[dict[int, list[int]], dict[int, dict[str, Any]]]:
    interactions = []
    for lineno, line in _open_lines(reviews_path):
        if not line.strip():
            continue
        obj = _parse_line(reviews_path, lineno, line)
        try:
            interactions.append((obj["reviewerID"], obj["asin"], float(obj["unixReviewTime"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{reviews_path}:{lineno}: a review needs reviewerID, asin and a numeric unixReviewTime ({exc})."
            ) from None
    if not interactions:
        raise DataError(f"{reviews_path}: no reviews found.")
    sequences, _users, item_map = build_sequences(interactions)
    metadata: dict[int, dict[str, Any]] = {
        new: {"title": None, "brand": None, "categories": [], "asin": asin} for asin, new in item_map.items()
    }
    if meta_path is not None:
        for lineno, line in _open_lines(meta_path):
            if not line.strip():
                continue
            obj = _parse_line(meta_path, lineno, line)
            new_id = item_map.get(obj.get("asin"))
            if new_id is None:
                continue
            categories = obj.get("categories") or []
            first_path = categories[0] if categories and isinstance(categories[0], list) else categories
            metadata[new_id].update(
                title=_unescape(obj.get("title")),
                brand=_unescape(obj.get("brand")),
                categories=[c for c in _unescape(list(first_path)) if c],
            )
    return sequences, metadata


def prepare_amazon(name: str, reviews: str, meta: str | None, out_dir: Path, download_dir: Path) -> Path:
    reviews_path = fetch(reviews, download_dir)
    meta_path = fetch(meta, download_dir) if meta else None
    sequences, metadata = read_amazon(reviews_path, meta_path)
    info = {
        "source": f"amazon 2014 dumps ({reviews_path.name})",
        "item_noun": "product",
        "user_action": "bought",
    }
    return write_p5(out_dir, sequences, metadata, info)
