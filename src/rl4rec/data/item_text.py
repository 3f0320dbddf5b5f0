"""The one function that turns item metadata into text.

Prompts show items to the policy and the item index embeds items for retrieval; both call
:func:`render_item_text` with the same :class:`ItemTextConfig`, so the policy learns to write in the
vocabulary the index was built from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Values that mean "no value" in public metadata dumps (Amazon uses the literal "Unknown").
_EMPTY = {"", "unknown", "none", "null", "n/a"}

#: Fields shown when the configured ones yield nothing (an item without a title).
FALLBACK_FIELDS = ("brand", "categories", "genres")


@dataclass(frozen=True)
class ItemTextConfig:
    """Which metadata fields make up an item's text, in order.

    ``title`` is written bare; ``categories`` is a path joined with ``category_separator``; any other
    list field is joined with ", "; any other field is written as ``Label: value``.
    """

    fields: tuple[str, ...] = ("title", "brand", "categories")
    category_separator: str = " > "
    #: Drop the first category level (e.g. "Beauty" for every Beauty item), which says nothing.
    skip_root_category: bool = True
    max_chars: int | None = 300

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ItemTextConfig:
        if not data:
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "fields" in kwargs:
            kwargs["fields"] = tuple(kwargs["fields"])
        return cls(**kwargs)

    def key(self) -> str:
        """A stable string that identifies the rendering (part of the item-index cache key)."""
        return repr((self.fields, self.category_separator, self.skip_root_category, self.max_chars))


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = " ".join(value.split())
        return None if value.lower() in _EMPTY else value
    if isinstance(value, (list, tuple)):
        cleaned = [_clean(v) for v in value]
        cleaned = [v for v in cleaned if v]
        return cleaned or None
    return value


def _render_field(name: str, value: Any, config: ItemTextConfig) -> str | None:
    value = _clean(value)
    if value is None:
        return None
    if name == "title":
        return str(value)
    label = name.replace("_", " ").capitalize()
    if name == "categories" and isinstance(value, list):
        # Some sources store several category paths; render the first.
        path = value[0] if value and isinstance(value[0], list) else value
        path = [str(v) for v in path]
        if config.skip_root_category and len(path) > 1:
            path = path[1:]
        return f"{label}: {config.category_separator.join(path)}"
    if isinstance(value, list):
        return f"{label}: {', '.join(str(v) for v in value)}"
    return f"{label}: {value}"


def render_item_text(
    metadata: Mapping[str, Any], config: ItemTextConfig | None = None, item_id: int | None = None
) -> str:
    """Render one item; an item with no title falls back to its brand and categories."""
    config = config or ItemTextConfig()
    fields: Sequence[str] = config.fields
    if _clean(metadata.get("title")) is None:
        fields = [f for f in fields if f != "title"] + [f for f in FALLBACK_FIELDS if f not in fields]
    parts = [p for p in (_render_field(f, metadata.get(f), config) for f in fields) if p]
    text = ". ".join(parts) if parts else (f"Item {item_id}" if item_id is not None else "Unknown item")
    if config.max_chars is not None and len(text) > config.max_chars:
        text = text[: config.max_chars].rsplit(" ", 1)[0] + " ..."
    return text
