"""Faults with real processes: the Ray service dies, training is SIGKILLed mid-save, the cache rots.

Every Ray test runs against a head of its own (own session folder and port, loopback) and an actor
with a per-process name, so nothing here touches another user's ``RetrievalService``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rl4rec.errors import ServiceError
from rl4rec.training.checkpoints import latest_checkpoint
from train_helpers import TRAIN_ENV, metric_steps, run_until_stopped, train_flags, wait_for

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["A 1990s comedy", "Star Wars. Year: 1977. Genres: Action, Sci-Fi", "", "ünïcødé 映画 🎬"]
TARGETS = [1, 2, 3, 50]
HISTORIES = [[4], [5, 6], [], [7, 8, 9]]


def call_args(texts=TEXTS, targets=TARGETS, histories=HISTORIES):
    return (list(texts), "ml-100k", list(targets), [list(h) for h in histories], "ndcg", 1000)


def assert_loadable(checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert model.num_parameters() > 0
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "optimizer.pt").is_file()


# -- Ray service faults ------------------------------------------------------------------------------


@pytest.fixture
def service(ray_head, ml100k_dir, request):
    """Starts a uniquely named actor; stops it after the test, whatever happened."""
    from rl4rec.retrieval import ray_service

    name = f"RetrievalServiceTest-{os.getpid()}-{request.node.name[-20:]}"
    ray_service.start_service(["ml-100k"], str(ml100k_dir), name=name, address=ray_head)
    yield name
    ray_service.stop_service(name, address=ray_head)


def kill_actor(name: str, restart: bool) -> None:
    import ray

    from rl4rec.retrieval.ray_service import NAMESPACE

    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=not restart)


@pytest.mark.ray
@pytest.mark.slow
def test_client_survives_actor_restart_mid_call(ray_head, service):
    from rl4rec.retrieval.client import RayClient

    # An actor restart reloads the embedder and the item index: on a loaded 2-core machine that took >120 s.
    client = RayClient(service, address=ray_head, retry_timeout_s=300)
    many = (TEXTS * 64)[:256]
    big = call_args(many, (TARGETS * 64)[:256], (HISTORIES * 64)[:256])
    expected, expected_big = client.call("evaluate", *call_args()), client.call("evaluate", *big)
    pid = client.call("ping")["pid"]
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.call, "evaluate", *big)
        time.sleep(0.3)  # the 256-text call takes seconds: the kill lands while it runs
        kill_actor(service, restart=True)  # the actor has max_restarts=-1: Ray restarts it
        assert in_flight.result(timeout=300) == expected_big
    assert client.call("ping")["pid"] != pid  # a new process answered
    kill_actor(service, restart=True)
    assert asyncio.run(client.acall("evaluate", *call_args())) == expected


@pytest.mark.ray
@pytest.mark.slow
def test_client_gives_up_with_resume_hint_after_retry_timeout(ray_head, service):
    from rl4rec.retrieval.client import RayClient

    client = RayClient(service, address=ray_head, retry_timeout_s=3)
    client.call("ping")
    kill_actor(service, restart=False)
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"(?s)unreachable.*run_retrieval\.sh.*--resume"):
        client.call("evaluate", *call_args())
    assert 3 <= time.monotonic() - started < 60


@pytest.mark.ray
@pytest.mark.slow
def test_client_continues_when_rl4rec_serve_restarts_the_service(ray_head, service, ml100k_dir):
    from rl4rec.retrieval.client import RayClient

    client = RayClient(service, address=ray_head, retry_timeout_s=240)
    expected = client.call("evaluate", *call_args())
    kill_actor(service, restart=False)
    serve = [sys.executable, "-m", "rl4rec.cli", "serve", "--datasets", "ml-100k", "--data_dir", str(ml100k_dir),
             "--address", ray_head, "--name", service]  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.call, "evaluate", *call_args())  # retries while the actor is gone
        time.sleep(2)
        assert not waiting.done()
        proc = subprocess.run(serve, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert waiting.result(timeout=120) == expected


@pytest.mark.ray
@pytest.mark.slow
def test_training_stops_with_checkpoint_when_service_dies_and_resumes(
    ray_head, service, ml100k_dir, tiny_policy, tmp_path
):
    from rl4rec.retrieval import ray_service

    out, steps = (
        tmp_path / "run",
        30,
    )  # a tiny policy's steps are fast: enough of them that the kill lands mid-run
    flags = train_flags(ml100k_dir, out, "--retrieval", "ray", "--ray_address", ray_head, "--model_name",
                        str(tiny_policy), "--retrieval_service_name", service, "--retry_timeout_s", "5",
                        "--save_steps", "100", "--num_epochs", "10", max_steps=steps)  # fmt: skip
    cmd = [sys.executable, "src/train_with_trl.py", *flags]
    log = tmp_path / "stderr.txt"
    returncode = run_until_stopped(
        cmd,
        REPO,
        log,
        ready=lambda: len(metric_steps(out)) >= 1,
        stop=lambda: kill_actor(service, restart=False),  # gone for good: the run must stop, not hang
    )
    stderr = log.read_text()
    assert returncode == 2, stderr[-3000:]
    assert "RetrievalService unreachable" in stderr and "Training stopped at step" in stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None, sorted(p.name for p in out.iterdir())
    step = int(checkpoint.name.rsplit("_", 1)[1])
    assert 1 <= step < steps and str(checkpoint) in stderr
    assert_loadable(checkpoint)
    assert not (out / "checkpoint_final").exists()

    ray_service.start_service(["ml-100k"], str(ml100k_dir), name=service, address=ray_head)  # back up
    # A longer retry budget now: on a busy machine Ray's memory monitor may kill and restart the actor.
    resume = [*cmd, "--resume", "--retry_timeout_s", "300"]
    resumed = subprocess.run(resume, cwd=REPO, env=TRAIN_ENV, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoint}" in resumed.stderr
    assert metric_steps(out) == list(range(1, steps + 1))
    assert (out / "checkpoint_final" / "config.json").is_file()


# -- SIGKILL while a checkpoint is being written -------------------------------------------------------

HANG_IN_SAVE = """
import os, sys, time
from pathlib import Path
import transformers
marker, hang_step = Path(os.environ["HANG_MARKER"]), int(os.environ["HANG_AT_STEP"])
original = transformers.Trainer._save_optimizer_and_scheduler
def hang(self, output_dir):  # the model weights of this checkpoint are written; optimizer not yet
    if self.state.global_step == hang_step:
        marker.write_text(str(output_dir))
        time.sleep(3600)
    return original(self, output_dir)
