"""Security with real processes: the Ray head listens on loopback only and refuses clients without the token.

Runs against a head of its own (own session folder and port, started like ``rl4rec serve`` starts
one) and a uniquely named actor, so nothing here touches another user's cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(ray_head, ml100k_dir):
    from rl4rec.retrieval import ray_service

    name = f"RetrievalServiceSecurity-{os.getpid()}"
    ray_service.start_service(["ml-100k"], str(ml100k_dir), name=name, address=ray_head)
    yield name
    ray_service.stop_service(name, address=ray_head)


# -- security: what listens, and who may connect ----------------------------------------------------------


def head_processes(address: str) -> list:
    """The processes of the Ray head at ``address`` (found through its GCS's session folder) and children."""
    import psutil

    port = address.rsplit(":", 1)[1]
    gcs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if f"--gcs_server_port={port}" in (p.info["cmdline"] or [])
    ]
    assert len(gcs) == 1, "the head's GCS process was not found"
    log_dir = next(a for a in gcs[0].info["cmdline"] if a.startswith("--log_dir="))
    temp_dir = log_dir.split("=", 1)[1].split("/session_")[0]
    procs = {}
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in proc.info["cmdline"] or []):
            procs[proc.pid] = proc
            procs.update({c.pid: c for c in proc.children(recursive=True)})
    return list(procs.values())


@pytest.mark.ray
@pytest.mark.slow
def test_ray_head_and_actor_listen_on_loopback_only(ray_head, service):
    import psutil

    listening = []
    for proc in head_processes(ray_head):
        try:
            listening += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]  # fmt: skip
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert any(port == int(ray_head.rsplit(":", 1)[1]) for _, _, port in listening), listening  # GCS found
    exposed = [entry for entry in listening if entry[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


@pytest.mark.ray
@pytest.mark.slow
def test_client_without_the_token_is_refused(ray_head, service, tmp_path):
    code = (
        "from rl4rec.retrieval.client import RayClient\n"
        f"RayClient({service!r}, address={ray_head!r}, retry_timeout_s=1).call('ping')\n"
        "print('CONNECTED')"
    )
    env = dict(os.environ, HOME=str(tmp_path))  # no ~/.ray/auth_token here
    env.pop("RAY_AUTH_MODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0 and "CONNECTED" not in proc.stdout
    assert "RetrievalService not found" in proc.stderr or "auth" in proc.stderr.lower()
