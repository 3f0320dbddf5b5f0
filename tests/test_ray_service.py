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


def seed_snippet() -> str:
    """The first python block of docs/seed.md: the seed's reward snippet, as printed there."""
    text = (REPO / "docs" / "seed.md").read_text(encoding="utf-8")
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_actor_start_call_by_name_from_second_process_and_stop(
    private_ray, ml100k_dir, beauty_data_dir, tmp_path
):
    env = private_ray["env"]
    data_dir = tmp_path / "data"  # ml-100k and Beauty side by side, as the seed's data/ folder
    data_dir.mkdir()
    (data_dir / "ml-100k").symlink_to(ml100k_dir / "ml-100k")
    (data_dir / "beauty").symlink_to(beauty_data_dir / "beauty")
    started = run(
        ["./runs/run_retrieval.sh", "--datasets", "ml-100k", "beauty", "--data_dir", str(data_dir)], env
    )
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

    # The seed's own snippet, exactly as docs/seed.md prints it, from src/ as the seed's scripts run.
    snippet = seed_snippet()
    seed = subprocess.run([sys.executable, "-c", snippet + "\nprint(rewards)"], env=env, cwd=REPO / "src",
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert seed.returncode == 0, seed.stderr[-3000:]
    assert len(json.loads(seed.stdout.strip().splitlines()[-1])) == 2

    # ./runs/run_trl_train.sh trains against the service run_retrieval.sh started (one PPO step, tiny policy).
    from train_helpers import tiny_policy_dir

    out = data_dir.parent / "seed-run"
    policy = tiny_policy_dir(data_dir.parent / "policy")
    trained = run(["./runs/run_trl_train.sh", "--model_name", str(policy), "--device", "cpu", "--dataset_name", "ml-100k", "--data_dir",
                   str(data_dir), "--max_steps", "1", "--batch_size", "2", "--mini_batch_size", "1", "--ppo_epochs", "1",
                   "--max_new_tokens", "8", "--max_length", "96", "--train_users", "4", "--log_with", "none",
                   "--checkpoint_dir", str(out)], env)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((out / "run_config.json").read_text())["retrieval"] == "ray"
    assert (out / "checkpoint_final").is_dir()

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
    script = run(
        ["./runs/run_trl_train.sh", "--device", "cpu", "--dataset_name", "ml-100k"], env
    )  # Ray by default
    assert script.returncode == 2 and "Error: RetrievalService not found!" in script.stderr
    assert "./runs/run_retrieval.sh" in script.stderr and "Traceback" not in script.stderr
