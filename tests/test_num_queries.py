"""Several sampled queries per user ranked as one (`rl4rec evaluate --num_queries N`): the mean of their scores,
text-only and fused, through evaluate, --queries_from and tune-fusion alike."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from rl4rec.data import leave_one_out
from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.config import EvalConfig
from rl4rec.evaluation.ranking import TextMethod, query_scores
from rl4rec.evaluation.resolved import identity, resolve
from rl4rec.evaluation.runner import read_ranks, run_evaluation
from rl4rec.metrics import compute_ranks
from rl4rec.retrieval.fusion import FusionConfig
from rl4rec.retrieval.shared import local_service


@pytest.fixture(scope="module")
def service(ml100k_dir):
    return local_service("ml-100k", ml100k_dir)


@pytest.fixture(scope="module")
def examples(ml100k):
    return leave_one_out(ml100k.sequences, "valid").examples[:8]


class Fixed(TextMethod):
    """A text method whose queries are given (one text or a list per example)."""

    def __init__(self, service, queries, fusion=None) -> None:
        super().__init__(service, "ml-100k")
        self.fixed, self.fusion = queries, fusion

    def queries(self, examples):
        return self.fixed


def _pairs(ml100k, examples):
    a = [ml100k.item_text(e.history[-1]) for e in examples]
    b = [f"{ml100k.item_text(e.history[-2])} and more like it" for e in examples]
    return a, b


def test_merged_scores_are_the_mean_of_each_texts_scores(ml100k, service, examples) -> None:
    a, b = _pairs(ml100k, examples)
    histories = [list(e.history) for e in examples]
    both = [[x, y] for x, y in zip(a, b, strict=True)]
    mean = (service.get_scores(a, "ml-100k") + service.get_scores(b, "ml-100k")) / 2
    np.testing.assert_allclose(query_scores(service, "ml-100k", both, histories).numpy(), mean, atol=1e-6)
    # Fused: the history part once, plus w_text times the mean similarity (never the history twice).
    fusion = FusionConfig(w_text=0.5, w_hist=1.0, w_co=2.0)
    history = service.get_scores([""] * len(a), "ml-100k", histories, dataclasses.replace(fusion, w_text=0.0))
    fused = query_scores(service, "ml-100k", both, histories, fusion).numpy()
    np.testing.assert_allclose(fused, history + 0.5 * mean, atol=1e-5)
    # A mix of single texts and lists ranks each user by its own texts only.
    mixed = query_scores(service, "ml-100k", [a[0], [a[1], b[1]]], histories[:2]).numpy()
    np.testing.assert_allclose(mixed, mean[:2] * [[0], [1]] + service.get_scores(a[:1], "ml-100k") * [[1], [0]],
                               atol=1e-6)  # fmt: skip
    with pytest.raises(DataError, match="empty list of texts"):
        query_scores(service, "ml-100k", [a[0], []])


def test_merged_rank_follows_the_mean_and_reduces_to_the_single_text(ml100k, service, examples) -> None:
    a, b = _pairs(ml100k, examples)
    histories = [list(e.history) for e in examples]
    targets = [e.target for e in examples]
    fusion = FusionConfig(w_text=0.5, w_hist=1.0, w_co=2.0)
    for f in (None, fusion):
        single, _ = Fixed(service, a, f).rank(examples)
        assert single == service.rank(a, "ml-100k", targets, histories, f)
        # the same text twice is that text: the merged path agrees with the service's own ranking
        twice, recorded = Fixed(service, [[x, x] for x in a], f).rank(examples)
        assert twice == single and recorded == [[x, x] for x in a]
        merged, _ = Fixed(service, [[x, y] for x, y in zip(a, b, strict=True)], f).rank(examples)
        scores = torch.from_numpy((service.get_scores(a, "ml-100k", histories, f)
                                   + service.get_scores(b, "ml-100k", histories, f)) / 2)  # fmt: skip
        assert merged == compute_ranks(scores, torch.tensor(targets), histories).tolist()
    # the two texts disagree somewhere, so the test can tell a mean from either text
    assert merged != single


def test_generated_query_samples_n_per_user_in_one_batch(monkeypatch, service, examples) -> None:
    from rl4rec.evaluation import methods

    monkeypatch.setattr(
        methods, "build_prompts", lambda builder, part, *a, **k: ([f"p{e.user_id}" for e in part], [])
    )
    calls = []

    class Sampler:
        def generate(self, prompts):
            calls.append(list(prompts))
            return [f"{p} sample {i}" for i, p in enumerate(prompts)]

    method = methods.GeneratedQuery(service, "ml-100k", None, Sampler(), "policy", {}, 0, num_queries=3)
    part = examples[:2]
    queries = method.queries(part)
    first, second = (f"p{e.user_id}" for e in part)
    assert calls == [[first] * 3 + [second] * 3]  # one call, a user's repeats adjacent (one prefill each)
    assert queries == [
        [f"{first} sample {i}" for i in range(3)],
        [f"{second} sample {i}" for i in range(3, 6)],
    ]
    one = methods.GeneratedQuery(service, "ml-100k", None, Sampler(), "policy", {}, 0)
    assert all(isinstance(q, str) for q in one.queries(part))


def test_flag_checks_and_identity(ml100k_dir) -> None:
    base = dict(dataset="ml-100k", data_dir=str(ml100k_dir), method="zero-shot")
    with pytest.raises(ConfigError, match="needs --temperature > 0"):
        EvalConfig(**base, num_queries=4).validate()
    with pytest.raises(ConfigError, match="applies to zero-shot and policy"):
        EvalConfig(dataset="ml-100k", method="last-item", num_queries=4, temperature=0.8).validate()
    with pytest.raises(ConfigError, match="queries_from"):
        EvalConfig(**base, num_queries=4, temperature=0.8, queries_from="somewhere").validate()
    with pytest.raises(ConfigError, match="num_queries"):
        EvalConfig(**base, num_queries=0).validate()
    with pytest.raises(ConfigError, match="num_queries"):
        EvalConfig(**base, num_queries=65, temperature=0.8).validate()
    sampled = EvalConfig(**base, num_queries=4, temperature=0.8).validate()
    assert identity(resolve(sampled), "e")["generation"]["num_queries"] == 4
    # one query: the identity of runs written before the flag, so they still resume
    assert (
        "num_queries"
        not in identity(resolve(EvalConfig(**base, temperature=0.8).validate()), "e")["generation"]
    )


def test_evaluate_resume_queries_from_and_tune_fusion(
    tmp_path, ml100k, ml100k_dir, tiny_policy, service
) -> None:
    from rl4rec.evaluation.tune_fusion import TuneConfig, _components

    run = tmp_path / "sampled"
    config = dict(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", method="policy",
                  model=str(tiny_policy), num_users=3, num_queries=2, temperature=0.8, max_new_tokens=6,
                  device="cpu", bootstrap_samples=100, run_dir=str(run))  # fmt: skip
    result = run_evaluation(EvalConfig(**config).validate())
    records = read_ranks(run)
    assert result["num_users"] == 3 and result["protocol"]["generation"]["num_queries"] == 2
    assert all(isinstance(r["query"], list) and len(r["query"]) == 2 for r in records.values())
    # resumes with the same settings; another N is another run
    assert run_evaluation(EvalConfig(**config).validate())["metrics"] == result["metrics"]
    with pytest.raises(ConfigError, match="other settings"):
        run_evaluation(EvalConfig(**{**config, "num_queries": 3}).validate())
    # --queries_from re-ranks the stored lists by their mean, without a model
    again = tmp_path / "again"
    run_evaluation(EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", method="zero-shot",
                              queries_from=str(run), num_users=3, bootstrap_samples=100, run_dir=str(again)).validate())  # fmt: skip
    assert {u: r["rank"] for u, r in read_ranks(again).items()} == {u: r["rank"] for u, r in records.items()}
    # tune-fusion's text component of such a run is the same mean
    users = sorted(records)
    chosen = [e for e in leave_one_out(ml100k.sequences, "valid").examples if e.user_id in users]
    texts = [records[e.user_id]["query"] for e in chosen]
    tune = TuneConfig(
        dataset="ml-100k", data_dir=str(ml100k_dir), decays=(0.7,), windows=(3,), directed=(True,)
    )
    text = _components(tune, chosen, texts, service)[("text", None)]
    want = np.mean([service.get_scores([t[j] for t in texts], "ml-100k") for j in range(2)], axis=0)
    np.testing.assert_allclose(text.numpy(), want, atol=1e-6)
    assert json.loads((run / "results.json").read_text())["method"] == "policy"


def test_headroom_merges_each_users_samples_as_evaluate_does(ml100k, service, examples) -> None:
    from rl4rec.evaluation.headroom import MERGE_CHUNK, merged_ranks

    a, b = _pairs(ml100k, examples)
    flat = [
        t for pair in zip(a, b, strict=True) for t in pair
    ]  # headroom's layout: a user's K samples adjacent
    fusion = FusionConfig(w_text=0.5, w_hist=1.0, w_co=2.0)
    for f in (None, fusion):
        want, _ = Fixed(service, [[x, y] for x, y in zip(a, b, strict=True)], f).rank(examples)
        assert merged_ranks(service, "ml-100k", flat, examples, 2, f).tolist() == want
    assert MERGE_CHUNK < 1000  # chunks bound the score matrix
