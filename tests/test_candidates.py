"""Candidate-aware prompts: the recall stage's lists, the prompt budget, the flags, and scoring with w_text 0."""

from __future__ import annotations

import pytest

from rl4rec.data.prompts import PromptBuilder, PromptConfig
from rl4rec.data.splits import leave_one_out, sample_users
from rl4rec.errors import ConfigError, Rl4recError
from rl4rec.retrieval.fusion import FusionConfig
from rl4rec.retrieval.recall import RecallStage, arrange, build_prompts, example_key


@pytest.fixture(scope="module")
def service(ml100k_dir):
    from rl4rec.retrieval.shared import local_service

    return local_service("ml-100k", ml100k_dir)


@pytest.fixture()
def stage(service, tmp_path):
    return RecallStage(service, "ml-100k", None, 10, cache=tmp_path / "recall.json")


def test_candidates_are_the_top_of_history_fusion_with_the_history_masked(ml100k, service, stage):
    import torch

    examples = sample_users(leave_one_out(ml100k.sequences, "valid").examples, 20, 0)
    lists = stage.candidates(examples)
    for example, items in zip(examples, lists, strict=True):
        assert len(items) == 10 == len(set(items)) and not set(items) & set(example.history)
    scores = torch.from_numpy(service.get_scores([""] * 3, "ml-100k", [list(e.history) for e in examples[:3]],
                                                 stage.fusion))  # fmt: skip
    for row, (example, items) in enumerate(zip(examples[:3], lists[:3], strict=True)):
        masked = scores[row].clone()
        masked[torch.tensor(example.history) - 1] = float("-inf")
        assert [int(i) + 1 for i in torch.topk(masked, 10).indices] == items  # best first
    assert stage.fusion.w_text == 0  # the recall stage never sees a text
    assert (
        RecallStage(stage.service, "ml-100k", None, 10, cache=stage.path).candidates(examples) == lists
    )  # cached