transformers.Trainer._save_optimizer_and_scheduler = hang
sys.path.insert(0, "src")
from train_with_trl import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_keeps_previous_and_resume_works(ml100k_dir, tiny_policy, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "saving"
    flags = train_flags(ml100k_dir, out, "--save_steps", "1", "--model_name", str(tiny_policy))
    env = dict(TRAIN_ENV, HANG_MARKER=str(marker), HANG_AT_STEP="2")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", HANG_IN_SAVE, *flags], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    try:
        assert wait_for(marker.exists, 600, proc), log.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # mid-save: weights of step 2 written, optimizer not
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = Path(marker.read_text())
    assert partial.is_dir() and not (partial / "optimizer.pt").exists()  # really killed mid-write
    assert not (out / "checkpoint_step_2").exists()
    assert latest_checkpoint(out) == out / "checkpoint_step_1"
    assert_loadable(out / "checkpoint_step_1")

    resume = [sys.executable, "src/train_with_trl.py", *flags, "--resume"]
    resumed = subprocess.run(resume, cwd=REPO, env=TRAIN_ENV, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint_step_1'}" in resumed.stderr
    assert metric_steps(out) == [1, 2, 3]
    assert not partial.exists()  # the half-written staging folder was cleaned up
    assert latest_checkpoint(out) == out / "checkpoint_step_3"
    assert_loadable(out / "checkpoint_step_2")


def test_save_total_limit_keeps_the_newest_complete_step_checkpoints(tmp_path):
    from rl4rec.training.checkpoints import REQUIRED_FOR_RESUME, list_step_checkpoints, prune_step_checkpoints

    for step in (2, 10, 4):
        folder = tmp_path / f"checkpoint_step_{step}"
        folder.mkdir()
        for name in REQUIRED_FOR_RESUME:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoint_step_12").mkdir()  # incomplete: neither counted nor deleted
    for kept in ("checkpoint_final", "checkpoint_best"):
        (tmp_path / kept).mkdir()
    assert prune_step_checkpoints(tmp_path, None) == []
    removed = prune_step_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["checkpoint_step_2"]  # by step number, not by name
    assert [step for step, _ in list_step_checkpoints(tmp_path)] == [4, 10]
    prune_step_checkpoints(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best", "checkpoint_final", "checkpoint_step_10", "checkpoint_step_12"]  # fmt: skip


# -- the item-embedding cache --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder():
    from rl4rec.retrieval.embedder import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def catalogue(ml100k):
    """The first 128 ml-100k items: a real catalogue small enough that each rebuild takes a second."""
    import dataclasses

    return dataclasses.replace(ml100k, name="ml-100k-head", items={i: ml100k.items[i] for i in range(1, 129)})


@pytest.fixture(scope="module")
def built_index(catalogue, embedder, tmp_path_factory):
    from rl4rec.retrieval.item_index import ItemIndex

    root = tmp_path_factory.mktemp("index")
    index = ItemIndex.load_or_build(catalogue, embedder, root, show_progress=False)
    path = ItemIndex.cache_path(catalogue, embedder, root)
    assert index.n_items == 128
    return root, path, path.read_bytes(), index.embeddings.clone()


def reload(catalogue, embedder, root, caplog):
    from rl4rec.retrieval.item_index import ItemIndex

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rl4rec.retrieval.item_index"):
        index = ItemIndex.load_or_build(catalogue, embedder, root, show_progress=False)
    return index, [r.getMessage() for r in caplog.records if r.name == "rl4rec.retrieval.item_index"]


@pytest.mark.parametrize(
    "damage",
    ["truncate_half", "flip_data_bytes", "flip_header_byte", "wrong_shape"],
)
def test_corrupted_cache_is_detected_and_rebuilt(catalogue, embedder, built_index, damage, caplog):
    import numpy as np
    import torch
    from safetensors.numpy import save

    root, path, good, expected = built_index
    data = bytearray(good)
    if damage == "truncate_half":
        data = data[: len(data) // 2]
    elif damage == "flip_data_bytes":  # what bit rot does: the file still parses, the numbers are wrong
        for offset in (len(data) - 5, len(data) // 2, len(data) - 4000):
            data[offset] ^= 0xFF
    elif damage == "flip_header_byte":
        data[12] ^= 0xFF
    elif damage == "wrong_shape":  # a valid, checksummed file of the wrong size (e.g. another catalogue)
        array = np.zeros((10, expected.shape[1]), dtype=np.float32)
        from rl4rec.retrieval.item_index import _checksum

        data = bytearray(save({"embeddings": array}, metadata={"sha256": _checksum(array)}))
    path.write_bytes(bytes(data))

    index, warnings = reload(catalogue, embedder, root, caplog)
    assert any("rebuilding" in w for w in warnings), "damage went unnoticed"
    assert torch.allclose(index.embeddings, expected, atol=1e-5)
    # The rebuilt file is valid again: the next load uses it silently.
    again, warnings = reload(catalogue, embedder, root, caplog)
    assert not warnings and torch.equal(again.embeddings, index.embeddings)


def test_cache_loader_never_unpickles(catalogue, embedder, built_index, tmp_path, caplog, monkeypatch):
    """A pickle planted at the cache path is never executed: the loader reads safetensors only."""
    import pickle

    root, path, _good, expected = built_index
    planted = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {planted}",))

    path.write_bytes(pickle.dumps(Exploit()))

    def forbidden(*args, **kwargs):
        raise AssertionError("the item-index cache loader must not unpickle")

    import numpy
    import torch

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(numpy, "load", forbidden)
    index, warnings = reload(catalogue, embedder, root, caplog)
    assert not planted.exists()
    assert any("unreadable" in w for w in warnings)
    assert torch.allclose(index.embeddings, expected, atol=1e-5)
