"""Retrieval service in-process: item index cache, scoring, rewards, seed reward API, TRL adapter."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from rl4rec.data import leave_one_out
from rl4rec.errors import ConfigError
from rl4rec.metrics import calculate_auc, compute_ranks, reward_from_ranks
from rl4rec.retrieval import EmbedderConfig, ItemIndex, RetrievalService
from rl4rec.retrieval.shared import local_service
from rl4rec.rewards import RLRewardFunction, create_reward_function, training_reward

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(ml100k_dir):
    return local_service("ml-100k", ml100k_dir)


@pytest.fixture(scope="module")
def examples(ml100k):
    return leave_one_out(ml100k.sequences, "test").examples[:16]


def test_item_index_cache_reused_and_keyed(ml100k, service, tmp_path, caplog):
    embedder = service.embedder
    path = ItemIndex.cache_path(ml100k, embedder)
    assert path.is_file() and path.suffix == ".safetensors"
    mtime = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="rl4rec.retrieval.item_index"):
        again = ItemIndex.load_or_build(ml100k, embedder, show_progress=False)
    assert path.stat().st_mtime_ns == mtime and "embedding" not in caplog.text  # loaded, not rebuilt
    np.testing.assert_array_equal(again.embeddings.numpy(), service._index("ml-100k").embeddings.numpy())
    # a different document prefix is a different key -> a different file
    from rl4rec.retrieval.embedder import Embedder

    other = Embedder(EmbedderConfig(document_prefix="passage: "))
    assert ItemIndex.cache_path(ml100k, other) != path


def test_scores_layout_and_self_retrieval(ml100k, service):
    items = [1, 50, 1682]
    scores = service.get_scores([ml100k.item_text(i) for i in items], "ml-100k")
    assert scores.shape == (3, 1682) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    ranks = service.rank([ml100k.item_text(i) for i in items], "ml-100k", items, None)
    assert all(r <= 3 for r in ranks)  # an item's own text retrieves it at the top
    np.testing.assert_array_equal(ranks, compute_ranks(scores, items, None))


def test_rewards_match_metrics_module(service, examples, ml100k):
    texts = [ml100k.item_text(e.history[-1]) for e in examples]
    targets = [e.target for e in examples]
    hist = [list(e.history) for e in examples]
    scores = service.get_scores(texts, "ml-100k")
    ranks = compute_ranks(scores, targets, hist)
    for reward_type in ("ndcg", "hit", "mrr", "mixed"):
        got = service.calculate_reward(texts, "ml-100k", targets, hist, reward_type=reward_type, k=100)
        np.testing.assert_allclose(got, reward_from_ranks(ranks, reward_type, 100))
    auc = service.calculate_reward(texts, "ml-100k", targets, hist, reward_type="auc")
    np.testing.assert_allclose(auc, calculate_auc(scores, targets, hist))
    assert min(auc) >= 0.0 and max(auc) <= 1.0
    # AUC plus a top-of-ranking bonus: w * NDCG@k + (1 - w) * AUC, from the same ranks
    both = service.calculate_reward(
        texts, "ml-100k", targets, hist, reward_type="auc_ndcg", k=100, mixed_weight=0.4
    )
    ndcg = reward_from_ranks(ranks, "ndcg", 100)
    np.testing.assert_allclose(both, 0.4 * ndcg + 0.6 * np.asarray(auc))
    assert (ndcg > 0).any() and not np.allclose(both, auc)  # the bonus is there for some of these users
    result = service.evaluate(texts, "ml-100k", targets, hist, "ndcg", 10)
    assert result["rank"] == ranks.tolist()


def test_empty_text_gets_zero_and_worst_rank(service):
    rewards = service.calculate_reward(["", "   ", "Comedy"], "ml-100k", [1, 2, 3], [[], [5], []], k=5000)
    assert rewards[0] == 0.0 and rewards[1] == 0.0
    ranks = service.rank(["", "Comedy"], "ml-100k", [1, 2], [[], [5]])
    assert ranks[0] == 1682


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset_name": "nope"}, "unknown dataset_name 'nope'"),
        ({"target_items": [1, 99999]}, r"target_items\[1\] = 99999"),
        ({"target_items": [1]}, "target_items has 1 entries but generated_texts has 2"),
        ({"history_items": [[1]]}, "history_items has 1 rows"),
        ({"history_items": [[1], [-3]]}, r"history_items\[1\] holds -3"),
        ({"reward_type": "precision"}, "unknown reward_type"),
        ({"k": 0}, "k must be a positive integer"),
        ({"generated_texts": "one string"}, "got a single string"),
        ({"generated_texts": ["ok", 3]}, r"generated_texts\[1\] must be a string"),
    ],
)
def test_service_errors_name_the_argument(service, kwargs, message):
    call = {
        "generated_texts": ["a", "b"],
        "dataset_name": "ml-100k",
        "target_items": [1, 2],
        "history_items": [[3], [4]],
        "reward_type": "ndcg",
        "k": 10,
    }
    call.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        service.calculate_reward(**call)
    assert service.calculate_reward(["still serving"], "ml-100k", [1], [[2]])  # the service keeps serving


def test_seed_reward_api_local_backend(ml100k_dir, service, examples, ml100k):
    reward_fn = create_reward_function(
        dataset_name="ml-100k", reward_type="ndcg", k=10, backend="local", data_dir=ml100k_dir
    )
    assert isinstance(reward_fn, RLRewardFunction) and reward_fn.k == 10
    texts = [ml100k.item_text(e.history[-1]) for e in examples]
    rewards = reward_fn(
        generated_texts=texts,
        target_items=[e.target for e in examples],
        history_items=[list(e.history) for e in examples],
    )
    assert len(rewards) == len(texts) and all(0.0 <= r <= 1.0 for r in rewards)
    assert reward_fn.get_scores(texts[:2]).shape == (2, 1682)
    with pytest.raises(ConfigError, match="unknown backend"):
        create_reward_function(dataset_name="ml-100k", backend="grpc")
    with pytest.raises(ConfigError, match="unknown reward_type"):
        create_reward_function(
            dataset_name="ml-100k", reward_type="precision", backend="local", data_dir=ml100k_dir
        )


def test_custom_reward_example(ml100k_dir, examples, ml100k):
    spec = importlib.util.spec_from_file_location("custom_reward", REPO / "examples" / "custom_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reward_fn = module.CustomRewardFunction(
        dataset_name="ml-100k", backend="local", data_dir=ml100k_dir, k=10
    )
    texts = ["Comedy Comedy", "Comedy Drama", "Horror classic"]
    targets, hist = [e.target for e in examples[:3]], [list(e.history) for e in examples[:3]]
    plain = create_reward_function(dataset_name="ml-100k", backend="local", data_dir=ml100k_dir, k=10)
    got = reward_fn(texts, targets, hist)
    bonus = module.calculate_diversity(texts)
    np.testing.assert_allclose(got, np.asarray(plain(texts, targets, hist)) + 0.1 * bonus)
    assert bonus.tolist() == [0.0, 0.5, 1.0]


def test_trl_adapter_conversational_and_columns(ml100k_dir, examples, ml100k):
    reward_fn = create_reward_function(dataset_name="ml-100k", backend="local", data_dir=ml100k_dir, k=100)
    records, metrics = [], {}
    trl_fn = training_reward(reward_fn, recorder=records.extend)
    texts = [ml100k.item_text(e.history[-1]) for e in examples[:4]]
    kwargs = {
        "target_item": [e.target for e in examples[:4]],
        "history_items": [list(e.history) for e in examples[:4]],
        "log_metric": lambda k, v: metrics.setdefault(k, v),
    }
    conversational = [[{"role": "assistant", "content": t}] for t in texts]
    out = trl_fn(prompts=["p"] * 4, completions=conversational, **kwargs)
    assert out == reward_fn(texts, kwargs["target_item"], kwargs["history_items"])
    assert trl_fn.__name__ == "ndcg@100" and "components/hit@100" in metrics
    assert len(records) == 4 and records[0]["completion"] == texts[0] and records[0]["rank"] >= 1
    async_fn = training_reward(reward_fn, concurrent=True)
    assert asyncio.run(async_fn(prompts=["p"] * 4, completions=texts, **kwargs)) == out
    with pytest.raises(ConfigError, match="no 'target_item' column"):
        trl_fn(prompts=["p"], completions=["x"])


def test_service_holds_several_datasets(ml100k_dir, beauty_data_dir, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(ml100k_dir / "ml-100k", root / "ml-100k")
    (root / "beauty").symlink_to(beauty_data_dir / "beauty")
    svc = RetrievalService(datasets=["ml-100k", "beauty"], data_dir=root, show_progress=False)
    assert svc.datasets() == ["beauty", "ml-100k"]
    assert svc.get_scores(["lipstick"], "beauty").shape == (1, 12101)
    assert svc.get_scores(["lipstick"], "ml-100k").shape == (1, 1682)
