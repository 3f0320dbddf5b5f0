"""`rl4rec sft --loss dpo`: preference pairs from a headroom ranks file, trained with TRL's DPOTrainer."""

from __future__ import annotations

import json

import pytest

from rl4rec.errors import ConfigError
from rl4rec.training.ranked_samples import best_queries, preference_pairs, ranked_samples
from rl4rec.training.sft import SFTConfig, dpo_rows


def write_ranks(path, users: dict[int, list[tuple[int, str]]], targets: dict[int, int] | None = None) -> str:
    lines = [json.dumps({"user_id": u, "split": "train", "target": (targets or {}).get(u, 1),
                         "queries": [q for _, q in s], "ranks_text": [r for r, _ in s]})
             for u, s in users.items()]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_pairs_are_each_users_best_against_worst_and_ties_have_no_pair(tmp_path):
    ranks = write_ranks(tmp_path / "r.ranks.jsonl", {
        1: [(40, "mid"), (3, "best"), (900, "worst"), (3, "best too")],
        2: [(7, "same"), (7, "alike")],  # every sample ranks alike: no preference
    })  # fmt: skip
    samples = ranked_samples(ranks)
    assert preference_pairs(samples) == {1: ("best", "worst")}
    assert best_queries(samples) == {1: "best", 2: "same"}  # the first sampled among equals, as before
    only_ties = write_ranks(tmp_path / "t.ranks.jsonl", {2: [(7, "a"), (7, "b")]})
    with pytest.raises(ConfigError, match="rank alike"):
        preference_pairs(ranked_samples(only_ties))


def test_only_the_sampled_prompt_is_trained_and_damaged_files_are_refused(ml100k, tmp_path):
    """A ranks line belongs to one prompt (the user's last training target): an example with another target is not
    paired with it, --train_targets all is refused, and a damaged line names its file and line."""
    from rl4rec.data.splits import leave_one_out
    from rl4rec.training.sft import sft_examples

    first, second = leave_one_out(ml100k.sequences, "train").examples[:2]
    samples = {first.user_id: [(1, "a"), (9, "b")], second.user_id: [(1, "a"), (9, "b")]}
    ranks = write_ranks(
        tmp_path / "r.ranks.jsonl", samples, {first.user_id: first.target, second.user_id: -5}
    )
    for loss in ("sft", "dpo"):
        config = SFTConfig(dataset_name="ml-100k", completions_from=ranks, loss=loss).validate()
        assert [e.user_id for e in sft_examples(ml100k, config)] == [first.user_id]
    with pytest.raises(ConfigError, match="--train_targets last"):
        SFTConfig(completions_from=ranks, train_targets="all").validate()
    damaged = tmp_path / "d.ranks.jsonl"
    damaged.write_text(
        json.dumps({"user_id": 1, "target": 2, "queries": ["a", "b"], "ranks_text": [3]}) + "\n"
    )
    with pytest.raises(ConfigError, match=r"d\.ranks\.jsonl:1: 2 queries but 1 ranks"):
        ranked_samples(damaged)


def test_dpo_needs_ranked_samples_and_the_describe_task(tmp_path):
    with pytest.raises(ConfigError, match="--loss dpo trains on pairs"):
        SFTConfig(loss="dpo").validate()
    with pytest.raises(ConfigError):
        SFTConfig(loss="dpo", dpo_beta=0, completions_from=str(tmp_path / "r.jsonl")).validate()


def test_dpo_rows_use_the_rl_prompt_and_the_prompts_format(ml100k, policy_tokenizer):
    from rl4rec.data.prompts import PromptBuilder, PromptConfig
    from rl4rec.data.splits import leave_one_out

    examples = leave_one_out(ml100k.sequences, "train").examples[:2]
    pairs = {e.user_id: (f"good {e.user_id}", f"bad {e.user_id}") for e in examples}
    chat = dpo_rows(examples, PromptBuilder(ml100k, policy_tokenizer, PromptConfig()), pairs)
    assert chat[0]["prompt"] == PromptBuilder(ml100k, policy_tokenizer, PromptConfig()).build(
        examples[0].history
    )
    assert chat[1]["chosen"] == [{"role": "assistant", "content": f"good {examples[1].user_id}"}]
    assert chat[1]["rejected"] == [{"role": "assistant", "content": f"bad {examples[1].user_id}"}]


@pytest.mark.slow
def test_dpo_run_widens_the_margin_of_the_preferred_query_and_writes_a_policy(ml100k, ml100k_dir, tmp_path):
    """Three DPO steps on four pairs: TRL's implicit-reward margin (chosen minus rejected, against the frozen
    start) is 0 at the first step, where policy and reference agree, and grows as the policy learns the pairs."""
    from rl4rec.data.splits import leave_one_out
    from rl4rec.training.sft import run_sft

    targets = {e.user_id: e.target for e in leave_one_out(ml100k.sequences, "train").examples[:4]}
    ranks = write_ranks(tmp_path / "s.ranks.jsonl", {
        u: [(5, "Toy Story. Year: 1995. Genres: Animation, Comedy"), (1500, "I cannot help with that request.")]
        for u in targets
    }, targets)  # fmt: skip
    run = tmp_path / "dpo"
    final = run_sft(SFTConfig(dataset_name="ml-100k", data_dir=str(ml100k_dir), checkpoint_dir=str(run), device="cpu",
                              loss="dpo", completions_from=ranks, batch_size=4, mini_batch_size=2, max_steps=3,
                              num_epochs=3, learning_rate=5e-5, max_length=128, max_history_items=2,
                              max_completion_tokens=16, save_steps=3, bf16="off"))  # fmt: skip
    assert (final / "model.safetensors").is_file() and (run / "checkpoint_step_3").is_dir()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    margins = [m["rewards/margins"] for m in steps if "rewards/margins" in m]
    assert len(margins) == 3 and abs(margins[0]) < 1e-3 and margins[-1] > margins[0] + 0.01
    # each step's cost is logged (the experiments table and `rl4rec report` add it up)
    assert all(m["time/step"] > 0 for m in steps if "rewards/margins" in m)
    assert json.loads((final / "run_config.json").read_text())["loss"] == "dpo"
