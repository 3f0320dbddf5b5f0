"""Keeps the seed's import path ``rl4rec.rewards.metrics``: the metrics live in :mod:`rl4rec.metrics`."""

from __future__ import annotations

from rl4rec.metrics import *  # noqa: F403