def test_training_candidates_never_use_validation_or_test_targets(ml100k, ml100k_dir, service, tmp_path):
    """Change every user's validation and test items: no training example's candidates may move."""
    import json
    import shutil

    from rl4rec.retrieval.shared import local_service

    moved_dir = tmp_path / "data"
    shutil.copytree(ml100k_dir / "ml-100k", moved_dir / "ml-100k")
    lines = []
    for user, seq in ml100k.sequences.items():
        changed = [*seq[:-2], seq[-2] % ml100k.n_items + 1, seq[-1] % ml100k.n_items + 1]
        lines.append(" ".join(map(str, [user, *changed])))
    (moved_dir / "ml-100k" / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    assert json.loads((moved_dir / "ml-100k" / "item_metadata.json").read_text())  # same catalogue
    fusion = FusionConfig(w_text=0, w_hist=0.5, w_co=4.0)
    train = sample_users(leave_one_out(ml100k.sequences, "train").examples, 40, 1)
    base = RecallStage(service, "ml-100k", fusion, 10, cache=tmp_path / "a.json")
    moved = RecallStage(local_service("ml-100k", moved_dir), "ml-100k", fusion, 10, cache=tmp_path / "b.json")
    assert base.candidates(train) == moved.candidates(train)


def test_training_prompts_never_use_the_training_target(ml100k, ml100k_dir, service, tmp_path):
    """build_prompts(split="train") counts co-occurrence without each user's last three items (co_holdout 3): change
    every user's training, validation and test items and no training example's candidates may move; at the
    evaluation holdout (2) they would, since the user's own transition into the training target is counted."""
    import shutil

    from rl4rec.retrieval.fusion import for_split
    from rl4rec.retrieval.shared import local_service

    moved_dir = tmp_path / "data"
    shutil.copytree(ml100k_dir / "ml-100k", moved_dir / "ml-100k")
    lines = [
        " ".join(map(str, [user, *seq[:-3], *(i % ml100k.n_items + 1 for i in seq[-3:])]))
        for user, seq in ml100k.sequences.items()
    ]
    (moved_dir / "ml-100k" / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    moved_service = local_service("ml-100k", moved_dir)
    fusion = FusionConfig(w_text=0, w_hist=0.5, w_co=4.0)
    fusion.save(tmp_path / "fusion.json")
    flags = {"candidates": 10, "candidate_fusion": str(tmp_path / "fusion.json")}
    train = sample_users(leave_one_out(ml100k.sequences, "train").examples, 60, 3)
    builder = PromptBuilder(ml100k, None, PromptConfig())
    _, base = build_prompts(builder, train, flags, service, "ml-100k", split="train")
    _, moved = build_prompts(builder, train, flags, moved_service, "ml-100k", split="train")
    assert base == moved
    # The lists are the recall stage's at holdout 3 (cached apart from the evaluation holdout's).
    clean = RecallStage(service, "ml-100k", for_split(fusion, "train"), 10, cache=tmp_path / "clean.json")
    assert clean.fusion.co_holdout == 3 and clean.candidates(train) == base
    assert (
        RecallStage(service, "ml-100k", fusion, 10).path
        != RecallStage(service, "ml-100k", clean.fusion, 10).path
    )
    # At holdout 2 (what validation examples use) the training candidates depend on the training targets.
    leaky = RecallStage(service, "ml-100k", fusion, 10, cache=tmp_path / "a.json").candidates(train)
    leaky_moved = RecallStage(moved_service, "ml-100k", fusion, 10, cache=tmp_path / "b.json").candidates(
        train
    )
    assert leaky != leaky_moved
    hits = [sum(e.target in c for e, c in zip(train, lists, strict=True)) for lists in (leaky, base)]
    assert hits[0] > hits[1]  # the leak inflates the share of training targets among the candidates


def test_train_targets_all_with_co_occurrence_warns_once(caplog, tmp_path):
    import logging

    from rl4rec.training.config import TrainConfig
    from rl4rec.training.data import warn_own_transitions

    no_co = tmp_path / "no-co.json"
    FusionConfig(w_text=1.0, w_hist=1.0, w_co=0.0).save(no_co)
    co = tmp_path / "co.json"
    FusionConfig(w_text=1.0, w_co=2.0).save(co)
    quiet = [
        TrainConfig(train_targets="last", candidates=5, fusion=str(co)),
        TrainConfig(train_targets="all"),
        TrainConfig(train_targets="all", fusion=str(no_co)),
        TrainConfig(train_targets="all", candidates=5, candidate_fusion=str(no_co)),
    ]
    loud = [
        TrainConfig(train_targets="all", candidates=5),  # history-fusion's built-in weights have w_co 1
        TrainConfig(train_targets="all", fusion=str(co)),
        TrainConfig(train_targets="all", candidates=5, fusion=str(co)),
    ]
    with caplog.at_level(logging.WARNING, logger="rl4rec.training.data"):
        assert not any(warn_own_transitions(c) for c in quiet)
        assert not caplog.records
        for config in loud:
            caplog.clear()
            assert warn_own_transitions(config)
            assert len(caplog.records) == 1 and "--train_targets all" in caplog.records[0].getMessage()
    assert (
        "recall stage" in caplog.records[0].getMessage()
        and "--fusion reward" in caplog.records[0].getMessage()
    )


def test_prompt_keeps_every_candidate_within_the_budget(ml100k, policy_tokenizer, stage):
    examples = sample_users(leave_one_out(ml100k.sequences, "train").examples, 8, 2)
    builder = PromptBuilder(ml100k, policy_tokenizer, PromptConfig(max_items=10, max_length=320))
    prompts, lists = build_prompts(builder, examples, {"candidates": 10}, stage.service, "ml-100k")
    for prompt, items in zip(prompts, lists, strict=True):
        text = prompt[-1]["content"]
        assert all(f"{i + 1}. {ml100k.short_item_texts[item - 1]}" in text for i, item in enumerate(items))
        assert builder.count_tokens(prompt) <= 320  # history items were dropped to fit, never a candidate
    short = PromptBuilder(ml100k, policy_tokenizer, PromptConfig(max_items=10)).build(
        examples[0].history, lists[0]
    )
    assert short[-1]["content"].count("\n") > prompts[0][-1]["content"].count(
        "\n"
    )  # the budget dropped history


def test_shuffled_order_is_seeded_per_example_and_keeps_the_items():
    items = list(range(1, 11))
    a, b = arrange(items, "shuffled", 0, "5:7"), arrange(items, "shuffled", 0, "5:7")
    assert a == b and sorted(a) == items and a != items
    assert arrange(items, "ranked", 0, "5:7") == items
    with pytest.raises(ConfigError, match="--candidate_order"):
        arrange(items, "random", 0, "x")


def test_candidate_flags_are_checked(tmp_path):
    from rl4rec.training.config import parse_train_args

    with pytest.raises(ConfigError, match="--candidates must be >= 0"):
        parse_train_args(["--candidates", "-1"])
    with pytest.raises(ConfigError, match="--candidate_order must be one of ranked, shuffled"):
        parse_train_args(["--candidates", "5", "--candidate_order", "random"])
    with pytest.raises(Rl4recError, match=r"missing\.json"):
        parse_train_args(["--candidates", "5", "--candidate_fusion", str(tmp_path / "missing.json")])
    assert example_key(leave_one_out({1: [3, 4, 5, 6]}, "test").examples[0]) == "1:3"
    with pytest.raises(ConfigError, match="--candidate_misses skip needs --candidates"):
        parse_train_args(["--candidate_misses", "skip"])


def test_train_candidate_misses_skip_keeps_exactly_the_examples_whose_target_is_a_candidate(
    ml100k_dir, policy_tokenizer
):
    """RL on candidate prompts with --candidate_misses skip: each kept row's target is among its own candidates,
    and the kept rows are exactly the hits of the full (keep) dataset, same prompts and lists."""
    from rl4rec.training.config import parse_train_args
    from rl4rec.training.data import build_train_dataset

    flags = ["--dataset_name", "ml-100k", "--data_dir", str(ml100k_dir), "--candidates", "10",
             "--train_users", "120", "--max_length", "512"]  # fmt: skip
    everyone = build_train_dataset(parse_train_args(flags), policy_tokenizer)
    hits = everyone.filter(lambda row: row["target_item"] in row["candidates"])
    skipped = build_train_dataset(parse_train_args([*flags, "--candidate_misses", "skip"]), policy_tokenizer)
    assert 0 < len(skipped) == len(hits) < len(everyone)
    assert skipped["user_id"] == hits["user_id"] and skipped["prompt"] == hits["prompt"]
    assert all(t in c for t, c in zip(skipped["target_item"], skipped["candidates"], strict=True))


def test_evaluate_with_candidates_and_w_text_zero_reproduces_the_recall_stage(ml100k_dir, tmp_path):
    """The final ranking is the recall stage's score plus w_text x the text's similarity: at w_text 0 it is
    exactly history-fusion's ranking, whatever the query."""
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.run_files import read_ranks
    from rl4rec.evaluation.runner import run_evaluation

    fusion = tmp_path / "fusion.json"
    FusionConfig(w_text=0.0, w_hist=0.5, w_co=4.0).save(fusion)
    common = dict(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", num_users=40, fusion=str(fusion),
                  bootstrap_samples=100)  # fmt: skip
    run_evaluation(EvalConfig(method="history-fusion", run_dir=str(tmp_path / "hf"), **common))
    run_evaluation(EvalConfig(method="first-candidate", candidates=5, candidate_fusion=str(fusion),
                              run_dir=str(tmp_path / "fc"), **common))  # fmt: skip
    hf, fc = read_ranks(tmp_path / "hf"), read_ranks(tmp_path / "fc")
    assert {u: r["rank"] for u, r in hf.items()} == {u: r["rank"] for u, r in fc.items()}


class _TinyRanker:
    """Five items; the fused score is a fixed vector, so the recall stage's choices are known by hand."""

    def __init__(self, vectors):
        import torch

        self.vectors = torch.tensor(vectors, dtype=torch.float32)

    def item_embeddings(self, dataset_name):
        return self.vectors

    def dataset_fingerprint(self, dataset_name):
        return "same-sequences"

    def get_scores(self, texts, dataset_name, histories, fusion):
        import numpy as np

        return np.tile(np.array([0.5, 0.4, 0.3, 0.2, 0.1], dtype=np.float32), (len(texts), 1))


def test_recall_cache_is_keyed_by_the_item_vectors_and_never_proposes_a_masked_item(tmp_path):
    vectors = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.2, 0.9]]
    other = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.2, 0.9]]
    a = RecallStage(_TinyRanker(vectors), "tiny", None, 3)
    assert a.path != RecallStage(_TinyRanker(other), "tiny", None, 3).path  # another embedder, another cache
    assert a.path == RecallStage(_TinyRanker(vectors), "tiny", None, 3).path
    assert a.top_k([[1], [1, 2, 3, 4]]) == [[2, 3, 4], [5]]  # four of five items seen: one candidate is left
