"""The chooser (a discriminative re-ranker made from the policy): letter prompts, one-pass letter scores, the
re-ranking of the recall stage's top K, SFT on the target's letter, and `evaluate --method chooser`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rl4rec.data.prompts import LETTERS, PromptBuilder, PromptConfig
from rl4rec.errors import ConfigError, DataError
from rl4rec.retrieval.rerank import rerank_scores


def test_choose_prompts_letter_the_candidates_and_ask_for_a_letter(ml100k, policy_tokenizer):
    builder = PromptBuilder(ml100k, policy_tokenizer, PromptConfig(max_length=400, task="choose"))
    prompt = builder.build([1, 2, 3], [10, 20, 30])
    content = prompt[-1]["content"]
    assert "A. " in content and "C. " in content and "Answer with its letter only." in content
    assert "Describe the next" not in content
    with pytest.raises(ConfigError, match="needs candidates"):
        builder.build([1, 2, 3])
    with pytest.raises(ConfigError, match="A-Z"):
        builder.build([1, 2, 3], list(range(1, 28)))


def test_choose_flags_are_checked():
    from rl4rec.training.config import TrainConfig
    from rl4rec.training.sft import SFTConfig

    with pytest.raises(ConfigError, match="between 2 and 26"):
        SFTConfig(task="choose", candidates=0).validate()
    with pytest.raises(ConfigError, match="candidate_misses skip"):
        SFTConfig(task="choose", candidates=5, candidate_misses="keep").validate()
    with pytest.raises(ConfigError, match="--task must be describe"):
        TrainConfig(task="choose", candidates=5).validate()


def test_rerank_permutes_only_the_candidates():
    base = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.05, 0.0]])
    ranked = [[1, 2, 3]]  # recall order
    shown = [[3, 1, 2]]  # the prompt's letters A, B, C
    logprobs = np.log(np.array([[0.6, 0.1, 0.3]]))  # the chooser prefers item 3, then 2, then 1
    out = rerank_scores(base, ranked, shown, logprobs)
    order = torch.argsort(out[0], descending=True).tolist()
    assert [i + 1 for i in order[:3]] == [3, 2, 1]
    assert torch.equal(out[0, 3:], base[0, 3:].double())  # everything below the candidates keeps its score
    assert float(out[0, :3].min()) > float(base.max())
    # a strong recall prior gives back the recall stage's order
    prior = rerank_scores(base, ranked, shown, logprobs, recall_prior=100.0)
    assert [i + 1 for i in torch.argsort(prior[0], descending=True).tolist()[:3]] == [1, 2, 3]
    with pytest.raises(DataError, match="other candidates"):
        rerank_scores(base, [[1, 2, 4]], shown, logprobs)
    with pytest.raises(DataError, match="not finite"):
        rerank_scores(base, ranked, shown, np.array([[np.nan, 0.0, 0.0]]))


def test_letter_scores_are_the_same_alone_and_in_a_left_padded_batch(tmp_path, ml100k):
    from rl4rec.policy.choice import choice_logprobs, label_token_ids
    from rl4rec.policy.loading import load_policy
    from train_helpers import tiny_policy_dir

    model, tokenizer = load_policy(str(tiny_policy_dir(tmp_path / "tiny")), device="cpu")
    assert label_token_ids(tokenizer, 3) == [tokenizer.encode(x, add_special_tokens=False)[0] for x in "ABC"]
    builder = PromptBuilder(ml100k, tokenizer, PromptConfig(max_length=400, task="choose"))
    prompts = [
        builder.build([1], [5, 6, 7]),
        builder.build([1, 2, 3, 4, 8, 9], [5, 6, 7]),
    ]  # different lengths
    batch = choice_logprobs(model, tokenizer, prompts, 3, batch_size=2)
    alone = np.concatenate([choice_logprobs(model, tokenizer, [p], 3) for p in prompts])
    assert batch.shape == (2, 3) and np.allclose(np.exp(batch).sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(batch, alone, atol=1e-4)


@pytest.mark.slow
def test_sft_choose_trains_on_letters_and_evaluate_chooser_reranks_only_the_top_k(ml100k_dir, tmp_path):
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.runner import run_evaluation
    from rl4rec.training.sft import SFTConfig, run_sft
    from train_helpers import tiny_policy_dir

    run = tmp_path / "chooser"
    final = run_sft(
        SFTConfig(model_name=str(tiny_policy_dir(tmp_path / "tiny")), dataset_name="ml-100k", data_dir=str(ml100k_dir),
                  checkpoint_dir=str(run), device="cpu", task="choose", candidates=5, candidate_order="shuffled",
                  max_examples=200, batch_size=4, mini_batch_size=4, max_length=512, max_history_items=3,
                  max_steps=2, save_steps=2, eval_steps=1, eval_users=6).validate()
    )  # fmt: skip
    saved = json.loads((final / "run_config.json").read_text())
    assert saved["task"] == "choose" and saved["candidates"] == 5
    step0 = [json.loads(x) for x in (run / "heldout" / "step_0.jsonl").read_text().splitlines()]
    assert len(step0) == 6 and all(r["query"] in [*LETTERS[:5], "-"] for r in step0)
    common = dict(dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", num_users=12, device="cpu",
                  bootstrap_samples=100)  # fmt: skip
    run_evaluation(
        EvalConfig(method="chooser", model=str(final), run_dir=str(tmp_path / "ch"), **common).validate()
    )
    run_evaluation(EvalConfig(method="history-fusion", run_dir=str(tmp_path / "hf"), **common).validate())
    chooser = {r["user_id"]: r["rank"] for r in map(json.loads, (tmp_path / "ch" / "ranks.jsonl").open())}
    recall = {r["user_id"]: r["rank"] for r in map(json.loads, (tmp_path / "hf" / "ranks.jsonl").open())}
    assert chooser.keys() == recall.keys()
    for user, rank in recall.items():  # a target outside the top 5 keeps its rank; one inside stays inside
        assert (chooser[user] == rank) if rank > 5 else (chooser[user] <= 5)
    # step 0 of the held-out curve is what `evaluate --method chooser` gives the untrained model
    run_evaluation(EvalConfig(method="chooser", model=str(tmp_path / "tiny"), candidates=5, candidate_order="shuffled",
                              max_length=512, max_history_items=3, run_dir=str(tmp_path / "ch0"),
                              **{**common, "num_users": 6}).validate())  # fmt: skip
    zero = {r["user_id"]: r["rank"] for r in map(json.loads, (tmp_path / "ch0" / "ranks.jsonl").open())}
    assert {r["user_id"]: r["rank"] for r in step0} == zero


def test_scoring_only_the_users_whose_target_is_a_candidate_gives_every_users_rank(
    ml100k, ml100k_dir, tmp_path
):
    """The forward pass is skipped where the target lies outside the top K: the targets' ranks equal those of
    scoring every user, and the skipped users keep the recall stage's rank."""
    from rl4rec.data.splits import leave_one_out, sample_users
    from rl4rec.metrics import compute_ranks
    from rl4rec.retrieval.rerank import rerank_examples
    from rl4rec.retrieval.shared import local_service

    service = local_service("ml-100k", ml100k_dir)
    examples = sample_users(leave_one_out(ml100k.sequences, "valid").examples, 120, 0)
    builder = PromptBuilder(ml100k, None, PromptConfig(task="choose"))
    settings = {"candidates": 10, "candidate_fusion": None, "candidate_order": "shuffled"}
    calls: list[int] = []

    def letters(part, prompts):  # a deterministic stand-in for the model: log-probs seeded by the user
        calls.append(len(part))
        rows = [np.random.default_rng(e.user_id).random(10) for e in part]
        return np.log(np.stack(rows) / np.stack(rows).sum(axis=1, keepdims=True))

    def ranks(skip: bool) -> tuple[list[int], list[bool]]:
        scores, _, scored = rerank_examples(service, "ml-100k", builder, settings, 0, examples, letters,
                                            skip_misses=skip)  # fmt: skip
        targets = torch.tensor([e.target for e in examples])
        return compute_ranks(scores, targets, [list(e.history) for e in examples]).tolist(), scored

    every, _ = ranks(False)
    assert calls == [120]
    some, scored = ranks(True)
    assert some == every and 0 < calls[1] == sum(scored) < 120
    recall, _, _ = rerank_examples(
        service, "ml-100k", builder, settings, 0, examples, letters, recall_prior=1e6
    )
    hf = compute_ranks(
        recall, torch.tensor([e.target for e in examples]), [list(e.history) for e in examples]
    )
    assert [r for r, s in zip(some, scored, strict=True) if not s] == [
        r for r, s in zip(hf.tolist(), scored, strict=True) if not s
    ]
