"""Shared id remapping for every raw-format reader (RecBole, raw Amazon).

Convention (the one P5's Beauty file follows): users are numbered 1..U in order of first
appearance in the interaction file; items are numbered 1..I in order of first appearance when the
users' time-ordered sequences are read in user order. Ties in time keep file order (stable sort).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def build_sequences(
    interactions: Iterable[tuple[Hashable, Hashable, float]],
) -> tuple[dict[int, list[int]], dict[Hashable, int], dict[Hashable, int]]:
    """Group ``(raw_user, raw_item, time)`` rows into remapped, time-ordered sequences.

    Returns ``(sequences, user_map, item_map)`` where the maps go from raw id to new id.
    """
    per_user: dict[Hashable, list[tuple[float, int, Hashable]]] = {}
    for row_index, (user, item, time) in enumerate(interactions):
        per_user.setdefault(user, []).append((time, row_index, item))
    user_map: dict[Hashable, int] = {}
    item_map: dict[Hashable, int] = {}
    sequences: dict[int, list[int]] = {}
    for raw_user, rows in per_user.items():
        uid = user_map.setdefault(raw_user, len(user_map) + 1)
        rows.sort(key=lambda r: (r[0], r[1]))
        sequences[uid] = [item_map.setdefault(item, len(item_map) + 1) for _, _, item in rows]
    return sequences, user_map, item_map
