"""bfloat16 on the hardware at hand: detection and the ``--bf16 auto|on|off`` setting.

On a CPU, bf16 pays only where the instruction set computes it natively (AVX-512 BF16 or AMX BF16, e.g.
Intel Xeon from Cooper Lake / Sapphire Rapids on, AMD Zen 4 on); elsewhere PyTorch emulates it and it is
usually slower than fp32. Training uses it as autocast (fp32 master weights and optimizer state, matrix
products in bf16): see docs/BENCHMARKS.md ("bf16 on CPU") for what it gains here and how close it stays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

BF16_SETTINGS = ("auto", "on", "off")
#: CPU feature flags (as /proc/cpuinfo and torch.cpu.get_capabilities spell them) with native bf16 math.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags: PyTorch's own detection (cpuinfo), else /proc/cpuinfo; empty if unknown."""
    flags: set[str] = set()
    with contextlib.suppress(Exception):
        import torch

        capabilities = torch.cpu.get_capabilities()  # type: ignore[attr-defined]
        flags |= {name for name, value in capabilities.items() if value is True}
    if not flags:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
                    break
    return flags


def cpu_supports_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX BF16)."""
    return bool(NATIVE_BF16_FLAGS & set(cpu_flags() if flags is None else flags))


def cuda_supports_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_bf16(setting: str, device: str, flags: Iterable[str] | None = None) -> bool:
    """``--bf16`` for ``device`` (``cpu`` / ``cuda[:N]``): ``on`` / ``off`` as given; ``auto`` = the device
    computes bf16 natively (a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX)."""
    if setting not in BF16_SETTINGS:
        from rl4rec.errors import ConfigError

        raise ConfigError(f"--bf16 must be one of {', '.join(BF16_SETTINGS)}, got {setting!r}.")
    if setting != "auto":
        return setting == "on"
    if device.startswith("cuda"):
        return cuda_supports_bf16()
    return cpu_supports_bf16(flags)


@contextlib.contextmanager
def without_autocast(model: Any) -> Iterator[Any]:
    """Run ``model`` through its own forward, not the bf16 autocast wrapper accelerate gave it.

    With ``--bf16 on`` accelerate's ``prepare`` replaces a model's ``forward`` with one under
    ``torch.autocast`` (keeping the original as ``_original_forward``), and ``unwrap_model`` keeps that wrapper.
    The held-out curve generates through the live model; without this, its greedy queries would be bf16
    texts while ``rl4rec evaluate`` writes fp32 ones for the same checkpoint, and about half of them differ
    (ml-100k, 128 validation users: 69 identical). The wrapper is restored afterwards, so training keeps it.
    """
    original = vars(model).get("_original_forward")
    wrapped = vars(model).get("forward")
    if original is None or wrapped is None:
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped
