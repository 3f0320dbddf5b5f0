"""The seed's training script: ``python src/train_with_trl.py --model_name ... --dataset_name beauty ...``.

A thin wrapper over :mod:`rl4rec.training`. As the seed documents, its default algorithm is PPO;
``rl4rec train`` has the same flags with GRPO as the default. ``TRLTrainer`` is importable from
here too (``from train_with_trl import TRLTrainer``), as in the seed.
"""

from __future__ import annotations

import sys

from rl4rec.training.trainer import TRLTrainer

__all__ = ["TRLTrainer", "main"]

#: The seed trains with PPO.
SCRIPT_DEFAULTS = {"algorithm": "ppo"}


def main(argv: list[str] | None = None) -> int:
    from rl4rec.cli import setup_logging
    from rl4rec.errors import Rl4recError
    from rl4rec.training.cli import train_main

    setup_logging()
    try:
        return train_main(sys.argv[1:] if argv is None else argv, defaults=SCRIPT_DEFAULTS)
    except Rl4recError as exc:
        message = str(exc)
        print(message if message.startswith("Error:") else f"Error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
