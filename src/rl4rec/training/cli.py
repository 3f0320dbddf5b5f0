"""``rl4rec train`` and ``src/train_with_trl.py``: same flags, different default algorithm."""

from __future__ import annotations

from typing import Any

from rl4rec.errors import ConfigError
from rl4rec.training.config import parse_train_args


def parse(argv: list[str] | None, defaults: dict[str, Any] | None = None) -> Any:
    try:
        return parse_train_args(argv, defaults)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{exc}. See --help for the list of flags.") from None


def train_main(argv: list[str] | None = None, defaults: dict[str, Any] | None = None) -> int:
    config = parse(argv, defaults)
    from rl4rec.training.trainer import TRLTrainer

    result = TRLTrainer(config).train()
    from rl4rec.training.distributed import is_main_process

    if not is_main_process():  # several processes: rank 0 reports
        return 0
    print(f"run directory: {result.run_dir}")
    print(f"final checkpoint: {result.final_checkpoint}")
    print(f"metrics: {result.metrics_file}")
    return 0
