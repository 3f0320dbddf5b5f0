"""The one reward boundary: whatever reward a user brings, normalised once into what trainers call.

Three shapes of reward reach a run: the built-in retrieval reward (an :class:`RLRewardFunction`, whose
one service call returns rewards *and* ranks, so NDCG/Hit/MRR are logged beside the optimised reward),
a seed-style callable ``f(generated_texts, target_items, history_items)`` (an ``RLRewardFunction``
subclass with its own ``__call__``, or any such function), and a TRL-style function
``f(prompts=, completions=, **columns)``; each may be sync or ``async``. :func:`build_reward` makes the
run's reward from the flags, :func:`training_reward` turns any of them into TRL's calling convention,
sync or async as the trainer wants (TRL awaits async rewards concurrently, which keeps several Ray calls
in flight; PPO calls its reward synchronously). Both run one body (:meth:`TrainingReward._steps`), so
the sync and async paths cannot drift apart.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.metrics import metrics_at
from rl4rec.rewards.base import RLRewardFunction

TARGET_COLUMN = "target_item"
HISTORY_COLUMN = "history_items"
#: With ``--next_items K``: the K items a query is rewarded against (``target_item`` first).
NEXT_ITEMS_COLUMN = "next_items"

Recorder = Callable[[list[dict[str, Any]]], None]


class TrlReward(Protocol):
    """What a trainer receives: TRL's reward convention (one float, or None, per completion)."""

    __name__: str

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> Any: ...


