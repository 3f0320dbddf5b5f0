"""The seed's ``train_utils`` package, importable from ``src/`` as the seed's scripts import it.

Thin re-exports of :mod:`rl4rec.rewards`; see docs/seed.md for how the seed's names map onto rl4rec.
"""
