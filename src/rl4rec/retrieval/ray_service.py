"""The RetrievalService as a detached, named Ray actor (``RetrievalService`` in namespace ``rl4rec``).

``rl4rec serve`` / ``./runs/run_retrieval.sh`` start a Ray head on this machine if none is running
(token authentication on, node address 127.0.0.1 unless ``--address`` / ``--node_ip_address`` say
otherwise), start the actor, wait until it answers, and return. Any process can then reach it by
name: :func:`get_service` (used by ``create_reward_function(backend="ray")``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rl4rec.errors import ServiceError, ServiceNotFoundError

logger = logging.getLogger(__name__)

SERVICE_NAME = "RetrievalService"
NAMESPACE = "rl4rec"
NOT_FOUND_MESSAGE = (
    "Error: RetrievalService not found!\n"
    "Start it first:  ./runs/run_retrieval.sh   (same as: rl4rec serve --datasets beauty)\n"
    "or compute rewards in this process instead: --retrieval local (Python: backend='local')."
)


def _ray():
    import ray

    return ray


def _auth_env() -> dict[str, str]:
    """Environment that keeps Ray's token authentication on (Ray reads the token from ~/.ray/auth_token)."""
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "token")
    return env


def ensure_auth_token() -> None:
    """Create ~/.ray/auth_token (mode 600) if missing, so the cluster we start requires it."""
    token = Path.home() / ".ray" / "auth_token"
    if not token.exists():
        subprocess.run(
            [_ray_cli(), "get-auth-token", "--generate"], check=True, capture_output=True, env=_auth_env()
        )
    if token.exists():
        token.chmod(0o600)


def _ray_cli() -> str:
    local = Path(sys.executable).with_name("ray")
    return str(local) if local.exists() else (shutil.which("ray") or "ray")


def connect(address: str | None = "auto", namespace: str = NAMESPACE) -> None:
    """Connect this process to a running Ray cluster (no-op if already connected)."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        # Clients need no RAY_AUTH_MODE: Ray detects the cluster's token auth and reads ~/.ray/auth_token.
        ray.init(
            address=address or "auto", namespace=namespace, log_to_driver=False, logging_level=logging.WARNING
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ServiceNotFoundError(
            f"{NOT_FOUND_MESSAGE}\n(no Ray cluster reachable at {address!r}: {exc})"
        ) from None


def get_service(name: str = SERVICE_NAME, namespace: str = NAMESPACE, address: str | None = "auto") -> Any:
    """Handle of the named actor; raises :class:`ServiceNotFoundError` with the seed's message."""
    connect(address, namespace)
    try:
        return _ray().get_actor(name, namespace=namespace)
    except ValueError:
        raise ServiceNotFoundError(NOT_FOUND_MESSAGE) from None


def start_head(port: int = 6379, node_ip_address: str = "127.0.0.1", num_cpus: int | None = None) -> str:
    """Start a Ray head on this machine with token authentication; returns the address to connect with."""
    ensure_auth_token()
    cmd = [
        _ray_cli(), "start", "--head", f"--port={port}", f"--node-ip-address={node_ip_address}",
        "--include-dashboard=false", "--disable-usage-stats",
    ]  # fmt: skip
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_auth_env())
    if proc.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    # Connect through Ray's own discovery ("auto"): the head may advertise another interface address.
    return "auto"


def cluster_running(address: str | None = "auto") -> bool:
    ray = _ray()
    if ray.is_initialized():
        return True
    try:
        connect(address)
    except ServiceNotFoundError:
        return False
    return True


def start_service(
    datasets: list[str],
    data_dir: str | None = None,
    embedder: dict[str, Any] | None = None,
    name: str = SERVICE_NAME,
    namespace: str = NAMESPACE,
    address: str | None = "auto",
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_concurrency: int = 8,
    max_restarts: int = -1,
    timeout_s: float = 600,
    replace: bool = False,
) -> Any:
    """Start (or reuse) the detached named actor and wait until it answers ``ping``."""
    from rl4rec.data.dataset import load_dataset

    for dataset in datasets:  # fail here, with the data layer's message, not inside the actor
        load_dataset(dataset, data_dir)
    ray = _ray()
    connect(address, namespace)
    if replace:
        stop_service(name, namespace, address)
    from rl4rec.retrieval.service import RetrievalService

    data_dir = str(Path(data_dir).resolve()) if data_dir else str(Path("data").resolve())
    actor_cls = ray.remote(RetrievalService)
    handle = actor_cls.options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_concurrency=max_concurrency,
        max_restarts=max_restarts,
        # the actor must find the same cache and data when Ray restarts it
        runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("RL4REC_", "HF_"))}},
    ).remote(datasets=datasets, data_dir=data_dir, embedder=embedder, show_progress=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = ray.get(handle.ping.remote(), timeout=max(1.0, deadline - time.monotonic()))
            break
        except ray.exceptions.GetTimeoutError:
            raise ServiceError(f"RetrievalService did not answer within {timeout_s:.0f}s.") from None
        except ray.exceptions.RayActorError as exc:
            ray.kill(handle, no_restart=True)
            raise ServiceError(f"RetrievalService failed to start: {exc}") from None
    missing = [d for d in datasets if d not in info["datasets"]]
    for dataset in missing:  # an existing actor (get_if_exists) may lack some datasets
        ray.get(handle.add_dataset.remote(dataset, data_dir))
    return handle


def stop_service(name: str = SERVICE_NAME, namespace: str = NAMESPACE, address: str | None = "auto") -> bool:
    """Kill the named actor; returns False if it was not running."""
    try:
        handle = get_service(name, namespace, address)
    except ServiceNotFoundError:
        return False
    _ray().kill(handle, no_restart=True)
    return True