def completion_text(completion: Any) -> str:
    """Text of one completion, plain or conversational (``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    raise ConfigError(f"cannot read text from a completion of type {type(completion).__name__}.")


def _is_async(fn: Any) -> bool:
    """As TRL tells them apart: an ``async def`` function, or an object whose ``__call__`` is one."""
    from trl.trainer.utils import is_async_callable

    return bool(is_async_callable(fn))


def _takes_texts(fn: Any) -> bool:
    """A seed-style reward names ``generated_texts``; a TRL-style one takes ``prompts``/``completions``."""
    try:
        return "generated_texts" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class TrainingReward:
    """Any reward, called the way TRL calls rewards; ``__call__`` (sync) and :meth:`acall` share one body."""

    def __init__(self, reward_fn: Any, name: str | None = None, recorder: Recorder | None = None) -> None:
        if not callable(reward_fn):
            raise ConfigError(f"reward_fn must be callable, got {type(reward_fn).__name__}.")
        self.reward_fn, self.recorder = reward_fn, recorder
        self.__name__ = name or getattr(reward_fn, "__name__", None) or type(reward_fn).__name__
        if isinstance(reward_fn, RLRewardFunction):
            self.kind = "service" if reward_fn.is_default else "seed"
        else:
            self.kind = "seed" if _takes_texts(reward_fn) else "trl"
        self.k = getattr(reward_fn, "k", None)

    # -- the one body: yields what to compute, receives the result ------------------------------------------
    def _steps(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> Generator[Any, Any, Any]:
        if self.kind == "trl":
            return (yield ("trl", {"prompts": prompts, "completions": completions, **kwargs}))
        if TARGET_COLUMN not in kwargs:
            raise ConfigError(
                f"the training dataset has no '{TARGET_COLUMN}' column: every row needs the user's target item id "
                f"(and '{HISTORY_COLUMN}' to mask the history)."
            )
        targets, histories = kwargs[TARGET_COLUMN], kwargs.get(HISTORY_COLUMN)
        texts = [completion_text(c) for c in completions]
        next_items = kwargs.get(NEXT_ITEMS_COLUMN)
        if next_items is not None:
            payload, owner = expand_next_items(texts, next_items, histories)
        else:
            payload, owner = (texts, targets, histories), None
        result = yield (self.kind, payload)
        if self.kind == "service":
            rewards, ranks = [float(r) for r in result["reward"]], list(result["rank"])
        else:
            rewards, ranks = [float(r) for r in result], None
        if owner is not None:
            rewards, ranks = mean_per_text(rewards, ranks, owner, len(texts))
        self._log(prompts, texts, targets, rewards, ranks, kwargs)
        return rewards

    def _sync(self, kind: str, payload: Any) -> Any:
        fn = self.reward_fn
        if kind == "trl":
            out = fn(**payload)
            return asyncio.run(out) if inspect.isawaitable(out) else out
        if kind == "service":
            return fn.evaluate(*payload)
        out = fn(generated_texts=payload[0], target_items=payload[1], history_items=payload[2])
        return asyncio.run(out) if inspect.isawaitable(out) else out

    async def _async(self, kind: str, payload: Any) -> Any:
        fn = self.reward_fn
        if kind == "service":
            return await fn.aevaluate(*payload)
        if kind == "seed" and isinstance(fn, RLRewardFunction):
            return await fn.acall(*payload)
        out = fn(**payload) if kind == "trl" else fn(generated_texts=payload[0], target_items=payload[1],
                                                        history_items=payload[2])  # fmt: skip
        return await out if inspect.isawaitable(out) else out

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        steps = self._steps(prompts, completions, kwargs)
        try:
            steps.send(self._sync(*next(steps)))
        except StopIteration as done:
            return done.value
        raise RuntimeError("reward body yielded twice")  # pragma: no cover

    async def acall(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        steps = self._steps(prompts, completions, kwargs)
        try:
            steps.send(await self._async(*next(steps)))
        except StopIteration as done:
            return done.value
        raise RuntimeError("reward body yielded twice")  # pragma: no cover

    # -- logging --------------------------------------------------------------------------------------------
    def _log(self, prompts: list[Any], texts: list[str], targets: Sequence[int], rewards: list[float],
             ranks: list[int] | None, kwargs: dict[str, Any]) -> None:  # fmt: skip
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and rewards:
            log_metric(f"{self.__name__}/nonzero_frac", float(np.mean([r != 0 for r in rewards])))
            if ranks is not None and self.k is not None:
                for metric, values in metrics_at(ranks, [self.k]).items():
                    log_metric(f"components/{metric}", float(values.mean()))
                log_metric("components/median_rank", float(np.median(np.asarray(ranks))))
        if self.recorder is not None:
            state = kwargs.get("trainer_state")
            step = int(getattr(state, "global_step", 0)) if state is not None else None
            self.recorder([
                {"step": step, "prompt": prompts[i], "completion": texts[i], "target_item": int(targets[i]),
                 "reward": rewards[i], "rank": None if ranks is None else int(ranks[i])}
                for i in range(len(texts))
            ])  # fmt: skip


def expand_next_items(
    texts: list[str], next_items: Sequence[Sequence[int]], histories: Sequence[Sequence[int]] | None
) -> tuple[tuple[list[str], list[int], list[list[int]]], list[int]]:
    """One (text, item) pair per next item of each text, the other next items masked with the history.

    Masking the other next items ranks each one against the items the user did not take next (the
    filtered protocol), so a query is not penalised for ranking the user's other next items high.
    Returns the expanded ``(texts, targets, histories)`` and, for each pair, the index of its text.
    """
    if len(next_items) != len(texts):
        raise ConfigError(f"'{NEXT_ITEMS_COLUMN}' has {len(next_items)} rows for {len(texts)} completions.")
    out_texts, out_targets, out_hist, owner = [], [], [], []
    for i, (text, items) in enumerate(zip(texts, next_items, strict=True)):
        items = [int(x) for x in items]
        if not items:
            raise ConfigError(
                f"row {i} has an empty '{NEXT_ITEMS_COLUMN}' list: it needs the items to score."
            )
        history = [int(x) for x in histories[i]] if histories is not None and histories[i] is not None else []
        for j, item in enumerate(items):
            out_texts.append(text)
            out_targets.append(item)
            out_hist.append(history + items[:j] + items[j + 1 :])
            owner.append(i)
    return (out_texts, out_targets, out_hist), owner


def mean_per_text(
    rewards: list[float], ranks: list[int] | None, owner: list[int], n_texts: int
) -> tuple[list[float], list[int] | None]:
    """Each text's mean reward over its next items; its logged rank is that of its first next item."""
    sums, counts = np.zeros(n_texts), np.zeros(n_texts)
    np.add.at(sums, owner, rewards)
    np.add.at(counts, owner, 1)
    first: dict[int, int] = {}
    for pair, text in enumerate(owner):
        first.setdefault(text, pair)
    return (sums / counts).tolist(), None if ranks is None else [int(ranks[first[i]]) for i in range(n_texts)]


