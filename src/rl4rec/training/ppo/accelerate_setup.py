"""PPO's accelerate setup: mixed precision, and coexisting with other runs in one process."""

from __future__ import annotations


def release_accelerator_state(precision: str) -> None:
    """Let PPO run after a GRPO/RLOO/SFT run in the same process (a notebook, the test suite).

    accelerate keeps one process-wide state and refuses a second Accelerator with another mixed precision;
    a bf16 GRPO run before PPO would otherwise stop PPO with "AcceleratorState has already been initialized".
    Only single-process states are reset: a distributed launch keeps its state untouched.
    """
    from accelerate.state import AcceleratorState, PartialState

    earlier = AcceleratorState._shared_state.get("_mixed_precision")
    if earlier not in (None, precision) and PartialState().num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
