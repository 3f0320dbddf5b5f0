"""Retrieval stage: embed texts, score the whole catalogue, rank targets (in-process or as a Ray actor)."""

from rl4rec.retrieval.embedder import DEFAULT_EMBEDDER, Embedder, EmbedderConfig
from rl4rec.retrieval.item_index import ItemIndex
from rl4rec.retrieval.ray_service import NAMESPACE, NOT_FOUND_MESSAGE, SERVICE_NAME
from rl4rec.retrieval.service import RetrievalService

__all__ = [
    "DEFAULT_EMBEDDER",
    "NAMESPACE",
    "NOT_FOUND_MESSAGE",
    "SERVICE_NAME",
    "Embedder",
    "EmbedderConfig",
    "ItemIndex",
    "RetrievalService",
]