def training_reward(
    reward_fn: Any, name: str | None = None, recorder: Recorder | None = None, concurrent: bool = False
) -> TrlReward:
    """``reward_fn`` (any shape above) as a TRL reward function: ``async`` when ``concurrent`` (TRL then keeps
    several calls in flight; used with the Ray service) or when the reward itself is async, else sync."""
    reward = TrainingReward(reward_fn, name, recorder)
    if concurrent or _is_async(reward_fn):

        async def trl_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
            return await reward.acall(prompts, completions, **kwargs)

    else:

        def trl_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:  # type: ignore[misc]
            return reward(prompts, completions, **kwargs)

    trl_reward.__name__ = reward.__name__
    return trl_reward


def sync_training_reward(
    reward_fn: Any, name: str | None = None, recorder: Recorder | None = None
) -> TrlReward:
    """A synchronous TRL-convention reward (PPO's loop calls its reward directly), whatever ``reward_fn`` is."""
    reward = TrainingReward(reward_fn, name, recorder)

    def trl_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        return reward(prompts, completions, **kwargs)

    trl_reward.__name__ = reward.__name__
    return trl_reward


def import_reward_fn(spec: str) -> Any:
    """The object ``--reward_fn module:attr`` names, imported (the current folder is importable).

    Returns an ``RLRewardFunction`` subclass or any other callable; anything else is a :class:`ConfigError`.
    """
    import importlib
    import os
    import sys

    module_name, _, attr = str(spec).partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"--reward_fn must be module:attr (e.g. examples.custom_reward:CustomRewardFunction), got {spec!r}."
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as under `python -m`, modules of the current folder import
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"--reward_fn {spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}). "
            "Run from the folder that holds it, or install it."
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--reward_fn {spec}: {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if isinstance(obj, type) and not issubclass(obj, RLRewardFunction):
        raise ConfigError(
            f"--reward_fn {spec}: the class {obj.__name__} is not an RLRewardFunction subclass; name a subclass, "
            "an instance or a TRL-style reward function."
        )
    if not callable(obj):
        raise ConfigError(
            f"--reward_fn {spec}: {type(obj).__name__} is not callable; name a reward function."
        )
    return obj


def build_reward(settings: Any, reward_fn: Any = None) -> Any:
    """The run's reward: ``reward_fn`` (else ``settings.reward_fn``, ``module:attr``) or the retrieval reward.

    An ``RLRewardFunction`` subclass is built with the run's dataset, reward and retrieval settings; an
    instance or any other callable is used as it is (normalised later by :func:`training_reward`). The reward
    ranks training examples, so its ``settings.fusion`` counts co-occurrence without each user's training
    target (:func:`~rl4rec.retrieval.fusion.for_split`): an example's own transition never scores its target.
    """
    from rl4rec.retrieval.embedder import EmbedderConfig
    from rl4rec.retrieval.fusion import for_split, load_fusion
    from rl4rec.rewards.base import create_reward_function

    if reward_fn is None and settings.reward_fn is not None:
        reward_fn = import_reward_fn(settings.reward_fn)
    if reward_fn is not None and not isinstance(reward_fn, type):
        if not callable(reward_fn):
            raise ConfigError(f"reward_fn must be callable, got {type(reward_fn).__name__}.")
        return reward_fn
    if reward_fn is not None and not issubclass(reward_fn, RLRewardFunction):
        raise ConfigError(
            f"reward_fn: the class {reward_fn.__name__} is not an RLRewardFunction subclass; pass a subclass, "
            "an instance or a TRL-style reward function."
        )
    factory = create_reward_function if reward_fn is None else reward_fn
    # The reward scores training examples: their co-occurrence leaves out the training target (co_holdout 3)
    # and, with --next_items K, the K - 1 items before it that the reward also scores.
    fusion = load_fusion(settings.fusion)
    next_items = int(getattr(settings, "next_items", 1))
    return factory(
        retrieval_service_name=settings.retrieval_service_name,
        namespace=settings.namespace,
        dataset_name=settings.dataset_name,
        reward_type=settings.reward_type,
        k=settings.k,
        backend=settings.retrieval,
        mixed_weight=settings.mixed_weight,
        data_dir=settings.data_dir,
        embedder=EmbedderConfig(model_name=settings.embedder),
        address=settings.ray_address,
        retry_timeout_s=settings.retry_timeout_s,
        fusion=None if fusion is None else for_split(fusion, "train", next_items),
    )
