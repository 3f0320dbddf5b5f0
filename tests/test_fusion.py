"""History-aware scoring: brute-force equality, no leakage of held-out targets, reward/evaluate/tune paths."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rl4rec.data import leave_one_out
from rl4rec.errors import ConfigError, DataError
from rl4rec.metrics import compute_ranks
from rl4rec.retrieval.fusion import FusionConfig, HistorySignals, cooccurrence, for_split, load_fusion
from rl4rec.retrieval.shared import local_service
from rl4rec.rewards import create_reward_function


def _brute_force(texts_scores, items, sequences, histories, config: FusionConfig) -> np.ndarray:
    """The docstring formula of rl4rec.retrieval.fusion, written out with Python loops."""
    n = items.shape[0]
    counts = np.zeros((n, n))
    for seq in sequences.values():
        train = seq[: max(len(seq) - config.co_holdout, 0)]
        for i, a in enumerate(train):
            for j, b in enumerate(train):
                gap = j - i
                ok = 1 <= gap <= config.co_window if config.co_directed else 1 <= abs(gap) <= config.co_window
                if ok and a != b:
                    counts[a - 1, b - 1] += 1
    prob = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    out = np.zeros((len(histories), n))
    for row, history in enumerate(histories):
        recent = list(history)[-config.history_n :]
        raw = [config.decay ** (len(recent) - 1 - i) for i in range(len(recent))]
        for h, w in zip(recent, raw, strict=True):
            r = w / sum(raw)
            for item in range(n):
                cos = float(np.dot(items[h - 1], items[item]))
                out[row, item] += config.w_hist * r * cos + config.w_co * r * prob[h - 1, item]
        if config.w_text:
            out[row] += config.w_text * texts_scores[row]
    return out


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    n = 9
    items = rng.normal(size=(n, 4))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    sequences = {u: list(rng.integers(1, n + 1, size=int(rng.integers(4, 9)))) for u in range(1, 13)}
    return torch.tensor(items, dtype=torch.float32), sequences


@pytest.mark.parametrize(
    "config",
    [
        FusionConfig(w_text=0.0, w_hist=1.0, w_co=0.0, decay=0.6),
        FusionConfig(w_text=0.0, w_hist=0.0, w_co=1.0, decay=0.8, co_window=2),
        FusionConfig(
            w_text=0.7, w_hist=0.3, w_co=2.5, decay=0.5, history_n=3, co_window=1, co_directed=False
        ),
        FusionConfig(w_text=1.0, w_hist=1.0, w_co=1.0, decay=1.0, history_n=50, co_window=4),
        FusionConfig(w_text=0.0, w_hist=0.5, w_co=2.0, decay=0.7, co_window=2, co_holdout=3),
        FusionConfig(w_text=0.0, w_co=1.0, co_window=3, co_directed=False, co_holdout=3),
    ],
)
def test_fused_scores_equal_brute_force(small, config):
    items, sequences = small
    histories = [sequences[u][:-1] for u in (1, 2, 3, 4)] + [[5, 5, 2]]  # a repeated item adds up
    text = np.random.default_rng(1).normal(size=(len(histories), items.shape[0]))
    signals = HistorySignals(items, sequences)
    got = signals.fuse(torch.tensor(text, dtype=torch.float32), histories, config).numpy()
    want = _brute_force(text, items.numpy().astype(np.float64), sequences, histories, config)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cooccurrence_never_sees_validation_or_test_targets():
    # Items 50+ appear only as each user's last two items (validation and test targets).
    sequences = {u: [1 + u % 5, 2 + u % 7, 3 + u % 4, 50 + 2 * u, 51 + 2 * u] for u in range(20)}
    table = cooccurrence(sequences, 100, window=5, directed=False).to_dense()
    held_out = [i for u in range(20) for i in (50 + 2 * u, 51 + 2 * u)]
    idx = torch.tensor(held_out) - 1
    assert table[idx].abs().sum() == 0 and table[:, idx].abs().sum() == 0
    assert table.sum() > 0  # the training part was counted
    # Rows are distributions over co-occurring items.
    sums = table.sum(dim=1)
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]))


def test_a_training_examples_own_transition_scores_its_target_only_with_holdout_2():
    """User 1's training example (history 1 2 3, target 4): 3 -> 4 is its own transition, in no one else's data."""
    sequences = {1: [1, 2, 3, 4, 5, 6], 2: [1, 3, 2, 5, 6, 7], 3: [2, 1, 3, 5, 7, 6]}
    (example,) = [e for e in leave_one_out(sequences, "train").examples if e.user_id == 1]
    assert example.history == (1, 2, 3) and example.target == 4
    items = torch.nn.functional.normalize(
        torch.randn(7, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    signals = HistorySignals(items, sequences)
    config = FusionConfig(w_text=0.0, w_co=1.0, co_window=1)
    assert config.co_holdout == 2 and for_split(config, "train").co_holdout == 3
    leaky = signals.fuse(None, [example.history], config)[0]
    clean = signals.fuse(None, [example.history], for_split(config, "train"))[0]
    assert leaky[example.target - 1] > 0  # holdout 2 counts items[-4] -> items[-3]: the target leaks
    assert clean[example.target - 1] == 0  # holdout 3: only others' data (3 -> 2 of user 2) scores
    assert clean[2 - 1] > 0
    # The tables are cached apart, and holdout 3 is holdout 2 on sequences one item shorter.
    assert signals.co_table(1, True, 2) is not signals.co_table(1, True, 3)
    assert set(signals._co) == {(1, True, 2), (1, True, 3)}
    shorter = {u: s[:-1] for u, s in sequences.items()}
    for window, directed in ((1, True), (3, False)):
        assert torch.equal(
            cooccurrence(sequences, 7, window, directed, holdout=3).to_dense(),
            cooccurrence(shorter, 7, window, directed).to_dense(),
        )
    # Validation and test examples already never see their own transition at holdout 2 (4 -> 5 is user 1's
    # items[-3] -> items[-2]); for_split leaves their fusion as it is.
    (valid,) = [e for e in leave_one_out(sequences, "valid").examples if e.user_id == 1]
    assert for_split(config, "valid") is config and for_split(config, "test") is config
    assert cooccurrence(sequences, 7, 1, True).to_dense()[valid.history[-1] - 1, valid.target - 1] == 0


def test_for_split_and_co_holdout_round_trip(tmp_path):
    config = FusionConfig(w_text=0.5, w_co=2.0)
    train = for_split(config, "train")
    assert train == FusionConfig(w_text=0.5, w_co=2.0, co_holdout=3) and for_split(train, "train") is train
    assert for_split(train, "valid") is train  # an explicit holdout of 3 is kept for evaluation too
    # a reward over the next 4 training items leaves all four out of co-occurrence
    assert for_split(config, "train", next_items=4).co_holdout == 6
    with pytest.raises(ConfigError, match="unknown split"):
        for_split(config, "training")
    # The default holdout is left out of the dict: fusion files, evaluation identities and recall-cache keys
    # written before the field existed stay as they were; a holdout of 3 is written and read back.
    assert "co_holdout" not in config.to_dict()
    assert train.to_dict()["co_holdout"] == 3 and FusionConfig.from_dict(train.to_dict()) == train
    train.save(tmp_path / "train.json")
    assert load_fusion(tmp_path / "train.json") == train
    # A fusion file written before co_holdout existed loads with 2.
    old = {"w_text": 0.0, "w_hist": 1.0, "w_co": 4.0, "decay": 0.7, "history_n": 20, "co_window": 3,
           "co_directed": True}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps({"fusion": old, "tuned_on": {"split": "valid"}}))
    loaded = load_fusion(tmp_path / "old.json")
    assert loaded.co_holdout == 2 and loaded.to_dict() == old
    assert FusionConfig.from_dict(old).co_holdout == 2 and load_fusion({"fusion": old}) == loaded


def test_the_training_reward_counts_without_the_training_target(ml100k, ml100k_dir, service, tmp_path):
    from rl4rec.rewards.boundary import build_reward
    from rl4rec.training.config import TrainConfig

    fusion = FusionConfig(w_text=1.0, w_hist=0.5, w_co=3.0)
    fusion.save(tmp_path / "f.json")
    settings = TrainConfig(dataset_name="ml-100k", data_dir=str(ml100k_dir), retrieval="local", device="cpu",
                           reward_type="auc", fusion=str(tmp_path / "f.json"))  # fmt: skip
    reward_fn = build_reward(settings)
    assert reward_fn.fusion == for_split(fusion, "train") and reward_fn.fusion.co_holdout == 3
    assert reward_fn._fusion_arg["co_holdout"] == 3  # what a Ray service receives
    examples = leave_one_out(ml100k.sequences, "train").examples[:12]
    texts = [ml100k.item_text(e.history[-1]) for e in examples]
    targets, histories = [e.target for e in examples], [list(e.history) for e in examples]
    assert reward_fn.rank(texts, targets, histories) == service.rank(
        texts, "ml-100k", targets, histories, for_split(fusion, "train")
    )
    assert (
        build_reward(dataclasses.replace(settings, fusion=None)).fusion is None
    )  # text only stays text only


def test_fusion_config_validation_and_file_round_trip(tmp_path):
    for bad in (
        {"w_text": -1},
        {"w_text": 0, "w_hist": 0, "w_co": 0},
        {"decay": 0},
        {"w_co": math.nan},
        {"history_n": 0},
    ):
        with pytest.raises(ConfigError):
            FusionConfig(**bad)
    with pytest.raises(ConfigError, match="unknown fusion keys"):
        FusionConfig.from_dict({"w_txt": 1.0})
    path = tmp_path / "f.json"
    FusionConfig(w_text=0.5, w_co=2.0).save(path, tuned_on={"split": "valid"})
    assert load_fusion(path) == FusionConfig(w_text=0.5, w_co=2.0)
    assert load_fusion(json.loads(path.read_text())) == FusionConfig(w_text=0.5, w_co=2.0)
    with pytest.raises(DataError, match="tune-fusion"):
        load_fusion(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def service(ml100k_dir):
    return local_service("ml-100k", ml100k_dir)


def test_service_and_reward_use_the_fused_rank(ml100k, ml100k_dir, service):
    examples = leave_one_out(ml100k.sequences, "test").examples[:12]
    texts = [ml100k.item_text(e.history[-1]) for e in examples]
    targets = [e.target for e in examples]
    histories = [list(e.history) for e in examples]
    fusion = FusionConfig(w_text=1.0, w_hist=0.5, w_co=3.0)
    text_scores = torch.from_numpy(service.get_scores(texts, "ml-100k"))
    want = service.history_signals("ml-100k").fuse(text_scores, histories, fusion)
    want_ranks = compute_ranks(want, torch.tensor(targets), histories).tolist()
    assert service.rank(texts, "ml-100k", targets, histories, fusion) == want_ranks
    assert service.rank(texts, "ml-100k", targets, histories, fusion.to_dict()) == want_ranks  # as over Ray
    np.testing.assert_allclose(
        service.get_scores(texts, "ml-100k", histories, fusion), want.numpy(), rtol=1e-6
    )
    # Text-only (the default) is unchanged, and differs from the fused rank.
    text_ranks = service.rank(texts, "ml-100k", targets, histories)
    assert text_ranks == compute_ranks(text_scores, torch.tensor(targets), histories).tolist()
    assert text_ranks != want_ranks
    reward_fn = create_reward_function(
        dataset_name="ml-100k", reward_type="auc", backend="local", data_dir=ml100k_dir, fusion=fusion
    )
    assert reward_fn.rank(texts, targets, histories) == want_ranks
    rewards = reward_fn(generated_texts=[*texts[:-1], "  "], target_items=targets, history_items=histories)
    assert rewards[-1] == 0.0  # an empty query earns nothing, even though the history alone ranks it
    assert all(0.0 < r <= 1.0 for r in rewards[:-1])


def test_history_fusion_evaluate_and_tune_on_validation(ml100k_dir, tmp_path):
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import run_evaluation
    from rl4rec.evaluation.tune_fusion import TuneConfig, tune

    out = tmp_path / "fusion.json"
    small_grid = dict(decays=(0.7,), windows=(1,), directed=(True,), w_hist=(0.0, 1.0), w_co=(0.0, 1.0, 4.0))
    result = tune(
        TuneConfig(dataset="ml-100k", data_dir=str(ml100k_dir), output=str(out), num_users=200, **small_grid)
    )
    assert result["tuned_on"]["split"] == "valid" and result["tuned_on"]["users"] == 200
    saved = json.loads(out.read_text())
    assert saved["fusion"]["w_text"] == 0.0 and saved["top"][0]["value"] == saved["tuned_on"]["value"]
    # tune reports the same NDCG@10 that `evaluate --split valid` computes on the same users.
    cfg = EvalConfig(
        dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", method="history-fusion", fusion=str(out),
        num_users=200, run_dir=str(tmp_path / "run"), bootstrap_samples=100,
    )  # fmt: skip
    res = run_evaluation(cfg.validate())
    assert res["metrics"]["ndcg@10"]["mean"] == pytest.approx(saved["tuned_on"]["value"], abs=1e-6)
    with pytest.raises(ConfigError, match="--fusion applies"):
        EvalConfig(method="popularity", fusion=str(out)).validate()


def test_tune_refuses_test_queries(ml100k_dir, tmp_path):
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import run_evaluation
    from rl4rec.evaluation.tune_fusion import TuneConfig, tune

    run = tmp_path / "last-item-test"
    run_evaluation(
        EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), split="test", method="last-item",
                   num_users=20, run_dir=str(run), bootstrap_samples=100).validate()
    )  # fmt: skip
    with pytest.raises(ConfigError, match="validation queries only"):
        tune(
            TuneConfig(
                dataset="ml-100k", data_dir=str(ml100k_dir), output=str(tmp_path / "f.json"), queries=str(run)
            )
        )
    assert not Path(tmp_path / "f.json").exists()


def test_queries_from_reranks_stored_texts_without_a_model(ml100k, ml100k_dir, service, tmp_path):
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import read_ranks, run_evaluation
    from rl4rec.run_layout import EVAL_CONFIG_FILE as CONFIG_FILE
    from rl4rec.run_layout import RANKS_FILE

    examples = leave_one_out(ml100k.sequences, "test").examples
    chosen = {e.user_id: e for e in examples[:30]}
    source = tmp_path / "zero-shot"
    source.mkdir()
    ident = {"dataset": "ml-100k", "split": "test", "method": "zero-shot", "model": "some-policy"}
    (source / CONFIG_FILE).write_text(json.dumps({"identity": ident}))
    texts = {u: f"{ml100k.item_text(e.history[-1])} sequel" for u, e in chosen.items()}
    (source / RANKS_FILE).write_text(
        "".join(json.dumps({"user_id": u, "query": t}) + "\n" for u, t in texts.items())
    )
    fusion = FusionConfig(w_text=1.0, w_hist=1.0, w_co=2.0)
    fusion.save(tmp_path / "f.json")
    base = dict(dataset="ml-100k", data_dir=str(ml100k_dir), method="zero-shot", queries_from=str(source),
                bootstrap_samples=100)  # fmt: skip
    # Users the source run lacks are refused, not generated or skipped silently.
    with pytest.raises(DataError, match="no query for"):
        run_evaluation(EvalConfig(**base, num_users=0, run_dir=str(tmp_path / "all")).validate())
    sample_users = sorted(chosen)
    run = tmp_path / "fused"
    cfg = EvalConfig(**base, fusion=str(tmp_path / "f.json"), num_users=0, run_dir=str(run))
    from rl4rec.evaluation.methods import make_method
    from rl4rec.evaluation.resolved import resolve

    method = make_method(resolve(cfg.validate()), ml100k, service)
    ranks, queries = method.rank([chosen[u] for u in sample_users])
    want = service.rank(
        [texts[u] for u in sample_users], "ml-100k", [chosen[u].target for u in sample_users],
        [list(chosen[u].history) for u in sample_users], fusion,
    )  # fmt: skip
    assert ranks == want and queries == [texts[u] for u in sample_users]
    assert read_ranks(source)  # the source run is only read


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"w_text": 10**30}, r"w_text must be a number in \[0, 1e\+06\]"),
        ({"co_window": 10**9}, r"co_window must be an integer in \[1, 1000\]"),
        ({"history_n": 10**9}, r"history_n must be an integer in \[1, 10000\]"),
        ({"co_directed": "yes"}, "co_directed must be true or false"),
        ({"co_directed": None}, "co_directed must be true or false"),
        ({"decay": "0.5"}, "decay must be a number"),
        ({"co_holdout": 1}, r"co_holdout must be an integer in \[2, 66\]"),
        ({"co_holdout": 67}, r"co_holdout must be an integer in \[2, 66\]"),
        ({"co_holdout": True}, r"co_holdout must be an integer in \[2, 66\]"),
        ({"co_holdout": 3.0}, r"co_holdout must be an integer in \[2, 66\]"),
        ({"co_holdout": "3"}, r"co_holdout must be an integer in \[2, 66\]"),
    ],
)
def test_hostile_fusion_values_get_a_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message):
        FusionConfig(**bad)
    with pytest.raises(ConfigError, match=message):  # the same through a service call's dict
        load_fusion({"fusion": bad})


def test_cooccurrence_work_is_bounded_by_the_data_not_the_window():
    """A window far beyond the longest sequence ends as fast as one at its length (no loop over every gap)."""
    import time

    sequences = {u: list(range(1, 8)) for u in range(1, 200)}
    t0 = time.perf_counter()
    wide = cooccurrence(sequences, 7, window=10**9, directed=True).to_dense()
    assert time.perf_counter() - t0 < 5
    assert torch.equal(wide, cooccurrence(sequences, 7, window=4, directed=True).to_dense())


def test_service_rejects_a_bad_fusion_argument_even_on_an_empty_batch(service, tmp_path):
    for bad in (3, [1.0, 2.0], {"fusion": 5}):
        with pytest.raises(ConfigError, match="fusion"):
            service.rank(["a"], "ml-100k", [1], [[2]], bad)
    with pytest.raises(DataError, match="fusion file not found"):
        service.rank([], "ml-100k", [], [], tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="co_window"):  # a request that used to hang the service
        service.rank(["a"], "ml-100k", [1], [[2]], {"w_hist": 1.0, "co_window": 10**9, "w_co": 1.0})
