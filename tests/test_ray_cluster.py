"""A two-node Ray cluster on this machine, for real: the RetrievalService on the worker node, training on the head.

The head (the ``ray_head`` fixture) and a second node (``ray start --address``, its own session folder,
custom resource ``retrieval_node``) both listen on 127.0.0.1 only, with token authentication.
``rl4rec serve --resources retrieval_node=1`` puts the actor on the worker node; training runs in a
process on the head with ``--retrieval ray``. Killing the worker node takes the actor down with it: the
reward calls retry for ``--retry_timeout_s``, then the run stops with a checkpoint and the command to
resume. Once a node with the resource is back, Ray restarts the detached actor there by itself, and
``--resume`` finishes the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rl4rec.retrieval import ray_service, ray_testing
from rl4rec.training.checkpoints import latest_checkpoint
from train_helpers import TRAIN_ENV, metric_steps, run_until_stopped, train_flags

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
RESOURCE = "retrieval_node"


@pytest.fixture
def worker_nodes(ray_head):
    """``start()`` adds a node with the ``retrieval_node`` resource (returns its temp dir); all are stopped after."""
    started: list[str] = []

    def start() -> str:
        temp_dir = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # Ray's socket paths must stay short
        started.append(temp_dir)
        ray_testing.start_worker_node(
            ray_head, temp_dir, num_cpus=1, resources={RESOURCE: 1}, object_store_memory=100 * 2**20
        )
        return temp_dir

    yield start
    for temp_dir in started:
        ray_testing.stop_head(temp_dir)


def raylet_node_id(raylet) -> str:
    return next(a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--node_id="))


def node_id_of(temp_dir: str) -> str:
    """The node id of the Ray node whose session folder is under ``temp_dir`` (from its raylet)."""
    import psutil

    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "raylet" and any(temp_dir in a for a in proc.info["cmdline"] or []):
            return raylet_node_id(proc)
    raise AssertionError(f"no raylet runs under {temp_dir}")


def actor_node_id(name: str, address: str) -> str:
    """The node whose raylet started the actor's process, and Ray's own record of where the actor lives."""
    import psutil
    import ray

    from rl4rec.retrieval.client import RayClient

    pid = RayClient(name, address=address).call("ping")["pid"]
    raylet = next(p for p in psutil.Process(pid).parents() if p.name() == "raylet")
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(RESOURCE)}
    assert raylet_node_id(raylet) in alive
    return raylet_node_id(raylet)


def stop_node(temp_dir: str) -> None:
    assert ray_testing.stop_head(temp_dir) > 0


def serve(name: str, address: str, data_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rl4rec.cli", "serve", "--datasets", "ml-100k", "--data_dir", str(data_dir),
           "--address", address, "--name", name, "--resources", f"{RESOURCE}=1"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_service_on_worker_node_training_on_head_node_loss_stops_with_checkpoint_and_resumes(
    ray_head, worker_nodes, ml100k_dir, tiny_policy, tmp_path
):
    import ray

    first_node = worker_nodes()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    name = f"RetrievalServiceCluster-{os.getpid()}"
    try:
        started = serve(name, ray_head, ml100k_dir)
        assert started.returncode == 0, started.stderr[-3000:]
        head = ray.get_runtime_context().get_node_id()  # this test process is a driver on the head
        assert actor_node_id(name, ray_head) == node_id_of(first_node) != head

        # The tiny policy's steps take a fraction of a second: enough of them that the node goes mid-run.
        out, steps = tmp_path / "run", 60
        flags = train_flags(ml100k_dir, out, "--retrieval", "ray", "--ray_address", ray_head, "--model_name",
                            str(tiny_policy), "--retrieval_service_name", name, "--retry_timeout_s", "10",
                            "--save_steps", "100", "--num_epochs", "10", max_steps=steps)  # fmt: skip
        cmd = [sys.executable, "-m", "rl4rec.cli", "train", *flags]
        log = tmp_path / "stderr.txt"
        # 2 steps with rewards from the worker node, then the node goes (while later steps run)
        returncode = run_until_stopped(
            cmd, REPO, log, ready=lambda: len(metric_steps(out)) >= 2, stop=lambda: stop_node(first_node)
        )
        stderr = log.read_text()
        assert returncode == 2, stderr[-3000:]
        assert "RetrievalService unreachable" in stderr and "--resume" in stderr and "Traceback" not in stderr
        done = metric_steps(out)
        assert done == list(range(1, len(done) + 1)) and 2 <= len(done) < steps, done
        checkpoint = out / f"checkpoint_step_{done[-1]}"
        assert f"Training stopped at step {done[-1]}" in stderr and str(checkpoint) in stderr
        assert latest_checkpoint(out) == checkpoint and not (out / "checkpoint_final").exists()

        # A node with the resource joins: Ray restarts the detached actor there; `serve` waits for it.
        second_node = worker_nodes()
        again = serve(name, ray_head, ml100k_dir)
        assert again.returncode == 0, again.stderr[-3000:]
        assert actor_node_id(name, ray_head) == node_id_of(second_node)
        resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, env=TRAIN_ENV, capture_output=True, text=True,
                                 timeout=600)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resuming from {checkpoint}" in resumed.stderr
        assert metric_steps(out) == list(range(1, steps + 1))
        assert (out / "checkpoint_final" / "config.json").is_file()
    finally:
        ray_service.stop_service(name, address=ray_head)
