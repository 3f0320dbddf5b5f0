"""``--log_with``: check the chosen experiment tracker is installed and configure it."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from rl4rec.errors import ConfigError
from rl4rec.training.config import TrainConfig

logger = logging.getLogger(__name__)

#: backend -> (module to import, pip extra that installs it)
_BACKENDS = {
    "wandb": ("wandb", "wandb"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_log_with(config: TrainConfig) -> str:
    """Resolve ``auto`` and check the backend; returns the backend name (``none`` for none)."""
    choice = config.log_with
    if choice == "auto":
        choice = "wandb" if _installed("wandb") else "none"
        if choice == "none":
            logger.info("--log_with auto: wandb is not installed, logging to metrics.jsonl only")
    if choice == "none":
        return choice
    module, extra = _BACKENDS[choice]
    if not _installed(module):
        raise ConfigError(
            f"--log_with {choice} needs the {module} package: pip install 'rl4rec[{extra}]' "
            "(or use --log_with none; metrics.jsonl is always written)."
        )
    if choice == "wandb":
        os.environ.setdefault("WANDB_PROJECT", config.project_name)
        os.environ.setdefault("WANDB_DIR", str(Path(config.checkpoint_dir).resolve()))
        if "WANDB_MODE" not in os.environ and not _wandb_logged_in():
            os.environ["WANDB_MODE"] = "offline"
            logger.info("wandb: no API key found, logging offline (sync later with `wandb sync`)")
    return choice
