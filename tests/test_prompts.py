"""Prompts: content, order, token budget (drop oldest, never cut an item), plain-text form."""

from __future__ import annotations

import copy

import pytest

from rl4rec.data import PromptBuilder, PromptConfig, leave_one_out
from rl4rec.errors import ConfigError


def _long_user(dataset, n=15):
    return next(e for e in leave_one_out(dataset.sequences, "test").examples if len(e.history) >= n)


def test_prompt_lists_recent_items_oldest_first(ml100k):
    example = _long_user(ml100k)
    prompt = PromptBuilder(ml100k).build(example.history)
    assert isinstance(prompt, list) and prompt[-1]["role"] == "user"
    text = prompt[-1]["content"]
    shown = example.history[-10:]
    positions = [text.index(ml100k.item_text(i)) for i in shown]
    assert positions == sorted(positions)
    assert f"10. {ml100k.item_text(shown[-1])} (most recent)" in text
    assert ml100k.item_text(example.history[-11]) not in text
    assert "movie" in text and "title, year and genres" in text


def test_recent_first_order(ml100k):
    example = _long_user(ml100k)
    text = PromptBuilder(ml100k, config=PromptConfig(order="recent_first")).build(example.history)[-1][
        "content"
    ]
    assert f"1. {ml100k.item_text(example.history[-1])} (most recent)" in text
    assert "most recent first" in text


@pytest.mark.parametrize("budget", [96, 128, 200])
def test_budget_drops_oldest_items_never_cuts_text(beauty, policy_tokenizer, budget):
    builder = PromptBuilder(beauty, policy_tokenizer, PromptConfig(max_length=budget))
    examples = [e for e in leave_one_out(beauty.sequences, "test").examples if len(e.history) >= 10][:20]
    unbudgeted = PromptBuilder(beauty, policy_tokenizer)
    for example in examples:
        prompt = builder.build(example.history)
        text = prompt[-1]["content"]
        shown = [i for i in example.history[-10:] if beauty.item_text(i) in text]
        assert shown, "the most recent item is always kept"
        assert beauty.item_text(example.history[-1]) in text
        # whatever is shown is a suffix of the history, each item complete
        assert tuple(shown) == tuple(example.history[-len(shown) :])
        if len(shown) > 1:
            assert builder.count_tokens(prompt) <= budget
        if len(shown) < 10:
            assert unbudgeted.count_tokens(unbudgeted.build(example.history)) > budget


def test_plain_text_prompt_without_chat_template(ml100k, policy_tokenizer):
    tokenizer = copy.deepcopy(policy_tokenizer)
    tokenizer.chat_template = None
    builder = PromptBuilder(ml100k, tokenizer, PromptConfig(max_length=120))
    prompt = builder.build(_long_user(ml100k).history)
    assert isinstance(prompt, str) and prompt.endswith("Description:")
    assert builder.count_tokens(prompt) <= 120


def test_preference_prompt(ml100k):
    prompt = PromptBuilder(ml100k).build_from_preference("Loves 90s comedies.")
    assert "Loves 90s comedies." in prompt[-1]["content"]
    with pytest.raises(ConfigError):
        PromptBuilder(ml100k).build_from_preference("   ")


def test_prompt_config_validation(ml100k):
    with pytest.raises(ConfigError):
        PromptConfig(max_items=0)
    with pytest.raises(ConfigError):
        PromptConfig(order="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PromptBuilder(ml100k).build(())
