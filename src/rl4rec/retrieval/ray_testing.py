"""Throwaway Ray clusters on one machine, for tests and benchmarks (not used by the product).

A private head with its own session folder and port (:func:`local_head`), a second node that joins it
(:func:`start_worker_node`, a two-node cluster on one machine) and a stop that kills exactly that head
(:func:`stop_head`), never another cluster on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from rl4rec.errors import ServiceError
from rl4rec.retrieval.ray_service import (
    LOOPBACK_ENV,
    _auth_env,
    _ray,
    ensure_auth_token,
    is_loopback,
    start_head,
)


def stop_head(temp_dir: str, timeout_s: float = 10.0) -> int:
    """Kill the Ray head started with ``start_head(temp_dir=...)`` and its workers, nothing else.

    Stops a node started with :func:`start_worker_node` the same way (its own ``temp_dir``): on a
    two-node cluster on one machine, that is how a test takes the worker node down.

    ``ray stop`` would stop every Ray process of this user on the machine (other people's clusters
    included); here only processes whose command line names ``temp_dir``, and their children (agents
    and workers rename themselves, so they are found as children), are killed. Returns their number.
    """
    import psutil

    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(temp_dir in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                found.update({c.pid: c for c in proc.children(recursive=True)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in found.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    psutil.wait_procs(list(found.values()), timeout=timeout_s)
    shutil.rmtree(temp_dir, ignore_errors=True)
    return len(found)


#: ``ray start`` for a node that joins a head on this machine; see :func:`start_worker_node`.
_WORKER_NODE_START = """
import sys, types
import ray._private.ray_constants as constants
from ray.scripts import scripts
scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), "ENABLE_RAY_CLUSTER": True})
sys.argv = ["ray", "start", *sys.argv[1:]]
sys.exit(scripts.main())
"""


def start_worker_node(
    address: str,
    temp_dir: str,
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
) -> None:
    """Start a second Ray node on this machine that joins the loopback head at ``address``.

    A two-node cluster on one machine (tests, trying a cluster layout before renting one): the node
    has its own raylet and agents, its own ``temp_dir`` (:func:`stop_head` takes it down alone) and
    custom ``resources`` that actors can ask for (``start_service(resources=...)``). It binds to
    127.0.0.1 only and joins with the head's token (token authentication stays on).

    This is ``ray start --address=...`` itself. In Ray's single-machine mode, which keeps every
    address on loopback, the ``ray start`` command refuses to add a node ("multi-node clusters are not
    supported on Windows and OSX"); only that check is switched off here, the way Ray's own
    ``ray.cluster_utils.Cluster`` adds nodes on one machine. On real machines use ``ray start
    --address=HEAD:6379 --resources=...`` as usual.
    """
    if not is_loopback(address):
        raise ServiceError(
            f"start_worker_node joins a head on this machine's loopback address, not {address!r}; "
            "on other machines run `ray start --address=HEAD:PORT` there."
        )
    ensure_auth_token()
    cmd = [
        sys.executable, "-c", _WORKER_NODE_START, f"--address={address}", "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]  # fmt: skip
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    if object_store_memory is not None:
        cmd.append(f"--object-store-memory={object_store_memory}")
    env = _auth_env()
    env[LOOPBACK_ENV] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ServiceError(f"starting a Ray node failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


@contextlib.contextmanager
def local_head(num_cpus: int | None = None, port: int | None = None) -> Iterator[str]:
    """A throwaway Ray head of our own (own session folder and port, loopback, token auth).

    Yields its address; on exit disconnects this process and stops exactly that head, never another
    cluster on the machine. For tests and benchmarks that must not touch a shared ``RetrievalService``.
    """
    import socket
    import tempfile

    if port is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="rl4rec-ray-", dir="/tmp")  # Ray's socket paths must stay short
    try:
        yield start_head(port, num_cpus=num_cpus, temp_dir=temp_dir)
    finally:
        ray = _ray()
        if ray.is_initialized():
            ray.shutdown()
        stop_head(temp_dir)
