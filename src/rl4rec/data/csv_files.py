"""Plain CSV files -> P5 layout: the shape most users' own data already has.

``--interactions FILE``: one row per interaction with columns ``user_id``, ``item_id`` and, optionally,
``timestamp`` (rows of one user without a timestamp keep their file order). ``--items FILE``: one row per
item with ``item_id`` and text columns (``title``, ``brand``, ``categories``, ...; a ``categories`` or
``genres`` cell may list several values separated by ``|``). Item ids in the interactions must appear in
the items file when one is given. Column names are matched case-insensitively.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rl4rec.data.p5 import write_p5
from rl4rec.data.remap import build_sequences
from rl4rec.errors import DataError

logger = logging.getLogger(__name__)
LIST_FIELDS = ("categories", "genres", "tags")


def _read(path: Path, required: tuple[str, ...]) -> Any:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc}).") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} column (columns: {list(frame.columns)}).")
    return frame


def read_csv_dataset(
    interactions: Path, items: Path | None
) -> tuple[dict[int, list[int]], dict[int, dict[str, Any]]]:
    frame = _read(interactions, ("user_id", "item_id"))
    if frame.empty:
        raise DataError(f"{interactions}: no interactions found.")
    times: list[float]
    if "timestamp" in frame.columns:
        try:
            times = [float(t) for t in frame["timestamp"]]
        except ValueError:
            bad = next(t for t in frame["timestamp"] if not _is_number(t))
            row = list(frame["timestamp"]).index(bad) + 2
            raise DataError(f"{interactions}:{row}: timestamp {bad!r} is not a number.") from None
    else:
        times = [0.0] * len(frame)  # build_sequences keeps file order among equal times
    rows = list(zip(frame["user_id"], frame["item_id"], times, strict=True))
    sequences, _users, item_map = build_sequences(rows)
    metadata: dict[int, dict[str, Any]] = {new: {"raw_id": raw} for raw, new in item_map.items()}
    if items is None:
        logger.warning("no --items file: items will be rendered by id only")
        return sequences, metadata
    catalogue = _read(items, ("item_id",))
    known = set(catalogue["item_id"])
    unknown = [raw for raw in item_map if raw not in known]
    if unknown:
        raise DataError(
            f"{interactions}: {len(unknown)} item ids are not in {items} (e.g. {unknown[0]!r}); "
            "add them to the items file or drop their interactions."
        )
    fields = [c for c in catalogue.columns if c != "item_id"]
    for record in catalogue.to_dict("records"):
        new_id = item_map.get(record["item_id"])
        if new_id is None:  # catalogue items nobody interacted with are not rankable targets
            continue
        for name in fields:
            value = str(record[name]).strip()
            if value:
                metadata[new_id][name] = (
                    [v.strip() for v in value.split("|")] if name in LIST_FIELDS else value
                )
    return sequences, metadata


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def prepare_csv(name: str, interactions: Path, items: Path | None, out_dir: Path) -> Path:
    """Convert the CSV files into ``out_dir`` in the P5 layout."""
    sequences, metadata = read_csv_dataset(interactions, items)
    info = {"source": f"csv files ({interactions}{', ' + str(items) if items else ''})"}
    return write_p5(out_dir, sequences, metadata, info)
