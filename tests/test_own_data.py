"""Your own data: CSV files in, and README's four commands (prepare -> stats -> train -> evaluate) end to end.

The end-to-end test reads the four command lines from README.md ("Your own data in four commands"),
runs them on small CSV files it writes, and only appends sizes that keep it short on a CPU (argparse
lets a later flag win), so the README cannot drift from what works.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from rl4rec.data.csv_files import read_csv_dataset
from rl4rec.errors import DataError

REPO = Path(__file__).resolve().parents[1]
COLOURS = ["red", "blue", "green", "black", "white"]
KINDS = ["running shoes", "rain jacket", "wool socks", "sun hat", "trail backpack", "water bottle"]


def write_csvs(folder: Path, users: int = 24, per_user: int = 7) -> None:
    items = [(f"sku{i}", f"{c.title()} {k}", f"Outdoor|{k.split()[-1].title()}")
             for i, (c, k) in enumerate((c, k) for c in COLOURS for k in KINDS)]  # fmt: skip
    lines = ["item_id,title,categories", *(f"{i},{t},{c}" for i, t, c in items)]
    (folder / "my_items.csv").write_text("\n".join(lines) + "\n")
    rows = ["user_id,item_id,timestamp"]
    for u in range(users):
        for j in range(per_user):  # each user drifts through one colour's kinds: a learnable sequence
            rows.append(f"u{u},sku{(u % len(COLOURS)) * len(KINDS) + (u + j) % len(KINDS)},{1000 + j}")
    (folder / "my_interactions.csv").write_text("\n".join(rows) + "\n")


def test_csv_files_become_time_ordered_sequences_with_item_text(tmp_path):
    write_csvs(tmp_path, users=3, per_user=4)
    sequences, metadata = read_csv_dataset(tmp_path / "my_interactions.csv", tmp_path / "my_items.csv")
    assert len(sequences) == 3 and all(len(s) == 4 for s in sequences.values())
    first = metadata[sequences[1][0]]
    assert first["raw_id"] == "sku0" and first["title"] == "Red running shoes"
    assert first["categories"] == ["Outdoor", "Shoes"]


@pytest.mark.parametrize(
    ("interactions", "items", "message"),
    [
        ("user,item\nu1,a\n", None, "no user_id, item_id column"),
        ("user_id,item_id,timestamp\nu1,a,soon\n", None, "timestamp 'soon' is not a number"),
        ("user_id,item_id\nu1,a\nu1,zzz\n", "item_id,title\na,A thing\n", "not in"),
        ("user_id,item_id\n", None, "no interactions"),
    ],
)
def test_bad_csv_files_get_one_clear_error(tmp_path, interactions, items, message):
    (tmp_path / "i.csv").write_text(interactions)
    if items:
        (tmp_path / "it.csv").write_text(items)
    with pytest.raises(DataError, match=message):
        read_csv_dataset(tmp_path / "i.csv", tmp_path / "it.csv" if items else None)


def readme_recipe() -> list[list[str]]:
    """The four commands under README's "Your own data" heading (continuations joined)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [shlex.split(c)[1:] for c in commands if c.startswith("rl4rec ")]


@pytest.mark.slow
def test_readme_own_data_recipe_runs_end_to_end(tmp_path, monkeypatch, capsys):
    from rl4rec.cli import main

    recipe = readme_recipe()
    assert [argv[0] for argv in recipe] == ["prepare", "stats", "train", "evaluate"]
    write_csvs(tmp_path)
    monkeypatch.chdir(tmp_path)
    small = {
        "train": ["--max_steps", "2", "--batch_size", "4", "--num_generations", "2", "--mini_batch_size", "2",
                  "--max_new_tokens", "8", "--max_length", "128", "--log_with", "none", "--save_steps", "10"],
        "evaluate": ["--num_users", "4", "--max_new_tokens", "8"],
    }  # fmt: skip
    for argv in recipe:
        assert main([*argv, *small.get(argv[0], [])]) == 0, argv
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[1])
    assert stats["users"] == 24 and stats["items"] == 30
    results = sorted(tmp_path.rglob("results.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    assert (
        result["num_users"] == 4
        and result["method"] == "policy"
        and 0 <= result["metrics"]["auc"]["mean"] <= 1
    )
