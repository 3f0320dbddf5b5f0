"""Device selection, shared by every stage (policy, embedder, trainers, SASRec) so ``--device`` means one thing."""

from __future__ import annotations

import torch

from rl4rec.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; explicit values are checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use --device cpu (or auto)."
        )
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto.")
    return device
