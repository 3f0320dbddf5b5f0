"""SASRec baseline: causality, ranking against brute force, learning a trivial rule, no test leakage,
resumable training, and the cached end-to-end ``rl4rec evaluate --method sasrec``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from rl4rec.data.p5 import write_p5
from rl4rec.data.splits import Example, leave_one_out
from rl4rec.evaluation import sasrec as S
from rl4rec.metrics import compute_ranks

TINY = dict(hidden=16, blocks=2, heads=2, max_len=12, dropout=0.1, lr=5e-3, batch_size=32, device="cpu")


def chain_sequences(n_users: int = 120, n_items: int = 30, seed: int = 0) -> dict[int, list[int]]:
    """Every user walks up the catalogue: item i is always followed by item i + 1."""
    rng = random.Random(seed)
    out = {}
    for user in range(1, n_users + 1):
        length = rng.randint(4, 10)
        start = rng.randint(1, n_items - length + 1)
        out[user] = list(range(start, start + length))
    return out


def random_model(n_items: int = 40, **kw) -> S.SASRec:
    torch.manual_seed(0)
    return S.SASRec(n_items, S.SASRecConfig(**{**TINY, **kw})).eval()


def test_output_at_t_ignores_later_items() -> None:
    model = random_model()
    seq = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 12, 5, 2, 8, 6]])
    changed = seq.clone()
    changed[0, 7:] = torch.tensor([30, 31, 32, 33, 34])
    with torch.no_grad():
        a, b = model(seq), model(changed)
    assert torch.allclose(a[0, :7], b[0, :7], atol=1e-6)
    assert not torch.allclose(a[0, 7:], b[0, 7:], atol=1e-3)
    # leading padding changes nothing either: positions count from the end
    with torch.no_grad():
        trimmed = model(seq[:, 2:])
    assert torch.allclose(a[0, 2:], trimmed[0], atol=1e-5)


def test_scores_and_ranks_match_brute_force() -> None:
    n_items = 40
    model = random_model(n_items)
    with torch.no_grad():  # items 2k-1 and 2k share an embedding: every target has an exact tie
        model.item_emb.weight[2::2] = model.item_emb.weight[1::2]
    rng = random.Random(1)
    examples = []
    for user in range(25):
        history = [rng.randint(1, n_items) for _ in range(rng.randint(1, 20))]  # some beyond max_len
        examples.append(Example(user, tuple(history), rng.randint(1, n_items)))
    method = S.SASRecScores(model, n_items)
    scores = method.scores(examples)
    ranks, _ = method.rank(examples)
    tied = 0
    for row, e in enumerate(examples):
        with torch.no_grad():  # one unpadded sequence at a time
            alone = model.item_logits(model(torch.tensor([e.history[-model.max_len :]]))[0, -1])
        assert torch.allclose(scores[row], alone, atol=1e-5)
        s = scores[row].tolist()
        target = s[e.target - 1]
        above = [
            j for j in range(1, n_items + 1) if j != e.target and j not in e.history and s[j - 1] >= target
        ]
        tied += any(s[j - 1] == target for j in above)
        assert ranks[row] == 1 + len(above)
    assert tied > 0
    assert (
        ranks == compute_ranks(scores, [e.target for e in examples], [e.history for e in examples]).tolist()
    )


def test_learns_next_item_rule(tmp_path: Path) -> None:
    seqs = chain_sequences()
    cfg = S.SASRecConfig(**TINY, epochs=15, patience=15)
    model, state = S.train_sasrec(seqs, 30, cfg, tmp_path)
    valid = leave_one_out(seqs, "valid").examples
    ranks, _ = S.SASRecScores(model, 30).rank(valid)
    hit1 = sum(r == 1 for r in ranks) / len(ranks)
    assert hit1 > 0.85, (hit1, state["history"])
    assert state["best_ndcg"] > 0.9


def test_test_items_never_reach_training(tmp_path: Path) -> None:
    # the last two items of every user are ids used nowhere else
    seqs = {u: [*range(1 + u % 5, 6 + u % 5), 10 + u, 50 + u] for u in range(1, 31)}
    inputs, labels = S.training_tensors(seqs, max_len=8)
    seen = set(inputs.unique().tolist()) | set(labels.unique().tolist())
    assert seen and max(seen) < 10  # neither validation (10+u) nor test (50+u) items
    assert len(inputs) == 30 and (labels[:, -1] == torch.tensor([s[-3] for s in seqs.values()])).all()
    # changing every test item leaves the trained weights and the cache key exactly as they were
    other = {u: [*s[:-1], 81 - u] for u, s in seqs.items()}
    cfg = S.SASRecConfig(**TINY, epochs=3, patience=3)
    a, _ = S.train_sasrec(seqs, 80, cfg, tmp_path / "a")
    b, _ = S.train_sasrec(other, 80, cfg, tmp_path / "b")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert S.data_fingerprint(seqs, 80) == S.data_fingerprint(other, 80)
    moved = {u: [*s[:-2], 81 - u, s[-1]] for u, s in seqs.items()}  # validation items do matter
    assert S.data_fingerprint(moved, 80) != S.data_fingerprint(seqs, 80)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    seqs = chain_sequences(60)
    cfg = S.SASRecConfig(**TINY, epochs=4, patience=4)
    full, _ = S.train_sasrec(seqs, 30, cfg, tmp_path / "full", key="k")
    real, calls = S.validation_ndcg, []

    def crash_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "validation_ndcg", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        S.train_sasrec(seqs, 30, cfg, tmp_path / "cut", key="k")
    monkeypatch.setattr(S, "validation_ndcg", real)
    resumed, state = S.train_sasrec(seqs, 30, cfg, tmp_path / "cut", key="k")
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    for name, tensor in full.state_dict().items():
        assert torch.allclose(tensor, resumed.state_dict()[name], atol=1e-6), name


def test_evaluate_end_to_end_reuses_cached_model(tmp_path: Path, monkeypatch) -> None:
    from rl4rec.cli import main

    monkeypatch.setenv("RL4REC_CACHE_DIR", str(tmp_path / "cache"))
    write_p5(
        tmp_path / "data" / "chain", chain_sequences(80), {i: {"title": f"item {i}"} for i in range(1, 31)}
    )
    real_config = S.sasrec_config
    monkeypatch.setattr(S, "sasrec_config", lambda c: S.dataclasses.replace(real_config(c), **TINY))

    def evaluate(name: str) -> dict:
        args = ["evaluate", "--dataset", "chain", "--data_dir", str(tmp_path / "data"), "--method", "sasrec",
                "--sasrec_epochs", "3", "--device", "cpu", "--bootstrap_samples", "100",
                "--run_dir", str(tmp_path / name), "--output", str(tmp_path / f"{name}.json")]  # fmt: skip
        assert main(args) == 0
        return json.loads((tmp_path / f"{name}.json").read_text())

    first = evaluate("one")
    assert first["method"] == "sasrec" and first["num_users"] == 80
    assert first["protocol"]["sasrec"]["epochs"] == 3 and first["protocol"]["embedder"] is None
    models = list((tmp_path / "cache" / "sasrec").glob("chain-*/model.safetensors"))
    assert len(models) == 1 and not list(models[0].parent.glob("checkpoint*"))
    assert json.loads((tmp_path / "one" / "sasrec.json").read_text())["epoch"] == 3

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(S, "train_sasrec", no_training)
    second = evaluate("two")
    assert second["metrics"] == first["metrics"]
