"""Several training processes (``torchrun`` / ``accelerate launch``): who writes the run directory.

Each process (rank) trains on its own slice of every rollout batch; DDP averages the gradients, so all
ranks hold the same weights after every optimiser step. Only rank 0 writes the run directory
(``run_config.json``, ``metrics.jsonl``, ``completions.jsonl``, checkpoints); the other ranks log
warnings and errors only. The launchers set ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` before Python
starts, so these helpers work before ``torch.distributed`` is initialised (TRL's trainer does that).
"""

from __future__ import annotations

import logging
import os


def world_size() -> int:
    """Number of training processes (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(batch_size: int, mini_batch_size: int, processes: int | None = None) -> int:
    """Mini-batches each process accumulates per optimiser step, so that all processes together see ``batch_size``.

    Checked before anything loads: a batch that does not split evenly over the processes would
    silently train on a different batch size than the flags say.
    """
    processes = world_size() if processes is None else processes
    if batch_size % (mini_batch_size * processes):
        from rl4rec.errors import ConfigError

        raise ConfigError(
            f"--batch_size ({batch_size}) must be divisible by --mini_batch_size x processes "
            f"({mini_batch_size} x {processes})."
        )
    return batch_size // (mini_batch_size * processes)


def process_rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def setup_process(device: str) -> None:
    """Per-rank setup before anything loads: quiet logs on replicas, one GPU per rank.

    ``cuda`` then means this rank's own GPU (``LOCAL_RANK``) for everything rl4rec puts on it before
    the trainer starts (the in-process retrieval service's embedder).
    """
    if world_size() <= 1:
        return
    if not is_main_process():
        logging.getLogger("rl4rec").setLevel(logging.WARNING)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        import torch

        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
