"""Policy stage: load the policy LLM (HF id, local folder, GGUF, offline default) and generate texts."""

from rl4rec.policy.generation import GenerationSettings, HFGenerator, make_generator, render_prompts
from rl4rec.policy.loading import DEFAULT_POLICY, load_policy, load_tokenizer, resolve_model_path

__all__ = [
    "DEFAULT_POLICY",
    "GenerationSettings",
    "HFGenerator",
    "load_policy",
    "load_tokenizer",
    "make_generator",
    "render_prompts",
    "resolve_model_path",
]
