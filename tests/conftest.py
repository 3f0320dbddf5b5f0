"""Shared fixtures: real datasets (ml-100k from the recbole wheel, Amazon Beauty from ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach a model hub, and keep caches inside the checkout (ignored by git).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RL4REC_CACHE_DIR", str(REPO / ".cache" / "rl4rec"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def module_tmp_path(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A temporary folder for one test module, deleted when the module ends.

    ``tmp_path_factory`` folders live until the session ends; a module's training run leaves ~5 GB of
    checkpoints, and a CI disk filled by several of them fails the next ``torch.save`` mid-write.
    """
    import shutil

    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the default policy's tokenizer, for tests of plumbing (faults, processes,
    checkpoints) rather than learning: steps take a second and checkpoints a few MB instead of 1.6 GB.
    The real 135M policy is trained by test_train_grpo, test_ppo_train, test_sft and test_own_data."""
    from train_helpers import tiny_policy_dir

    return tiny_policy_dir(tmp_path_factory.mktemp("tiny-policy") / "policy")


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir root holding ml-100k/ converted from the recbole wheel's atomic files."""
    from rl4rec.data.recbole import prepare_recbole

    root = tmp_path_factory.mktemp("data")
    prepare_recbole("ml-100k", None, root / "ml-100k")
    return root


@pytest.fixture(scope="session")
def beauty_data_dir() -> Path:
    """The data_dir root holding the real Amazon Beauty data (skipped, with the reason, if absent)."""
    if not (SHARED_DATA / "beauty" / "sequential_data.txt").is_file():
        pytest.skip(
            f"Amazon Beauty data not found at {SHARED_DATA / 'beauty'} (expected ../shared/data beside the repo)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path):
    from rl4rec.data import load_dataset

    return load_dataset("ml-100k", ml100k_dir)


@pytest.fixture(scope="session")
def beauty(beauty_data_dir: Path):
    from rl4rec.data import load_dataset

    return load_dataset("beauty", beauty_data_dir)


@pytest.fixture(scope="session")
def policy_tokenizer():
    """Tokenizer of the offline default policy (converts the GGUF once into the cache)."""
    from rl4rec.policy import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of the test module's own (own session folder and port, loopback, token auth).

    Yields its address (``127.0.0.1:PORT``) with this process connected to it; stopped after the
    module (exactly that head: :func:`rl4rec.retrieval.ray_testing.local_head`).
    """
    from rl4rec.retrieval.ray_service import connect
    from rl4rec.retrieval.ray_testing import local_head

    with local_head() as address:
        connect(address)
        yield address


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def private_ray():
    """An isolated Ray head for this test session: its own temp dir (RAY_TMPDIR) and port.

    Yields the environment under which subprocesses (``rl4rec serve``, clients) see only this
    cluster. Teardown kills exactly this cluster's processes (found by its temp dir), not others'.
    """
    import subprocess
    import sys
    import tempfile

    import psutil

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    env = dict(os.environ, RAY_TMPDIR=temp)
    env.pop("RAY_ADDRESS", None)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [sys.executable, "-c", f"from rl4rec.retrieval.ray_service import start_head; start_head({port})"],
        env=env,
        check=True,
        capture_output=True,
    )
    yield {"env": env, "port": port, "temp_dir": temp, "ray": ray_cli}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in (proc.info["cmdline"] or [])):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    import shutil

    shutil.rmtree(temp, ignore_errors=True)
