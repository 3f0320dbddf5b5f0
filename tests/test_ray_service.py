"""The RetrievalService as a real detached Ray actor, reached by name from other processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["A 1990s comedy", "Star Wars. Year: 1977. Genres: Action, Sci-Fi", ""]

CLIENT = """
import json, sys
from rl4rec.rewards import create_reward_function
fn = create_reward_function(dataset_name="ml-100k", reward_type="mrr", k=1000)
print(json.dumps(fn(generated_texts={texts!r}, target_items=[1, 2, 3], history_items=[[4], [5, 6], []])))
"""


def run(cmd: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


def test_actor_start_call_by_name_from_second_process_and_stop(private_ray, ml100k_dir):
    env = private_ray["env"]
    started = run(["./runs/run_retrieval.sh", "--datasets", "ml-100k", "--data_dir", str(ml100k_dir)], env)
    assert started.returncode == 0, started.stderr[-3000:]
    assert "RetrievalService is up" in started.stdout

    client = run([sys.executable, "-c", CLIENT.format(texts=TEXTS)], env)
    assert client.returncode == 0, client.stderr[-3000:]
    remote = json.loads(client.stdout.strip().splitlines()[-1])

    from rl4rec.rewards import create_reward_function

    local = create_reward_function(
        dataset_name="ml-100k", reward_type="mrr", k=1000, backend="local", data_dir=ml100k_dir
    )
    assert remote == pytest.approx(local(TEXTS, [1, 2, 3], [[4], [5, 6], []]))
    assert remote[2] == 0.0  # empty text

    bad = run([sys.executable, "-c", CLIENT.format(texts=["x", "y"])], env)  # 2 texts, 3 targets
    assert bad.returncode != 0 and "target_items has 3 entries but generated_texts has 2" in bad.stderr

    stopped = run([sys.executable, "-m", "rl4rec.cli", "serve", "--stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    gone = run([sys.executable, "-c", CLIENT.format(texts=TEXTS)], env)
    assert gone.returncode != 0
    assert "Error: RetrievalService not found!" in gone.stderr and "./runs/run_retrieval.sh" in gone.stderr


def test_no_cluster_prints_seed_error(tmp_path):
    import os

    env = dict(os.environ, RAY_TMPDIR=str(tmp_path))  # a temp dir with no cluster in it
    env.pop("RAY_ADDRESS", None)
    code = "from rl4rec.rewards import create_reward_function\ncreate_reward_function(dataset_name='beauty')"
    proc = run([sys.executable, "-c", code], env)
    assert proc.returncode != 0
    assert "Error: RetrievalService not found!" in proc.stderr
    assert "Traceback" in proc.stderr  # Python API: an exception whose message is the seed's text
    cli = run([sys.executable, "src/train_with_trl.py", "--retrieval", "ray", "--device", "cpu", "--dataset_name", "ml-100k",
               "--data_dir", str(tmp_path)], env)  # fmt: skip
    assert cli.returncode == 2
    assert "Traceback" not in cli.stderr
