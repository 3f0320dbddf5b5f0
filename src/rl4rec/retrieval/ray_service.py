"""The RetrievalService as a detached, named Ray actor (``RetrievalService`` in namespace ``rl4rec``).

``rl4rec serve`` / ``./runs/run_retrieval.sh`` start a Ray head on this machine if none is running
(token authentication on, node address 127.0.0.1 unless ``--address`` / ``--node_ip_address`` say
otherwise), start the actor, wait until it answers, and return. Any process can then reach it by
name: :func:`get_service` (used by ``create_reward_function(backend="ray")``).

Loopback: Ray turns ``--node-ip-address=127.0.0.1`` into the machine's outward address and then
listens on every interface. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's single-machine mode)
the node address stays 127.0.0.1 and the GCS, raylet and agents bind to loopback only; a head we start
on a loopback address gets that variable, and :func:`connect` sets the same mode in a client whose
target cluster is on loopback (otherwise the client would look for it on the outward address).
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


#: Ray's switch for its single-machine mode (node address = loopback); see the module docstring.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _auth_env() -> dict[str, str]:
    """Environment that keeps Ray's token authentication on (Ray reads the token from ~/.ray/auth_token)."""
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "token")
    return env


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.1, localhost or ::1, with or without a port."""
    if not address:
        return False
    host = address
    if host.startswith("["):  # [::1]:6379
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in _LOOPBACK_HOSTS


def _use_loopback_if_needed(address: str | None) -> None:
    """Put this process in Ray's single-machine mode when the cluster it joins lives on 127.0.0.1.

    Ray resolves a loopback bootstrap address to the machine's outward address unless that mode is on;
    the flag is read from ``ray_constants`` at call time, so setting it after ``import ray`` works.
    """
    try:
        from ray._private import ray_constants, services

        resolved = services.get_ray_address_from_environment(address or "auto", None)
    except Exception:  # no cluster found: ray.init reports it below
        return
    if resolved and resolved != "auto" and is_loopback(resolved):
        os.environ[LOOPBACK_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False


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


def _token_auth_for_explicit_address(address: str | None) -> None:
    """Send our token to a cluster given by explicit address, as Ray itself does for ``auto``.

    Ray turns token auth on in a client only when it discovers a local cluster itself; with an
    explicit ``host:port`` the client would connect without the token and be refused. Ray's own helper
    enables it properly (setting ``RAY_AUTH_MODE`` by hand after ``import ray`` does not take effect).
    """
    if address in (None, "auto"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token auth
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def connect(address: str | None = "auto", namespace: str = NAMESPACE) -> None:
    """Connect this process to a running Ray cluster (no-op if already connected)."""
    ray = _ray()
    if ray.is_initialized():
        return
    _use_loopback_if_needed(address)
    _token_auth_for_explicit_address(address)
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


def start_head(
    port: int = 6379,
    node_ip_address: str = "127.0.0.1",
    num_cpus: int | None = None,
    temp_dir: str | None = None,
) -> str:
    """Start a Ray head on this machine with token authentication; returns the address to connect with.

    On the default loopback address every Ray server of the head listens on 127.0.0.1 only; pass the
    machine's address as ``node_ip_address`` for a head that other machines can join. ``temp_dir`` gives
    the head its own session folder (tests, benchmarks); :func:`stop_head` then stops exactly that head,
    and the returned address is explicit (``host:port``) since ``auto`` only finds the default folder.
    """
    ensure_auth_token()
    cmd = [
        _ray_cli(), "start", "--head", f"--port={port}", f"--node-ip-address={node_ip_address}",
        "--include-dashboard=false", "--disable-usage-stats",
    ]  # fmt: skip
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if temp_dir is not None:
        cmd.append(f"--temp-dir={temp_dir}")
    env = _auth_env()
    if is_loopback(node_ip_address):
        env[LOOPBACK_ENV] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if temp_dir is not None:
        return f"{node_ip_address}:{port}"
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
    batch_requests: bool = True,
    resources: dict[str, float] | None = None,
) -> Any:
    """Start (or reuse) the detached named actor and wait until it answers ``ping``.

    ``resources`` are custom Ray resources the actor needs (e.g. ``{"retrieval_node": 1}``): Ray
    places it only on a node started with them (``ray start --resources='{"retrieval_node": 1}'``),
    and restarts it there, or on the next node that has them, when its node dies.

    ``max_concurrency`` calls run at once in the actor's threads; with ``batch_requests`` their texts
    are merged into shared embedder batches (see :class:`~rl4rec.retrieval.batching.EncodeBatcher`).
    """
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
        resources=resources or None,
        max_concurrency=max_concurrency,
        max_restarts=max_restarts,
        # the actor must find the same cache and data when Ray restarts it
        runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("RL4REC_", "HF_"))}},
    ).remote(
        datasets=datasets,
        data_dir=data_dir,
        embedder=embedder,
        show_progress=False,
        batch_requests=batch_requests,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = ray.get(handle.ping.remote(), timeout=max(1.0, deadline - time.monotonic()))
            break
        except ray.exceptions.GetTimeoutError:
            raise ServiceError(f"RetrievalService did not answer within {timeout_s:.0f}s.") from None
        except ray.exceptions.ActorUnavailableError:
            # An existing actor that Ray is restarting (e.g. its node died and one with the resources it
            # needs has joined): wait for it, it is not a failed start.
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"RetrievalService is restarting and did not answer within {timeout_s:.0f}s "
                    f"(does a live node have the resources it needs: {resources or 'none'}, {num_gpus} GPUs?)."
                ) from None
            time.sleep(1.0)
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
