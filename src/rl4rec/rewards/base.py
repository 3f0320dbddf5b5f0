"""The seed's reward API: ``RLRewardFunction`` and ``create_reward_function``.

A reward function maps ``(generated_texts, target_items, history_items)`` to one float per text.
Subclasses override ``__call__`` and may use ``self.get_scores(texts)`` (a ``[batch, n_items]``
score matrix, column j = item j+1) together with the metrics in :mod:`rl4rec.rewards.metrics`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.retrieval.client import LocalClient, RayClient
from rl4rec.retrieval.embedder import EmbedderConfig
from rl4rec.retrieval.ray_service import NAMESPACE, SERVICE_NAME
from rl4rec.rewards.metrics import DEFAULT_MIXED_WEIGHT, REWARD_TYPES, reward_name

BACKENDS = ("ray", "local")

_local_services: dict[tuple[Any, ...], Any] = {}
_local_lock = threading.Lock()


def local_service(
    dataset_name: str, data_dir: str | Path | None = None, embedder: EmbedderConfig | None = None
) -> Any:
    """A process-wide in-process RetrievalService, loaded once per (data_dir, embedder).

    Training, evaluation and several reward functions in one process share it, so the embedder and
    the item index are loaded once.
    """
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


def validate_reward_args(reward_type: str, k: int, mixed_weight: float = DEFAULT_MIXED_WEIGHT) -> None:
    if reward_type not in REWARD_TYPES:
        raise ConfigError(f"unknown reward_type {reward_type!r}: choose one of {', '.join(REWARD_TYPES)}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}.")
    if not 0.0 <= mixed_weight <= 1.0:
        raise ConfigError(f"mixed_weight must be in [0, 1], got {mixed_weight}.")


class RLRewardFunction:
    """Base reward function: the retrieval reward of each generated text.

    Override ``__call__`` for custom rewards; ``get_scores`` gives the raw score matrix.
    """

    def __init__(
        self,
        retrieval_service_name: str = SERVICE_NAME,
        namespace: str = NAMESPACE,
        dataset_name: str = "beauty",
        reward_type: str = "ndcg",
        k: int = 10,
        backend: str = "ray",
        mixed_weight: float = DEFAULT_MIXED_WEIGHT,
        data_dir: str | Path | None = None,
        embedder: EmbedderConfig | None = None,
        address: str | None = "auto",
        retry_timeout_s: float = 300.0,
        client: Any = None,
    ) -> None:
        validate_reward_args(reward_type, k, mixed_weight)
        if backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {backend!r}: choose 'ray' (named actor) or 'local' (in-process)."
            )
        self.dataset_name = dataset_name
        self.reward_type = reward_type
        self.k = int(k)
        self.mixed_weight = mixed_weight
        self.backend = backend
        if client is not None:
            self.client = client
        elif backend == "local":
            self.client = LocalClient(local_service(dataset_name, data_dir, embedder))
        else:
            self.client = RayClient(
                retrieval_service_name, namespace, address, retry_timeout_s=retry_timeout_s
            )

    @property
    def __name__(self) -> str:  # TRL names reward columns after the function
        return reward_name(self.reward_type, self.k)

    def get_scores(self, generated_texts: Sequence[str]) -> np.ndarray:
        """``[batch, n_items]`` similarity of each text to every item (column j = item j+1)."""
        return np.asarray(self.client.call("get_scores", list(generated_texts), self.dataset_name))

    def rank(
        self, generated_texts: Sequence[str], target_items: Sequence[int], history_items: Any = None
    ) -> list[int]:
        return self.client.call(
            "rank", list(generated_texts), self.dataset_name, _ids(target_items), _hist(history_items)
        )

    def _args(self, generated_texts: Sequence[str], target_items: Any, history_items: Any) -> tuple[Any, ...]:
        return (
            list(generated_texts),
            self.dataset_name,
            _ids(target_items),
            _hist(history_items),
            self.reward_type,
            self.k,
            self.mixed_weight,
        )

    @property
    def is_default(self) -> bool:
        """True unless a subclass overrides ``__call__`` (then only ``__call__`` defines the reward)."""
        return type(self).__call__ is RLRewardFunction.__call__

    def __call__(
        self,
        generated_texts: Sequence[str],
        target_items: Sequence[int],
        history_items: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        return self.client.call("calculate_reward", *self._args(generated_texts, target_items, history_items))

    def evaluate(
        self, generated_texts: Sequence[str], target_items: Sequence[int], history_items: Any = None
    ) -> dict[str, list[Any]]:
        """``{"reward": [...], "rank": [...]}`` from one service call (training logs both)."""
        return self.client.call("evaluate", *self._args(generated_texts, target_items, history_items))

    async def aevaluate(
        self, generated_texts: Sequence[str], target_items: Sequence[int], history_items: Any = None
    ) -> dict[str, list[Any]]:
        """Awaitable :meth:`evaluate`: the event loop is free while the Ray call is in flight."""
        return await self.client.acall("evaluate", *self._args(generated_texts, target_items, history_items))

    async def acall(
        self,
        generated_texts: Sequence[str],
        target_items: Sequence[int],
        history_items: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Awaitable ``__call__``; a subclass's custom ``__call__`` runs in a worker thread."""
        if not self.is_default:
            return await asyncio.to_thread(
                functools.partial(self, generated_texts, target_items, history_items, **kwargs)
            )
        return (await self.aevaluate(generated_texts, target_items, history_items))["reward"]


def _ids(values: Any) -> list[int]:
    if values is None:
        raise ConfigError("target_items is required: one target item id per generated text.")
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise ConfigError(f"target_items must be one item id per text (1-D), got shape {ids.shape}.")
    return ids.tolist()


def _hist(values: Any) -> list[list[int]] | None:
    if values is None:
        return None
    return [list(np.asarray(h).tolist()) if h is not None else [] for h in values]


def create_reward_function(
    retrieval_service_name: str = SERVICE_NAME,
    namespace: str = NAMESPACE,
    dataset_name: str = "beauty",
    reward_type: str = "ndcg",
    k: int = 10,
    backend: str = "ray",
    **kwargs: Any,
) -> RLRewardFunction:
    """The seed's factory: ``reward_fn(generated_texts=, target_items=, history_items=)`` -> floats.

    ``backend="ray"`` (the seed's behaviour) reaches the named actor started by
    ``./runs/run_retrieval.sh``; ``backend="local"`` loads the service in this process.
    """
    return RLRewardFunction(
        retrieval_service_name=retrieval_service_name,
        namespace=namespace,
        dataset_name=dataset_name,
        reward_type=reward_type,
        k=k,
        backend=backend,
        **kwargs,
    )
