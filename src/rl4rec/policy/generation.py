"""Generate one text per prompt: Hugging Face ``generate`` on CPU, vLLM on CUDA when installed.

Evaluation and the user-preference writer use these backends; training generates through TRL
(which has its own HF and vLLM paths) so the policy being optimised is the one sampled.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rl4rec.data.prompts import Prompt
from rl4rec.errors import ConfigError
from rl4rec.policy.shared_prefix import generate_with_shared_prefix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    #: 0 means greedy decoding (the evaluation default).
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    #: ``auto`` (vLLM when installed and CUDA present, else HF), ``hf`` or ``vllm``.
    backend: str = "auto"
    #: HF cache implementation for ``generate`` (``dynamic`` or ``static``); see benchmarks/bench_generation.py.
    cache_implementation: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.backend not in ("auto", "hf", "vllm"):
            raise ConfigError(f"unknown generation backend {self.backend!r}: choose auto, hf or vllm.")


def vllm_usable() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def render_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[str]:
    """Chat prompts through the tokenizer's template (with the generation prompt); plain text as-is."""
    out = []
    for prompt in prompts:
        if isinstance(prompt, str):
            out.append(prompt)
        else:
            out.append(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
    return out


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QueryGenerator(Protocol):
    """A generation backend: one text per prompt (HF ``generate`` and vLLM implement it)."""

    def generate(self, prompts: Sequence[Prompt]) -> list[str]: ...


class HFGenerator:
    """Batched ``model.generate`` with left padding."""

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        s = self.settings
        texts = render_prompts(self.tokenizer, prompts)
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": s.temperature > 0,
        }
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
        else:  # silence "temperature is set but do_sample=False" from the model's generation_config
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if s.cache_implementation:
            kwargs["cache_implementation"] = s.cache_implementation
        if s.temperature > 0:
            torch.manual_seed(s.seed)
        device = next(self.model.parameters()).device
        outputs: list[str] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in _batches(texts, s.batch_size):
                enc = self.tokenizer(
                    list(batch), return_tensors="pt", padding=True, add_special_tokens=False
                ).to(device)
                with (
                    torch.inference_mode()
                ):  # prompts repeated in a batch (several samples) are prefilled once
                    gen = generate_with_shared_prefix(
                        self.model, enc["input_ids"], enc["attention_mask"], **kwargs
                    )
                new_tokens = gen[:, enc["input_ids"].shape[1] :]
                outputs.extend(
                    t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                )
        finally:
            self.model.train(was_training)
        return outputs


class VLLMGenerator:
    """vLLM offline generation (CUDA only); the seed's SamplingParams(temperature, top_p, max_tokens, n=1)."""

    def __init__(
        self, model_path: str, tokenizer: Any, settings: GenerationSettings, gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
    ) -> None:  # fmt: skip
        from vllm import LLM

        self.tokenizer, self.settings = tokenizer, settings
        self.llm = LLM(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            seed=settings.seed,
        )

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        from vllm import SamplingParams

        s = self.settings
        params = SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p if s.temperature > 0 else 1.0,
            max_tokens=s.max_new_tokens,
            n=1,
        )
        results = self.llm.generate(render_prompts(self.tokenizer, prompts), params, use_tqdm=False)
        return [r.outputs[0].text.strip() for r in results]


def make_generator(
    model: Any, tokenizer: Any, settings: GenerationSettings, model_path: str | None = None
) -> QueryGenerator:
    """The backend ``settings.backend`` asks for (``auto``: vLLM if usable, else HF)."""
    backend = settings.backend
    if backend == "auto":
        backend = "vllm" if vllm_usable() and model_path else "hf"
    if backend == "vllm":
        if not vllm_usable():
            raise ConfigError(
                "the vLLM backend needs CUDA and `pip install rl4rec[vllm]`; use --backend hf on CPU."
            )
        return VLLMGenerator(model_path or model.name_or_path, tokenizer, settings)
    return HFGenerator(model, tokenizer, settings)
