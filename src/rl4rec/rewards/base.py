"""The seed's reward API: ``RLRewardFunction`` and ``create_reward_function``.

A reward function maps ``(generated_texts, target_items, history_items)`` to one float per text.
Subclasses override ``__call__`` and may use ``self.get_scores(texts)`` (a ``[batch, n_items]``
score matrix, column j = item j+1) together with the metrics in :mod:`rl4rec.metrics`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.metrics import DEFAULT_MIXED_WEIGHT, check_reward_args, reward_name
from rl4rec.retrieval.client import LocalClient, RayClient, ServiceClient
from rl4rec.retrieval.embedder import EmbedderConfig
from rl4rec.retrieval.fusion import FusionConfig, load_fusion
from rl4rec.retrieval.ray_service import NAMESPACE, SERVICE_NAME
from rl4rec.retrieval.shared import local_service

BACKENDS = ("ray", "local")


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
        client: ServiceClient | None = None,
        fusion: FusionConfig | str | Path | dict[str, Any] | None = None,
    ) -> None:
        check_reward_args(reward_type, k, mixed_weight)
        if backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {backend!r}: choose 'ray' (named actor) or 'local' (in-process)."
            )
        self.dataset_name = dataset_name
        self.reward_type = reward_type
        self.k = int(k)
        self.mixed_weight = mixed_weight
        self.backend = backend
        #: History-aware scoring (:mod:`rl4rec.retrieval.fusion`); None = the seed's text-only score.
        self.fusion = load_fusion(fusion)
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

    def get_scores(self, generated_texts: Sequence[str], history_items: Any = None) -> np.ndarray:
        """``[batch, n_items]`` score of every item for each text (column j = item j+1).

        Text similarity, or the fused score when this function has a ``fusion`` config (which then
        reads ``history_items``).
        """
        if self.fusion is None:
            return np.asarray(self.client.call("get_scores", list(generated_texts), self.dataset_name))
        return np.asarray(
            self.client.call(
                "get_scores", list(generated_texts), self.dataset_name, _hist(history_items), self._fusion_arg
            )
        )

    @property
    def _fusion_arg(self) -> dict[str, Any] | None:
        return self.fusion.to_dict() if self.fusion is not None else None

    def rank(
        self, generated_texts: Sequence[str], target_items: Sequence[int], history_items: Any = None
    ) -> list[int]:
        return self.client.call(
            "rank",
            list(generated_texts),
            self.dataset_name,
            _ids(target_items),
            _hist(history_items),
            self._fusion_arg,
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
            self._fusion_arg,
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
