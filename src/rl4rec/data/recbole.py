"""RecBole atomic files (``NAME.inter`` + ``NAME.item``) -> P5 layout.

Atomic files are tab-separated with typed headers (``item_id:token``, ``movie_title:token_seq``,
``timestamp:float``). The built-in default dataset, MovieLens-100k, ships inside the ``recbole``
wheel; we locate it with importlib without importing recbole (whose imports need old packages).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from rl4rec.data.p5 import write_p5
from rl4rec.data.remap import build_sequences
from rl4rec.errors import DataError

logger = logging.getLogger(__name__)

#: RecBole column name -> rl4rec metadata field.
FIELD_ALIASES = {"movie_title": "title", "item_title": "title", "release_year": "year", "class": "genres"}
TIME_COLUMNS = ("timestamp", "time")


def recbole_example_dir(name: str) -> Path:
    """Folder of a dataset bundled in the installed recbole wheel (e.g. ``ml-100k``)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the recbole package is not installed, so its bundled MovieLens-100k files are unavailable. "
            "Install it without its dependencies: `pip install --no-deps recbole==1.2.1` (make install does this)."
        )
    folder = Path(spec.submodule_search_locations[0]) / "dataset_example" / name
    if not (folder / f"{name}.inter").is_file():
        raise DataError(f"{folder}: recbole ships no atomic files for dataset {name!r} (ml-100k is bundled).")
    return folder


def _read_atomic(path: Path) -> tuple[list[tuple[str, str]], list[tuple[int, list[str]]]]:
    """Return ``([(column, type)], [(lineno, values)])`` for one atomic file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    with open(path, encoding="utf-8", newline=None) as handle:
        header = handle.readline().rstrip("\n").split("\t")
        columns = []
        for col in header:
            name, _, typ = col.partition(":")
            if not typ:
                raise DataError(
                    f"{path}:1: header column {col!r} lacks a type (expected e.g. 'item_id:token')."
                )
            columns.append((name.strip(), typ.strip()))
        rows = []
        for lineno, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            values = line.rstrip("\n").split("\t")
            if len(values) != len(columns):
                raise DataError(
                    f"{path}:{lineno}: expected {len(columns)} tab-separated fields, got {len(values)}."
                )
            rows.append((lineno, values))
    return columns, rows


def _column(columns: list[tuple[str, str]], path: Path, *names: str) -> int:
    for i, (name, _) in enumerate(columns):
        if name in names:
            return i
    raise DataError(f"{path}:1: no {' or '.join(names)} column in header {[c for c, _ in columns]}.")


def read_recbole(
    inter_path: Path, item_path: Path | None
) -> tuple[dict[int, list[int]], dict[int, dict[str, Any]]]:
    columns, rows = _read_atomic(inter_path)
    u_col = _column(columns, inter_path, "user_id")
    i_col = _column(columns, inter_path, "item_id")
    t_col = _column(columns, inter_path, *TIME_COLUMNS)
    interactions = []
    for lineno, values in rows:
        try:
            time = float(values[t_col])
        except ValueError:
            raise DataError(f"{inter_path}:{lineno}: timestamp {values[t_col]!r} is not a number.") from None
        interactions.append((values[u_col], values[i_col], time))
    if not interactions:
        raise DataError(f"{inter_path}: no interactions found.")
    sequences, _user_map, item_map = build_sequences(interactions)

    metadata: dict[int, dict[str, Any]] = {new: {"raw_id": raw} for raw, new in item_map.items()}
    if item_path is not None and item_path.is_file():
        icolumns, irows = _read_atomic(item_path)
        id_col = _column(icolumns, item_path, "item_id")
        for _lineno, values in irows:
            new_id = item_map.get(values[id_col])
            if new_id is None:  # catalogue items nobody interacted with are not rankable targets
                continue
            meta = metadata[new_id]
            for j, (name, typ) in enumerate(icolumns):
                if j == id_col or not values[j].strip():
                    continue
                field_name = FIELD_ALIASES.get(name, name)
                value: Any = values[j].strip()
                if field_name == "genres" or (typ == "token_seq" and field_name != "title"):
                    value = value.split()
                meta[field_name] = value
    else:
        logger.warning("no item file next to %s: items will be rendered by id only", inter_path)
    return sequences, metadata


def prepare_recbole(name: str, source_dir: Path | None, out_dir: Path) -> Path:
    """Convert ``source_dir/{name}.inter`` (+ ``.item``) into ``out_dir`` in the P5 layout."""
    folder = source_dir if source_dir is not None else recbole_example_dir(name)
    sequences, metadata = read_recbole(folder / f"{name}.inter", folder / f"{name}.item")
    info: dict[str, Any] = {"source": f"recbole atomic files ({folder})"}
    if name.startswith("ml-"):
        info.update(
            item_noun="movie", user_action="watched", item_text={"fields": ["title", "year", "genres"]}
        )
    return write_p5(out_dir, sequences, metadata, info)
