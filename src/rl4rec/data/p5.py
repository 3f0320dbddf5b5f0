"""The P5 on-disk layout every rl4rec dataset is stored in.

``DATA_DIR/{name}/sequential_data.txt``: one line per user, ``user item item ...`` in time order.
``DATA_DIR/{name}/item_metadata.json``: ``{"item id": {"title": ..., "brand": ..., ...}}``.
``DATA_DIR/{name}/dataset_info.json`` (optional): how to phrase prompts and render item text.

Readers validate as they go and report the file and line of the first problem, because a silent
mis-parse here would corrupt every number downstream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rl4rec.errors import DataError
from rl4rec.io import atomic_open, atomic_write_json

SEQUENCES_FILE = "sequential_data.txt"
METADATA_FILE = "item_metadata.json"
INFO_FILE = "dataset_info.json"


def read_sequences(path: str | Path) -> dict[int, list[int]]:
    """Read ``user item item ...`` lines (any whitespace, CRLF tolerated, blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: sequences file not found. Prepare the dataset first (e.g. `rl4rec prepare --dataset "
            f"ml-100k`) or pass --data_dir pointing at the folder that holds {path.parent.name}/{SEQUENCES_FILE}."
        )
    sequences: dict[int, list[int]] = {}
    with open(path, encoding="utf-8", newline=None) as handle:
        for lineno, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise DataError(
                    f"{path}:{lineno}: expected 'user_id item_id [item_id ...]', got {line.strip()!r}. "
                    "Every line needs a user id followed by at least one item id."
                )
            try:
                ids = [int(tok) for tok in tokens]
            except ValueError:
                bad = next(tok for tok in tokens if not tok.lstrip("-").isdigit())
                raise DataError(
                    f"{path}:{lineno}: non-integer id {bad!r}. Ids must be positive integers; convert raw ids "
                    "with `rl4rec prepare` (RecBole or Amazon sources remap them)."
                ) from None
            if min(ids) < 1:
                raise DataError(
                    f"{path}:{lineno}: ids must be >= 1 (0 is reserved for padding), got {min(ids)}."
                )
            user, items = ids[0], ids[1:]
            if user in sequences:
                raise DataError(
                    f"{path}:{lineno}: user {user} appears on more than one line; merge its items."
                )
            sequences[user] = items
    if not sequences:
        raise DataError(
            f"{path}: no interactions found (the file is empty). Check that the right file was given."
        )
    return sequences


def read_item_metadata(path: str | Path) -> dict[int, dict[str, Any]]:
    """Read ``{"id": {field: value}}``; ids must be the integers 1..N with no gaps.

    Gaps would leave score-matrix columns without an item, so they are rejected rather than padded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: item metadata file not found. Every dataset needs {METADATA_FILE} next to {SEQUENCES_FILE} "
            "(item id -> title, brand, categories); `rl4rec prepare` writes it."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a non-empty JSON object mapping item id -> metadata object.")
    items: dict[int, dict[str, Any]] = {}
    for key, value in raw.items():
        try:
            item_id = int(key)
        except ValueError:
            raise DataError(f"{path}: item id {key!r} is not an integer.") from None
        if not isinstance(value, dict):
            raise DataError(
                f"{path}: metadata of item {key} must be a JSON object, got {type(value).__name__}."
            )
        items[item_id] = value
    n = len(items)
    if min(items) != 1 or max(items) != n:
        missing = sorted(set(range(1, max(items) + 1)) - set(items))[:5]
        raise DataError(
            f"{path}: item ids must be exactly 1..N without gaps (found {n} ids from {min(items)} to {max(items)}"
            f"{', missing e.g. ' + str(missing) if missing else ''}). Re-map ids with `rl4rec prepare`."
        )
    return dict(sorted(items.items()))


def read_dataset_info(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object.")
    return info


def write_p5(
    out_dir: str | Path,
    sequences: Mapping[int, Sequence[int]],
    metadata: Mapping[int, Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a dataset in the P5 layout; each file appears atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / SEQUENCES_FILE) as handle:
        for user, items in sequences.items():
            handle.write(" ".join(str(x) for x in (user, *items)) + "\n")
    atomic_write_json(out_dir / METADATA_FILE, {str(k): dict(v) for k, v in metadata.items()})
    if info is not None:
        atomic_write_json(out_dir / INFO_FILE, dict(info))
    return out_dir
