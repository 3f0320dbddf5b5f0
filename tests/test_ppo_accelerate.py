"""PPO after a bf16 GRPO/SFT run in the same process: accelerate's process-wide state must not stop it."""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.state import AcceleratorState

from rl4rec.training.ppo.accelerate_setup import release_accelerator_state


def test_ppo_accelerator_after_a_bf16_run_in_the_same_process():
    # Earlier tests in this process leave whatever state their run chose (bf16 "auto" is off on CPUs without
    # AVX-512 BF16), and accelerate refuses to build the bf16 state below over a "no" one: start clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        Accelerator(cpu=True, mixed_precision="bf16")  # what a bf16 GRPO run leaves behind
        release_accelerator_state("no")
        Accelerator(
            cpu=True, mixed_precision="no"
        )  # raised "AcceleratorState has already been initialized" before
        assert AcceleratorState._shared_state.get("_mixed_precision") == "no"
        release_accelerator_state("no")  # same precision: kept as is
        assert AcceleratorState._shared_state.get("_mixed_precision") == "no"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
