"""scripts/named_candidates.py: which recall position a candidate-aware run's queries point at."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "named_candidates.py"


@pytest.fixture(scope="module")
def named():
    spec = importlib.util.spec_from_file_location("named_candidates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_title_stops_at_the_first_field_not_at_an_abbreviation(named):
    assert named.title("Dr. Scholl's Bath. Brand: Dr. Scholl's. Categories: Skin Care") == "dr. scholl's bath"
    assert named.title("Home Alone. Year: 1990. Genres: Comedy") == "home alone"


def test_summary_counts_positions_and_compares_with_always_first(named):
    sims = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.7], [0.5, 0.5, 0.1]], dtype=np.float32)
    positions = named.named_positions(sims)
    assert positions.tolist() == [0, 1, 2, 0]  # a tie goes to the earlier position
    out = named.summary(positions, np.array([0, 2, 2, -1]), k=3)
    assert out["named_position_share"] == {"1": 0.5, "2": 0.25, "3": 0.25}
    assert out["users_with_target_among_candidates"] == 3
    assert out["named_is_target"] == pytest.approx(2 / 3) and out["always_first_is_target"] == pytest.approx(
        1 / 3
    )


def test_recall_settings_of_a_policy_run_and_of_the_baseline(named):
    assert named.recall_settings({"prompt": {"candidates": 10, "candidate_fusion": "/f.json"}}) == (
        10,
        "/f.json",
    )
    assert named.recall_settings({"candidates": {"k": 5, "fusion": None}}) == (5, None)
    with pytest.raises(SystemExit, match="not a candidate-aware run"):
        named.recall_settings({"prompt": {"max_length": 256}})


def test_first_candidate_runs_name_the_first_candidate(named, ml100k_dir, tmp_path):
    """`evaluate --method first-candidate` writes candidate #1's text as the query: the script must find #1 named for
    every user, its title copied, and the named one equal to the target exactly where the target is first."""
    from rl4rec.evaluation.config import EvalConfig
    from rl4rec.evaluation.run_files import read_ranks
    from rl4rec.evaluation.runner import run_evaluation
    from rl4rec.retrieval.fusion import FusionConfig

    fusion = tmp_path / "fusion.json"
    FusionConfig(w_text=0.1, w_hist=0.5, w_co=4.0).save(fusion)
    run = tmp_path / "fc"
    run_evaluation(EvalConfig(method="first-candidate", candidates=5, candidate_fusion=str(fusion), fusion=str(fusion),
                              dataset="ml-100k", data_dir=str(ml100k_dir), split="valid", num_users=60,
                              bootstrap_samples=100, run_dir=str(run)))  # fmt: skip
    out_file = tmp_path / "named.json"
    assert named.main([str(run), "--data_dir", str(ml100k_dir), "--output", str(out_file)]) == 0
    out = json.loads(out_file.read_text())
    assert out["users"] == len(read_ranks(run)) == 60
    assert out["named_position_share"]["1"] == 1.0 and out["copies_named_title"] == 1.0
    if out["users_with_target_among_candidates"]:
        assert out["named_is_target"] == out["always_first_is_target"]
