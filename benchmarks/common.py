"""Shared helpers of the benchmarks: machine description, JSON results, a private Ray head, timing.

Every benchmark writes one JSON file under ``benchmarks/results/`` holding the machine it ran on,
the command line and its measurements. Absolute times depend on the machine and on whatever else
runs on it; the ratios against a baseline measured in the same process are what the docs quote.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# Benchmarks run offline and keep caches inside the checkout, like the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RL4REC_CACHE_DIR", str(REPO / ".cache" / "rl4rec"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    for package in ("transformers", "trl", "ray", "sentence_transformers"):
        with contextlib.suppress(ImportError):
            info[package] = __import__(package).__version__
    return info


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """``benchmarks/results/<name>.json`` with the machine and the command line added."""
    from rl4rec.io import atomic_write_json

    out_dir = out_dir or RESULTS
    record = {"benchmark": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": machine_info(), **payload}  # fmt: skip
    path = out_dir / f"{name}.json"
    atomic_write_json(path, record)
    print(f"wrote {path}")
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, min and mean of repeated timings (the median is what the docs quote)."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "mean_s": statistics.fmean(seconds),
        "n": len(seconds),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def private_ray_head(num_cpus: int | None = None) -> Any:
    """A Ray head of our own, stopped on exit (see :func:`rl4rec.retrieval.ray_testing.local_head`)."""
    from rl4rec.retrieval.ray_testing import local_head

    return local_head(num_cpus=num_cpus)


INTROS = ("", "A ", "The user would enjoy ", "Next purchase: ", "Something like ")
_EXAMPLES: dict[int, list[Any]] = {}


def perturb(text: str, rng: random.Random) -> str:
    """A generated-like text: a random intro, then the item text with ~20 % of its words dropped."""
    words = [w for w in text.split() if rng.random() > 0.2] or text.split()[:3]
    return rng.choice(INTROS) + " ".join(words[: rng.randint(8, 48)])


def generated_requests(
    dataset: Any, size: int, rng: random.Random, max_history: int | None = None
) -> dict[str, Any]:
    """``size`` real test users (target = last item, history masked) with generated-like texts: what a
    policy that paraphrases the user's last item would write."""
    from rl4rec.data import leave_one_out

    if id(dataset) not in _EXAMPLES:
        _EXAMPLES[id(dataset)] = leave_one_out(dataset.sequences, "test").examples
    chosen = rng.sample(_EXAMPLES[id(dataset)], size)
    return {
        "texts": [perturb(dataset.item_text(ex.history[-1]), rng) for ex in chosen],
        "targets": [int(ex.target) for ex in chosen],
        "histories": [[int(i) for i in ex.history[-(max_history or len(ex.history)) :]] for ex in chosen],
    }


THREADS_HELP = "torch threads (1: robust on a shared machine, see BENCHMARKS.md; 0: torch's default)"


def add_threads_flag(parser: Any, default: int | None = 1, help: str = THREADS_HELP) -> None:
    """``--torch_threads``: on a busy 2-core machine one thread per process is many times faster."""
    parser.add_argument("--torch_threads", type=int, default=default, help=help)


def apply_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
