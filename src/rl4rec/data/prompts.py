"""Prompts the policy reads: a user's recent items, or a user-preference text, plus the request.

The seed's ``--max_length`` is a prompt token budget. It is met by dropping the oldest history
items, never by cutting an item's text: a half title would teach the policy nothing useful.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rl4rec.config_cli import opt
from rl4rec.data.dataset import RecDataset
from rl4rec.errors import ConfigError

logger = logging.getLogger(__name__)

Prompt = list[dict[str, str]] | str
_FIELD_WORDS = {
    "categories": "category",
    "genres": "genres",
    "title": "title",
    "brand": "brand",
    "year": "year",
}


OLDEST_FIRST, RECENT_FIRST = "oldest_first", "recent_first"
PROMPT_ORDERS = (OLDEST_FIRST, RECENT_FIRST)
CANDIDATE_ORDERS = ("ranked", "shuffled")
#: What the policy is asked for: the next item's description (the query RL trains), or, with candidates, the
#: letter of the candidate the user will want next (a discriminative re-ranker, `evaluate --method chooser`).
DESCRIBE, CHOOSE = "describe", "choose"
TASKS = (DESCRIBE, CHOOSE)
#: Candidate labels of a ``choose`` prompt: one single-token letter each (so one forward pass scores them all).
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class PromptFlags:
    """The prompt's flags, declared once: ``rl4rec train``, ``sft`` and ``prompts show`` (``--max_length`` is each
    command's own: the seed's 128 for train, 256 elsewhere). ``evaluate`` reads them from the checkpoint."""

    max_history_items: int = opt(10, "Most recent history items shown in a prompt.", at_least=1)
    prompt_order: str = opt(OLDEST_FIRST, "oldest_first | recent_first.", one_of=PROMPT_ORDERS)
    candidates: int = opt(
        0,
        "Candidate-aware prompts: list the recall stage's top K items (history-fusion, history masked) after the "
        "history, so the query re-ranks them (0 = off).",
        at_least=0,
    )
    candidate_fusion: str | None = opt(
        None,
        "Fusion file whose history weights make the recall stage (default: history-fusion's built-in weights).",
    )
    candidate_order: str = opt(
        "ranked",
        "ranked | shuffled (per example, seeded): the candidates' order in the prompt.",
        one_of=CANDIDATE_ORDERS,
    )
    task: str = opt(
        DESCRIBE,
        "describe: write the next item's description (the query RL trains) | choose: with --candidates, answer "
        "with the letter of the candidate the user will want next (a re-ranker: `rl4rec sft --task choose`, "
        "`rl4rec evaluate --method chooser`).",
        one_of=TASKS,
    )


@dataclass(frozen=True)
class PromptConfig:
    max_items: int = 10
    #: ``oldest_first`` (the default, as in the seed) or ``recent_first``.
    order: str = OLDEST_FIRST
    #: Token budget of the whole prompt, chat template included; ``None`` = no budget.
    max_length: int | None = None
    system_prompt: str | None = None
    #: ``describe`` or ``choose`` (:data:`TASKS`); ``choose`` labels the candidates with letters.
    task: str = DESCRIBE

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ConfigError(f"max_items must be >= 1, got {self.max_items}.")
        if self.order not in PROMPT_ORDERS:
            raise ConfigError(f"prompt order must be 'oldest_first' or 'recent_first', got {self.order!r}.")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length (prompt token budget) must be >= 8, got {self.max_length}.")
        if self.task not in TASKS:
            raise ConfigError(f"prompt task must be one of {', '.join(TASKS)}, got {self.task!r}.")


def _fields_phrase(dataset: RecDataset) -> str:
    words = [_FIELD_WORDS.get(f, f.replace("_", " ")) for f in dataset.text_config.fields]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def prompt_config_from_flags(flags: Any) -> PromptConfig:
    """The prompt the command-line flags ``max_history_items``/``prompt_order``/``max_length`` describe.

    ``flags`` is a command's config (train, sft) or a mapping of resolved settings (evaluate). One mapping
    from flag names to the prompt, so RL, SFT and evaluation build the same prompt from the same flags.
    """
    get = flags.get if isinstance(flags, Mapping) else lambda name: getattr(flags, name)
    task = flags.get("task", DESCRIBE) if isinstance(flags, Mapping) else getattr(flags, "task", DESCRIBE)
    return PromptConfig(
        max_items=get("max_history_items"),
        order=get("prompt_order"),
        max_length=get("max_length"),
        task=task or DESCRIBE,
    )


class PromptBuilder:
    """Builds chat prompts (or plain text for tokenizers without a chat template)."""

    def __init__(
        self, dataset: RecDataset, tokenizer: Any = None, config: PromptConfig | None = None
    ) -> None:
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        self.chat = tokenizer is None or getattr(tokenizer, "chat_template", None) is not None
        self.over_budget = 0  # prompts still over budget with a single item (logged, never truncated)

    # -- text ------------------------------------------------------------------------------------
    def request(self, with_candidates: bool = False) -> str:
        noun = self.dataset.item_noun
        maybe = " It is often one of the candidates." if with_candidates else ""
        return (
            f"Describe the next {noun} this user is most likely to want: its {_fields_phrase(self.dataset)}.{maybe} "
            "Reply with the description only."
        )

    def choice_request(self) -> str:
        return (
            f"Which candidate {self.dataset.item_noun} will this user want next? Answer with its letter only."
        )

    def candidates_text(self, candidates: Sequence[int]) -> str:
        """The recall stage's candidates in the order given (ranked or shuffled by the caller), numbered, or
        lettered for a ``choose`` prompt (one single-token label per candidate).

        Compact (no category path): the history above already shows the categories, and K full item texts
        would take most of a CPU-sized prompt budget.
        """
        ds = self.dataset
        choose = self.config.task == CHOOSE
        if choose and len(candidates) > len(LETTERS):
            raise ConfigError(
                f"--task choose labels candidates A-Z: at most {len(LETTERS)}, got {len(candidates)}."
            )
        labels = LETTERS if choose else [str(i + 1) for i in range(len(candidates))]
        lines = [f"{labels[i]}. {ds.short_item_texts[item - 1]}" for i, item in enumerate(candidates)]
        return f"Candidate {ds.item_noun}s suggested by the user's history:\n" + "\n".join(lines)

    def _content(self, history: Sequence[int], candidates: Sequence[int] | None) -> str:
        parts = [self.history_text(history)]
        if candidates:
            parts.append(self.candidates_text(candidates))
        if self.config.task == CHOOSE:
            if not candidates:
                raise ConfigError("--task choose needs candidates to choose among: add --candidates K.")
            parts.append(self.choice_request())
        else:
            parts.append(self.request(with_candidates=bool(candidates)))
        return "\n\n".join(parts)

    def history_text(self, history: Sequence[int]) -> str:
        items = list(history)[-self.config.max_items :]
        ds = self.dataset
        if self.config.order == RECENT_FIRST:
            items = items[::-1]
            header = f"A user {ds.user_action} these {ds.item_noun}s, most recent first:"
            marks = {0: " (most recent)"}
        else:
            header = f"A user {ds.user_action} these {ds.item_noun}s, oldest first:"
            marks = {len(items) - 1: " (most recent)"}
        lines = [f"{i + 1}. {ds.item_text(item)}{marks.get(i, '')}" for i, item in enumerate(items)]
        return header + "\n" + "\n".join(lines)

    def _wrap(self, content: str) -> Prompt:
        if not self.chat:
            return f"{content}\nDescription:"
        messages = []
        if self.config.system_prompt:
            messages.append({"role": "system", "content": self.config.system_prompt})
        messages.append({"role": "user", "content": content})
        return messages

    # -- budget ----------------------------------------------------------------------------------
    def count_tokens(self, prompt: Prompt) -> int:
        if self.tokenizer is None:
            raise ConfigError("counting prompt tokens needs a tokenizer.")
        if isinstance(prompt, str):
            return len(self.tokenizer(prompt)["input_ids"])
        ids = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    # -- public ----------------------------------------------------------------------------------
    def build(self, history: Sequence[int], candidates: Sequence[int] | None = None) -> Prompt:
        """Prompt from the most recent ``max_items`` items, fewer if the token budget needs it.

        ``candidates`` (item ids from :mod:`rl4rec.retrieval.recall`) are listed whole after the history:
        the budget drops history items, never a candidate.
        """
        if not history:
            raise ConfigError("cannot build a prompt from an empty history.")
        n = min(self.config.max_items, len(history))
        prompt = self._wrap(self._content(history[-n:], candidates))
        if self.config.max_length is None or self.tokenizer is None:
            return prompt
        while n > 1 and self.count_tokens(prompt) > self.config.max_length:
            n -= 1
            prompt = self._wrap(self._content(history[-n:], candidates))
        if n == 1 and self.count_tokens(prompt) > self.config.max_length:
            self.over_budget += 1
            if self.over_budget == 1:
                logger.warning(
                    "a prompt with one history item exceeds max_length=%d tokens; kept whole (raise max_length)",
                    self.config.max_length,
                )
        return prompt

    def build_from_preference(self, preference: str) -> Prompt:
        """Prompt from a user-preference text (the seed's ``*_user_preference.json`` files)."""
        if not preference or not preference.strip():
            raise ConfigError("user preference text is empty.")
        content = (
            f"Here is what we know about a user's taste in {self.dataset.item_noun}s:\n{preference.strip()}"
        )
        return self._wrap(content + "\n\n" + self.request())

    def build_summary_request(self, history: Sequence[int]) -> Prompt:
        """Prompt asking an LLM to summarise a user's preferences (writes preference files)."""
        n = min(self.config.max_items, len(history))
        content = self.history_text(history[-n:]) + (
            f"\n\nSummarise this user's preferences in {self.dataset.item_noun}s in two or three sentences: "
            "favourite kinds, brands or themes, and what they seem to be looking for now."
        )
        return self._wrap(content)


def prompt_to_text(prompt: Prompt) -> str:
    """A readable one-string form of a prompt (logs, reports)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"[{m['role']}] {m['content']}" for m in prompt)
