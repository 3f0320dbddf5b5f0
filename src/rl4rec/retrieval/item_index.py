"""Item embeddings for one dataset, cached on disk and scored exactly by one matrix product.

The cache file is safetensors (no pickle) named by a key over everything that changes the
vectors: dataset name, the rendered item texts, the embedder and its prefixes. A changed key
means a new file and a rebuild. Every file also stores a SHA-256 of its tensor bytes; a truncated
or corrupted file fails the check and is rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from rl4rec.data.dataset import RecDataset
from rl4rec.io import atomic_write_bytes, build_lock, cache_dir
from rl4rec.retrieval.embedder import Embedder

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"


def index_key(dataset: RecDataset, embedder: Embedder) -> str:
    h = hashlib.sha256()
    parts = {
        "format": FORMAT_VERSION,
        "dataset": dataset.name,
        "model": embedder.model_id,
        "document_prefix": embedder.config.document_prefix,
        "text_config": dataset.text_config.key(),
    }
    h.update(json.dumps(parts, sort_keys=True).encode())
    for text in dataset.item_texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class ItemIndex:
    """``embeddings[j]`` is item id ``j + 1``; ``scores(q)[b, j] = <q_b, e_j>``."""

    def __init__(self, name: str, embeddings: torch.Tensor) -> None:
        self.name = name
        self.embeddings = embeddings  # [n_items, dim], on the embedder's device

    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        return queries.to(self.embeddings.device, self.embeddings.dtype) @ self.embeddings.T

    @staticmethod
    def cache_path(dataset: RecDataset, embedder: Embedder, root: Path | None = None) -> Path:
        root = Path(root) if root is not None else cache_dir() / "item_index"
        return root / f"{dataset.name}-{index_key(dataset, embedder)[:20]}.safetensors"

    @classmethod
    def load_or_build(
        cls, dataset: RecDataset, embedder: Embedder, root: Path | None = None, show_progress: bool = True
    ) -> ItemIndex:
        path = cls.cache_path(dataset, embedder, root)
        array = cls._load(path, dataset.n_items, embedder.dim)
        if array is None:
            with build_lock(path):  # ranks / workers starting together encode the catalogue once
                array = cls._load(path, dataset.n_items, embedder.dim)
                if array is None:
                    array = cls._build(path, dataset, embedder, show_progress)
        return cls(dataset.name, torch.from_numpy(array).to(embedder.device))

    @staticmethod
    def _build(path: Path, dataset: RecDataset, embedder: Embedder, show_progress: bool) -> np.ndarray:
        logger.info("embedding %d items of %s -> %s", dataset.n_items, dataset.name, path)
        emb = embedder.encode_documents(dataset.item_texts, show_progress=show_progress)
        array = emb.cpu().numpy()
        if not np.isfinite(array).all():
            raise ValueError(f"the embedder produced non-finite item embeddings for {dataset.name}.")
        atomic_write_bytes(path, save({"embeddings": array}, metadata={"sha256": _checksum(array)}))
        return array

    @staticmethod
    def _load(path: Path, n_items: int, dim: int) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            array = load_file(str(path))["embeddings"]
            with open(path, "rb") as handle:
                header_len = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(header_len))
            expected = header.get("__metadata__", {}).get("sha256")
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            logger.warning("item-index cache %s is unreadable (%s); rebuilding it", path, exc)
            return None
        if array.shape != (n_items, dim) or array.dtype != np.float32:
            logger.warning(
                "item-index cache %s has shape %s, expected (%d, %d); rebuilding",
                path,
                array.shape,
                n_items,
                dim,
            )
            return None
        if expected != _checksum(array):
            logger.warning("item-index cache %s failed its checksum (corrupted); rebuilding it", path)
            return None
        return array
