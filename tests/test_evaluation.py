"""Evaluation: statistics on hand-computed cases, deterministic baselines on ml-100k, resume, compare,
report files, and an independent cross-check of the popularity baseline."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rl4rec.errors import ConfigError, DataError
from rl4rec.evaluation.compare import compare_runs
from rl4rec.evaluation.config import EvalConfig
from rl4rec.evaluation.report import write_report
from rl4rec.evaluation.runner import read_ranks, run_evaluation
from rl4rec.run_layout import RANKS_FILE
from rl4rec.statistics import interval, metric_table, paired_difference

REPO = Path(__file__).resolve().parents[1]


def test_metric_table_hand_computed() -> None:
    table = metric_table([1, 3, 20], ks=(10,), samples=200, seed=0)
    assert table["ndcg@10"]["mean"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert table["hit@10"]["mean"] == pytest.approx(2 / 3)
    assert table["mrr@10"]["mean"] == pytest.approx((1 + 1 / 3) / 3)
    assert "auc" not in table
    with_auc = metric_table([1, 3, 20], ks=(10,), samples=200, seed=0, candidates=[21, 21, 21])
    assert with_auc["auc"]["mean"] == pytest.approx((1 + 18 / 20 + 1 / 20) / 3)
    lo, hi = table["ndcg@10"]["ci95"]
    assert 0.0 <= lo <= table["ndcg@10"]["mean"] <= hi <= 1.0


def test_interval_shrinks_with_more_users() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(5000)
    width = lambda r: r["ci95"][1] - r["ci95"][0]  # noqa: E731
    assert width(interval(large)) < width(interval(small)) / 5


def test_paired_difference() -> None:
    same = paired_difference([1, 5, 30], [1, 5, 30], ks=(10,), samples=200)
    assert same["ndcg@10"]["diff"] == 0.0 and same["ndcg@10"]["ci95"] == [0.0, 0.0]
    better = paired_difference([50] * 40, [1] * 40, ks=(10,), samples=200)["hit@10"]
    assert better["diff"] == 1.0 and better["ci95"][0] > 0 and better["p_b_not_better"] == 0.0


def _eval(tmp: Path, data_dir: Path, method: str, **kw) -> dict:
    config = EvalConfig(dataset="ml-100k", data_dir=str(data_dir), method=method,
                        run_dir=str(tmp / kw.pop("name", method)), bootstrap_samples=200, **kw)  # fmt: skip
    return run_evaluation(config)


def test_baselines_deterministic_under_seed(tmp_path: Path, ml100k_dir: Path) -> None:
    a = _eval(tmp_path, ml100k_dir, "random", seed=3, name="r1")
    b = _eval(tmp_path, ml100k_dir, "random", seed=3, name="r2")
    _eval(tmp_path, ml100k_dir, "random", seed=4, name="r3")
    ranks = lambda name: {u: r["rank"] for u, r in read_ranks(tmp_path / name).items()}  # noqa: E731
    assert ranks("r1") == ranks("r2") and ranks("r1") != ranks("r3")
    assert a["metrics"] == b["metrics"] and a["num_users"] == 943
    # random ranking: expected NDCG@10 is tiny (1682 items); popularity is far above it
    pop = _eval(tmp_path, ml100k_dir, "popularity")
    assert a["metrics"]["ndcg@10"]["mean"] < 0.02 < pop["metrics"]["ndcg@10"]["mean"]
    # AUC of a random ranking is 0.5 in expectation (943 users: well within 0.47-0.53); popularity beats it
    assert 0.47 < a["metrics"]["auc"]["mean"] < 0.53 < pop["metrics"]["auc"]["mean"]
    assert json.loads((tmp_path / "popularity" / "results.json").read_text())["protocol"]["history_masked"]


def test_popularity_matches_independent_computation(tmp_path: Path, ml100k_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("indep", REPO / "scripts" / "independent_baselines.py")
    indep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(indep)
    seqs = indep.read_sequences(ml100k_dir / "ml-100k" / "sequential_data.txt")
    n_items = max(i for s in seqs.values() for i in s)
    counts = np.zeros(n_items)
    for s in seqs.values():
        for item in s[:-2]:
            counts[item - 1] += 1
    test = [(s[:-1], s[-1]) for _, s in sorted(seqs.items())]
    ref = indep.pessimistic_ranks(np.broadcast_to(counts, (len(test), n_items)),
                                  np.array([t for _, t in test]), [h for h, _ in test])  # fmt: skip
    mine = _eval(tmp_path, ml100k_dir, "popularity")
    assert mine["metrics"]["ndcg@10"]["mean"] == pytest.approx(indep.ndcg_at(ref, 10), abs=1e-9)


def test_sampled_users_resume_and_refuse_other_settings(tmp_path: Path, ml100k_dir: Path) -> None:
    full = _eval(tmp_path, ml100k_dir, "history-mean", num_users=60, name="hm")
    path = tmp_path / "hm" / RANKS_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:25]) + "\n" + lines[25][:10])  # interrupted mid-line
    resumed = _eval(tmp_path, ml100k_dir, "history-mean", num_users=60, name="hm")
    assert resumed["metrics"] == full["metrics"] and resumed["num_users"] == 60
    with pytest.raises(ConfigError, match="history_n"):
        _eval(tmp_path, ml100k_dir, "history-mean", num_users=60, name="hm", history_n=3)
    again = _eval(tmp_path, ml100k_dir, "history-mean", num_users=60, name="hm", history_n=3, overwrite=True)
    assert again["protocol"]["history_n"] == 3


def test_compare_pairs_users_and_refuses_other_splits(tmp_path: Path, ml100k_dir: Path) -> None:
    _eval(tmp_path, ml100k_dir, "popularity", num_users=100, seed=1, name="pop")
    _eval(tmp_path, ml100k_dir, "random", name="rand")  # all users: 100 shared with "pop"
    result = compare_runs(tmp_path / "rand", tmp_path / "pop", ks=(10,), samples=200)
    assert result["num_users"] == 100 and result["users_only_in_a"] == 843
    assert result["metrics"]["ndcg@10"]["diff"] > 0 and result["metrics"]["auc"]["diff"] > 0
    # a run directory written before AUC existed gets its candidate counts back on the next evaluate
    path = tmp_path / "rand" / RANKS_FILE
    old = [
        {k: v for k, v in json.loads(line).items() if k != "candidates"}
        for line in path.read_text().splitlines()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert "auc" not in compare_runs(tmp_path / "rand", tmp_path / "pop", ks=(10,), samples=200)["metrics"]
    _eval(tmp_path, ml100k_dir, "random", name="rand")
    assert {u: r["rank"] for u, r in read_ranks(tmp_path / "rand").items()} == {
        r["user_id"]: r["rank"] for r in old
    }
    again = compare_runs(tmp_path / "rand", tmp_path / "pop", ks=(10,), samples=200)
    assert again["metrics"]["auc"] == result["metrics"]["auc"]
    _eval(tmp_path, ml100k_dir, "random", split="valid", name="rand-valid")
    with pytest.raises(ConfigError, match="different splits"):
        compare_runs(tmp_path / "rand", tmp_path / "rand-valid")
    with pytest.raises(DataError, match="not an evaluation run directory"):
        compare_runs(tmp_path / "rand", tmp_path / "missing")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="--model"):
        EvalConfig(method="policy").validate()
    with pytest.raises(ConfigError, match="--method"):
        EvalConfig(method="bm25").validate()
    with pytest.raises(ConfigError, match="split"):
        EvalConfig(split="dev").validate()


def test_cli_reports_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from rl4rec.cli import main

    assert main(["evaluate", "--method", "policy"]) == 2
    assert "--model" in capsys.readouterr().err


def test_report_files(tmp_path: Path, ml100k_dir: Path) -> None:
    _eval(tmp_path, ml100k_dir, "last-item", num_users=30, name="last")
    _eval(tmp_path, ml100k_dir, "popularity", num_users=30, name="pop")
    train = tmp_path / "train"  # a training run's log, as TRLTrainer writes it
    train.mkdir()
    rows = [
        {"step": s, "reward": 0.1 + 0.01 * s, "completion_length": 20 + s, "time/step": 1.0}
        for s in range(1, 13)
    ]
    (train / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report([train, tmp_path / "pop", tmp_path / "last"], tmp_path / "report", examples=2)
    text = report.read_text()
    assert "first 10 steps 0.1550 -> last 10 0.1750" in text
    assert "| best | " in text and "| worst | " in text  # last-item has query texts
    assert "last-item [ml-100k/test, 30 users]" in text and "all-MiniLM-L6-v2" in text
    for png in ("training_curves.png", "methods_ndcg10.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000
    with pytest.raises(DataError, match="neither a training run"):
        write_report([tmp_path], tmp_path / "r2")


@pytest.mark.slow
def test_zero_shot_generates_and_ranks(tmp_path: Path, ml100k_dir: Path) -> None:
    result = _eval(tmp_path, ml100k_dir, "zero-shot", num_users=4, max_new_tokens=12, name="zs")
    records = read_ranks(tmp_path / "zs")
    assert result["num_users"] == 4 and len(records) == 4
    assert all(r["query"].strip() and 1 <= r["rank"] <= 1682 for r in records.values())
    assert result["protocol"]["generation"]["decoding"] == "greedy"
    assert result["protocol"]["prompt"]["max_length"] == 256


@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])
def test_dtype_reaches_the_policy_and_the_run_identity(dtype: str, ml100k_dir: Path, monkeypatch) -> None:
    import torch

    from rl4rec.data.dataset import load_dataset
    from rl4rec.evaluation import policy_queries
    from rl4rec.evaluation.resolved import identity, resolve
    from rl4rec.policy import loading

    seen = {}

    def fake_load_policy(model_name, device="cpu", dtype=None):
        seen["dtype"] = dtype
        raise RuntimeError("loaded")

    monkeypatch.setattr(loading, "load_policy", fake_load_policy)
    config = EvalConfig(dataset="ml-100k", data_dir=str(ml100k_dir), method="zero-shot", dtype=dtype)
    resolved = resolve(config)
    with pytest.raises(RuntimeError, match="loaded"):
        policy_queries.load_query_writer(config, load_dataset("ml-100k", str(ml100k_dir)), resolved.model,
                                         resolved.prompt)  # fmt: skip
    assert seen["dtype"] == (None if dtype == "auto" else torch.bfloat16)
    generation = identity(resolved, "embedder")["generation"]
    assert generation.get("dtype") == (None if dtype == "auto" else "bfloat16")
    with pytest.raises(ConfigError, match="--dtype"):
        EvalConfig(dataset="ml-100k", method="zero-shot", dtype="float16").validate()


def test_read_jsonl_drops_only_a_torn_last_line(tmp_path: Path) -> None:
    from rl4rec.io import read_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "los')  # a run still writing its last line
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text(
        '{"step": 1}\n{"ste\n{"step": 3}\n'
    )  # damage in the middle is not a crash: it is reported
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path)
