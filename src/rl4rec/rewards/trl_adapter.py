"""Turn any rl4rec reward function into a TRL reward function.

TRL calls ``f(prompts=, completions=, completion_ids=, **columns)``, with every extra dataset
column as a keyword list. Our datasets carry ``target_item`` and ``history_items`` columns, which
become the reward function's ``target_items`` and ``history_items``. Conversational completions
(``[{"role": "assistant", "content": ...}]``) are reduced to their text.

For the built-in retrieval reward, one service call returns both rewards and ranks, so NDCG, Hit
and MRR at k are logged as reward components next to the optimised reward. A ``recorder`` receives
a sample of (prompt, completion, target, reward, rank) records for the run's completions log.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rl4rec.errors import ConfigError
from rl4rec.metrics import metrics_at

TARGET_COLUMN = "target_item"
HISTORY_COLUMN = "history_items"

Recorder = Callable[[list[dict[str, Any]]], None]


def completion_text(completion: Any) -> str:
    """Text of one completion, plain or conversational."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    raise ConfigError(f"cannot read text from a completion of type {type(completion).__name__}.")


def _columns(kwargs: dict[str, Any]) -> tuple[Sequence[int], Sequence[Sequence[int]] | None]:
    if TARGET_COLUMN not in kwargs:
        raise ConfigError(
            f"the training dataset has no '{TARGET_COLUMN}' column: every row needs the user's target item id "
            f"(and '{HISTORY_COLUMN}' to mask the history)."
        )
    return kwargs[TARGET_COLUMN], kwargs.get(HISTORY_COLUMN)


def _name(reward_fn: Any, name: str | None) -> str:
    return name or getattr(reward_fn, "__name__", None) or type(reward_fn).__name__


def _log(
    name: str,
    k: int | None,
    prompts: list[Any],
    texts: list[str],
    targets: Sequence[int],
    rewards: list[float],
    ranks: list[int] | None,
    kwargs: dict[str, Any],
    recorder: Recorder | None,
) -> None:
    log_metric = kwargs.get("log_metric")
    if log_metric is not None and rewards:
        log_metric(f"{name}/nonzero_frac", float(np.mean([r != 0 for r in rewards])))
        if ranks is not None and k is not None:
            for metric, values in metrics_at(ranks, [k]).items():
                log_metric(f"components/{metric}", float(values.mean()))
            log_metric("components/median_rank", float(np.median(np.asarray(ranks))))
    if recorder is not None:
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0)) if state is not None else None
        recorder(
            [
                {
                    "step": step,
                    "prompt": prompts[i],
                    "completion": texts[i],
                    "target_item": int(targets[i]),
                    "reward": rewards[i],
                    "rank": None if ranks is None else int(ranks[i]),
                }
                for i in range(len(texts))
            ]
        )


def to_trl_reward(
    reward_fn: Callable[..., Sequence[float]], name: str | None = None, recorder: Recorder | None = None
) -> Callable[..., list[float]]:
    """Synchronous TRL reward function around ``reward_fn(generated_texts, target_items, history_items)``."""
    fn_name = _name(reward_fn, name)
    with_ranks = bool(getattr(reward_fn, "is_default", False))
    k = getattr(reward_fn, "k", None)

    def trl_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        targets, histories = _columns(kwargs)
        texts = [completion_text(c) for c in completions]
        ranks = None
        if with_ranks:
            result = reward_fn.evaluate(texts, targets, histories)  # type: ignore[attr-defined]
            rewards, ranks = [float(r) for r in result["reward"]], result["rank"]
        else:
            rewards = [
                float(r)
                for r in reward_fn(generated_texts=texts, target_items=targets, history_items=histories)
            ]
        _log(fn_name, k, prompts, texts, targets, rewards, ranks, kwargs, recorder)
        return rewards

    trl_reward.__name__ = fn_name
    return trl_reward


def to_async_trl_reward(
    reward_fn: Any, name: str | None = None, recorder: Recorder | None = None
) -> Callable[..., Any]:
    """``async`` TRL reward function: awaits the Ray call without blocking.

    TRL gathers async reward functions concurrently, so several of them keep several requests in
    flight at the retrieval service.
    """
    acall = getattr(reward_fn, "acall", None)
    if acall is None or not inspect.iscoroutinefunction(acall):
        raise ConfigError(
            "to_async_trl_reward needs a reward function with an async `acall` (an RLRewardFunction)."
        )
    fn_name = _name(reward_fn, name)
    with_ranks = bool(getattr(reward_fn, "is_default", False))
    k = getattr(reward_fn, "k", None)

    async def trl_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        targets, histories = _columns(kwargs)
        texts = [completion_text(c) for c in completions]
        ranks = None
        if with_ranks:
            result = await reward_fn.aevaluate(texts, targets, histories)
            rewards, ranks = [float(r) for r in result["reward"]], result["rank"]
        else:
            rewards = [float(r) for r in await acall(texts, targets, histories)]
        _log(fn_name, k, prompts, texts, targets, rewards, ranks, kwargs, recorder)
        return rewards

    trl_reward.__name__ = fn_name
    return trl_reward
