"""Training stage: the run config, TRLTrainer (GRPO/RLOO through TRL, PPO in rl4rec), checkpoints, run logs."""

from rl4rec.training.config import TrainConfig, parse_train_args
from rl4rec.training.run_context import TrainResult
from rl4rec.training.trainer import TRLTrainer

__all__ = ["TRLTrainer", "TrainConfig", "TrainResult", "parse_train_args"]
