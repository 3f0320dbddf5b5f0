"""Checkpoint layout and atomic saves.

``checkpoint_dir/checkpoint_step_{N}/`` (every ``save_steps``) and ``checkpoint_dir/checkpoint_final/``.
Each holds the model and tokenizer (``from_pretrained`` loads it) and ``run_config.json``; step
checkpoints add the optimizer, scheduler, RNG and trainer state that ``--resume`` needs.

A checkpoint is written under a hidden temporary name and renamed into place only when complete,
so a crash during a save leaves the previous checkpoints untouched and never a half checkpoint under
a real name. ``--resume`` only ever looks at complete ``checkpoint_step_N`` folders.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from rl4rec.errors import RESTART_SERVICE_HINT, ServiceError
from rl4rec.run_layout import STEP_PREFIX

_STEP_RE = re.compile(rf"^{STEP_PREFIX}(\d+)$")
#: Files a step checkpoint must contain to be resumable.
REQUIRED_FOR_RESUME = ("trainer_state.json", "config.json")


def service_stopped_error(exc: BaseException, step: int, saved: Path | None) -> ServiceError:
    """The error a run ends with when the retrieval service fails: where it stopped, how to go on."""
    cause = str(exc).replace(RESTART_SERVICE_HINT, "").strip()
    return ServiceError(f"{cause}\nTraining stopped at step {step}; saved {saved}.\n{RESTART_SERVICE_HINT}")


def step_dir(checkpoint_dir: str | Path, step: int) -> Path:
    return Path(checkpoint_dir) / f"{STEP_PREFIX}{step}"


def list_step_checkpoints(checkpoint_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and all((child / f).exists() for f in REQUIRED_FOR_RESUME):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    found = list_step_checkpoints(checkpoint_dir)
    return found[-1][1] if found else None


def prune_step_checkpoints(checkpoint_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (``None`` keeps all).

    A step checkpoint of the 135M policy with its optimizer state is about 1.6 GB, so a long run that
    saves every few steps fills a disk; only the newest one is needed to resume. Called after a new step
    checkpoint is published, so the newest complete one is never the one removed.
    """
    if keep is None:
        return []
    doomed = [path for _step, path in list_step_checkpoints(checkpoint_dir)[:-keep]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())


def publish(tmp: Path, final: Path) -> Path:
    """Move a complete checkpoint folder into place (replacing an older one of the same name)."""
    fsync_tree(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def clean_partial(checkpoint_dir: str | Path) -> None:
    """Remove leftovers of interrupted saves (hidden temporary folders)."""
    root = Path(checkpoint_dir)
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith(".") and child.name.endswith((".tmp", ".old")):
                shutil.rmtree(child, ignore_errors=True)
