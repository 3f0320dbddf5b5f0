"""A loaded recommendation dataset: user sequences plus the item catalogue."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl4rec.data.item_text import ItemTextConfig, render_item_text
from rl4rec.data.p5 import (
    INFO_FILE,
    METADATA_FILE,
    SEQUENCES_FILE,
    read_dataset_info,
    read_item_metadata,
    read_sequences,
)
from rl4rec.errors import DataError

#: Where datasets live unless --data_dir says otherwise (the seed reads ``data/beauty/...``).
DEFAULT_DATA_DIR = "data"

#: Prompt phrasing and item rendering for datasets that ship without a dataset_info.json.
KNOWN_DATASET_INFO: dict[str, dict[str, Any]] = {
    "beauty": {"item_noun": "beauty product", "user_action": "bought"},
    "sports": {"item_noun": "sports product", "user_action": "bought"},
    "toys": {"item_noun": "toy", "user_action": "bought"},
    "ml-100k": {
        "item_noun": "movie",
        "user_action": "watched",
        "item_text": {"fields": ["title", "year", "genres"]},
    },
}


def default_data_dir() -> Path:
    return Path(os.environ.get("RL4REC_DATA_DIR", DEFAULT_DATA_DIR))


@dataclass
class RecDataset:
    """Sequences (user -> items in time order) and metadata (item id 1..N -> fields)."""

    name: str
    root: Path
    sequences: dict[int, list[int]]
    items: dict[int, dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def item_noun(self) -> str:
        return str(self.info.get("item_noun", "item"))

    @property
    def user_action(self) -> str:
        return str(self.info.get("user_action", "interacted with"))

    @property
    def text_config(self) -> ItemTextConfig:
        return ItemTextConfig.from_dict(self.info.get("item_text"))

    @functools.cached_property
    def item_texts(self) -> list[str]:
        """Rendered text of every item; index ``i`` is item id ``i + 1`` (the score-matrix layout)."""
        config = self.text_config
        return [render_item_text(self.items[i], config, item_id=i) for i in range(1, self.n_items + 1)]

    def item_text(self, item_id: int) -> str:
        return self.item_texts[item_id - 1]

    @functools.cached_property
    def short_item_texts(self) -> list[str]:
        """A compact rendering (no category path, at most 120 characters) for long lists such as candidates."""
        config = self.text_config
        fields = tuple(f for f in config.fields if f not in ("categories", "genres")) or config.fields
        short = dataclasses.replace(config, fields=fields, max_chars=120)
        return [render_item_text(self.items[i], short, item_id=i) for i in range(1, self.n_items + 1)]

    def stats(self) -> dict[str, Any]:
        lengths = [len(s) for s in self.sequences.values()]
        untitled = sum(1 for meta in self.items.values() if not (meta.get("title") or "").strip())
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": sum(lengths),
            "mean_sequence_length": round(sum(lengths) / len(lengths), 4),
            "min_sequence_length": min(lengths),
            "max_sequence_length": max(lengths),
            "items_without_title": untitled,
            "items_never_interacted": self.n_items - len({i for s in self.sequences.values() for i in s}),
        }


def _line_of_user(path: Path, user: int) -> int:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.split()[:1] == [str(user)]:
                return lineno
    return 0


def _check_items_known(path: Path, sequences: dict[int, list[int]], n_items: int) -> None:
    for user, items in sequences.items():
        bad = [i for i in items if i > n_items]
        if bad:
            raise DataError(
                f"{path}:{_line_of_user(path, user)}: item {bad[0]} of user {user} is not in {METADATA_FILE} "
                f"(items 1..{n_items}). Add its metadata or remove it from the sequences."
            )


@functools.lru_cache(maxsize=8)
def _load_cached(root: str, name: str, mtimes: tuple[float, ...]) -> RecDataset:
    del mtimes  # part of the cache key only: reload when a file changes
    folder = Path(root)
    sequences = read_sequences(folder / SEQUENCES_FILE)
    items = read_item_metadata(folder / METADATA_FILE)
    _check_items_known(folder / SEQUENCES_FILE, sequences, len(items))
    info = {**KNOWN_DATASET_INFO.get(name, {}), **read_dataset_info(folder / INFO_FILE)}
    return RecDataset(name=name, root=folder, sequences=sequences, items=items, info=info)


def load_dataset(name: str, data_dir: str | Path | None = None) -> RecDataset:
    """Load ``data_dir/name`` (P5 layout), validating it; repeated loads are cached in memory."""
    if not name or "/" in name or name.startswith("."):
        raise DataError(f"invalid dataset name {name!r}: use a folder name such as 'beauty' or 'ml-100k'.")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = data_dir / name
    if not folder.is_dir():
        hint = (
            "run `rl4rec prepare --dataset ml-100k`"
            if name == "ml-100k"
            else f"pass --data_dir pointing at the folder that contains {name}/ (e.g. ../shared/data)"
        )
        raise DataError(f"dataset folder {folder} not found: {hint}.")
    files = [folder / SEQUENCES_FILE, folder / METADATA_FILE, folder / INFO_FILE]
    mtimes = tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)
    return _load_cached(str(folder.resolve()), name, mtimes)
