"""The process-wide in-process RetrievalService.

Training, evaluation, fusion tuning and several reward functions in one process share one service,
so the embedder, the item index and the co-occurrence tables are loaded once per (data_dir, embedder).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rl4rec.retrieval.embedder import EmbedderConfig

_local_services: dict[tuple[Any, ...], Any] = {}
_local_lock = threading.Lock()


def local_service(
    dataset_name: str, data_dir: str | Path | None = None, embedder: EmbedderConfig | None = None
) -> Any:
    """The shared in-process RetrievalService with ``dataset_name`` loaded."""
    from rl4rec.retrieval.service import RetrievalService

    embedder = embedder or EmbedderConfig()
    key = (str(Path(data_dir).resolve()) if data_dir else None, embedder)
    with _local_lock:
        service = _local_services.get(key)
        if service is None:
            service = RetrievalService(datasets=[], data_dir=data_dir, embedder=embedder)
            _local_services[key] = service
        if dataset_name not in service.datasets():
            service.add_dataset(dataset_name)
    return service
