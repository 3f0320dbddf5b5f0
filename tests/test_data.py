"""Data layer: real datasets, format readers, splits, item text, error paths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rl4rec.cli import main as cli_main
from rl4rec.data import ItemTextConfig, leave_one_out, load_dataset, render_item_text, training_interactions
from rl4rec.data.amazon import read_amazon
from rl4rec.data.p5 import read_item_metadata, read_sequences, write_p5
from rl4rec.data.recbole import read_recbole
from rl4rec.errors import ConfigError, DataError


def write_dataset(root: Path, name: str, lines: str, metadata: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "sequential_data.txt").write_text(lines)
    if metadata is None:
        ids = sorted({int(t) for line in lines.split("\n") for t in line.split()[1:] if t.isdigit()} or {1})
        metadata = {str(i): {"title": f"Item {i}"} for i in range(1, max(ids) + 1)}
    (folder / "item_metadata.json").write_text(json.dumps(metadata))
    return root


# -- real datasets ---------------------------------------------------------------------------------
def test_ml100k_prepared_counts(ml100k):
    stats = ml100k.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["items_without_title"] == 0
    assert set(ml100k.items) == set(range(1, 1683))
    assert list(ml100k.sequences) == list(range(1, 944))


def test_ml100k_sequences_follow_time_order(ml100k_dir):
    from rl4rec.data.recbole import recbole_example_dir

    inter = recbole_example_dir("ml-100k") / "ml-100k.inter"
    rows = [line.rstrip("\n").split("\t") for line in inter.read_text().splitlines()[1:]]
    first_user = rows[0][0]
    times = sorted(float(r[3]) for r in rows if r[0] == first_user)
    ds = load_dataset("ml-100k", ml100k_dir)
    assert len(ds.sequences[1]) == len(times)  # raw user in the first row becomes user 1
    assert ds.sequences[1][0] == 1  # items are numbered by first appearance in time order
    assert ds.item_text(1).endswith("Genres: " + ", ".join(ds.items[1]["genres"]))


def test_beauty_stats_exact(beauty):
    stats = beauty.stats()
    assert stats["users"] == 22363
    assert stats["items"] == 12101
    assert stats["interactions"] == 198502
    assert stats["items_without_title"] == 7
    assert (stats["min_sequence_length"], stats["max_sequence_length"]) == (5, 204)


def test_stats_cli_prints_one_json_object(beauty_data_dir, capsys):
    assert cli_main(["stats", "--dataset", "beauty", "--data_dir", str(beauty_data_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["users"], out["items"], out["interactions"], out["items_without_title"]) == (
        22363,
        12101,
        198502,
        7,
    )


def test_prepare_cli_writes_p5_layout(tmp_path, capsys):
    assert cli_main(["prepare", "--dataset", "ml-100k", "--data_dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["users"], out["items"], out["interactions"]) == (943, 1682, 100000)
    assert {p.name for p in (tmp_path / "ml-100k").iterdir()} == {
        "sequential_data.txt",
        "item_metadata.json",
        "dataset_info.json",
    }


def test_untitled_beauty_item_falls_back_to_categories(beauty):
    assert beauty.items[495]["title"] is None
    text = beauty.item_text(495)
    assert text.startswith("Categories: ") and "Item 495" not in text
    assert beauty.item_text(1).startswith("OPI Nail Lacquer") and "Brand: OPI" in beauty.item_text(1)


# -- readers on hand-made files ----------------------------------------------------------------------
def test_recbole_orders_by_time_stably_and_remaps(tmp_path):
    inter = tmp_path / "toy.inter"
    inter.write_text(
        "user_id:token\titem_id:token\ttimestamp:float\nu9\tB\t20\nu9\tA\t10\nu5\tC\t5\nu9\tC\t20\nu5\tA\t5\n"
    )
    item = tmp_path / "toy.item"
    item.write_text(
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\nA\tAlpha\tComedy Drama\nB\tBeta\tHorror\n"
    )
    sequences, metadata = read_recbole(inter, item)
    # u9 first seen first -> user 1; its items by time: A(10), B(20), C(20, later row) -> 1, 2, 3
    assert sequences == {1: [1, 2, 3], 2: [3, 1]}
    assert metadata[1]["title"] == "Alpha" and metadata[1]["genres"] == ["Comedy", "Drama"]
    assert metadata[3] == {"raw_id": "C"}  # no metadata row: rendered from its fallback


def test_recbole_malformed_row_names_line(tmp_path):
    inter = tmp_path / "bad.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\n")
    with pytest.raises(DataError, match=r"bad\.inter:3"):
        read_recbole(inter, None)


def _gz_lines(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def test_amazon_raw_dumps_to_p5(tmp_path):
    reviews = tmp_path / "reviews_Toy_5.json.gz"
    meta = tmp_path / "meta_Toy.json.gz"
    _gz_lines(
        reviews,
        [
            json.dumps({"reviewerID": "R2", "asin": "X2", "unixReviewTime": 300, "overall": 5.0}),
            json.dumps({"reviewerID": "R1", "asin": "X1", "unixReviewTime": 200, "overall": 4.0}),
            json.dumps({"reviewerID": "R2", "asin": "X1", "unixReviewTime": 100, "overall": 3.0}),
            json.dumps({"reviewerID": "R1", "asin": "X3", "unixReviewTime": 100, "overall": 3.0}),
        ],
    )
    _gz_lines(
        meta,
        [
            "{'asin': 'X1', 'title': 'Tom &amp; Jerry&#39;s Lotion', 'brand': 'Acme', "
            "'categories': [['Beauty', 'Skin Care'], ['Beauty', 'Bath']]}",
            "{'asin': 'X2', 'categories': [['Beauty', 'Hair']], 'salesRank': {'Beauty': 5}}",
            "{'asin': 'UNUSED', 'title': 'never reviewed'}",
        ],
    )
    sequences, metadata = read_amazon(reviews, meta)
    # R2 first in file -> user 1: X1(100), X2(300) -> items 1, 2; R1 -> X3(100), X1(200)
    assert sequences == {1: [1, 2], 2: [3, 1]}
    assert metadata[1]["title"] == "Tom & Jerry's Lotion"
    assert metadata[1]["categories"] == ["Beauty", "Skin Care"]
    assert metadata[2]["title"] is None and metadata[2]["categories"] == ["Beauty", "Hair"]
    assert metadata[3]["asin"] == "X3" and len(metadata) == 3


def test_amazon_prepare_cli(tmp_path, capsys):
    reviews = tmp_path / "r.json.gz"
    _gz_lines(reviews, [json.dumps({"reviewerID": "a", "asin": "p", "unixReviewTime": 1})] * 1)
    assert (
        cli_main(
            [
                "prepare",
                "--dataset",
                "toy",
                "--data_dir",
                str(tmp_path / "d"),
                "--amazon_reviews",
                str(reviews),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["interactions"] == 1


def test_amazon_malformed_line(tmp_path):
    reviews = tmp_path / "r.json.gz"
    _gz_lines(reviews, [json.dumps({"reviewerID": "a", "asin": "p", "unixReviewTime": 1}), "not json {"])
    with pytest.raises(DataError, match=r"r\.json\.gz:2"):
        read_amazon(reviews, None)


# -- splits ------------------------------------------------------------------------------------------
SEQS = {1: [10, 11, 12, 13, 14], 2: [20, 21, 22], 3: [30, 31], 4: [40]}


def test_leave_one_out_targets_and_histories():
    test = leave_one_out(SEQS, "test")
    assert [(e.user_id, e.history, e.target) for e in test.examples] == [
        (1, (10, 11, 12, 13), 14),
        (2, (20, 21), 22),
        (3, (30,), 31),
    ]
    assert test.skipped_users == 1
    valid = leave_one_out(SEQS, "valid")
    assert [(e.user_id, e.history, e.target) for e in valid.examples] == [
        (1, (10, 11, 12), 13),
        (2, (20,), 21),
    ]
    assert valid.skipped_users == 2
    train = leave_one_out(SEQS, "train")
    assert [(e.user_id, e.history, e.target) for e in train.examples] == [(1, (10, 11), 12)]
    assert train.skipped_users == 3


def test_train_targets_all_never_reaches_valid_or_test():
    train = leave_one_out(SEQS, "train", train_targets="all")
    assert [(e.history, e.target) for e in train.examples] == [((10,), 11), ((10, 11), 12)]
    assert training_interactions(SEQS) == {10: 1, 11: 1, 12: 1, 20: 1}


def test_next_items_end_at_the_training_target_and_shorten_the_history():
    seqs = {1: [10, 11, 12, 13, 14, 15, 16], 2: [20, 21, 22, 23], 3: [30, 31, 32]}
    train = leave_one_out(seqs, "train", next_items=3)
    # user 1: training target 14 (third from last); the history stops two items earlier.
    assert [(e.user_id, e.history, e.target, e.next_items) for e in train.examples] == [
        (1, (10, 11), 12, (12, 13, 14))
    ]
    assert train.skipped_users == 2
    every = leave_one_out(seqs, "train", train_targets="all", next_items=2)
    assert [(e.history, e.next_items) for e in every.examples] == [
        ((10,), (11, 12)),
        ((10, 11), (12, 13)),
        ((10, 11, 12), (13, 14)),
    ]  # fmt: skip (user 2's only training target, 21, has no item before it to follow)
    # no validation or test item (the last two of each user) is ever scored
    assert all(item not in seqs[e.user_id][-2:] for e in every.examples for item in e.next_items)
    assert leave_one_out(seqs, "train").examples[0].next_items == ()
    with pytest.raises(ConfigError, match="train split only"):
        leave_one_out(seqs, "valid", next_items=2)
    with pytest.raises(ConfigError, match="between 1 and 64"):
        leave_one_out(seqs, "train", next_items=0)


def test_bad_split_names():
    with pytest.raises(ConfigError, match="unknown split"):
        leave_one_out(SEQS, "dev")
    with pytest.raises(ConfigError, match="train_targets"):
        leave_one_out(SEQS, "train", train_targets="some")


# -- item text ---------------------------------------------------------------------------------------
def test_item_text_fields_and_fallback():
    meta = {
        "title": "  Rose  Oil ",
        "brand": "Unknown",
        "categories": ["Beauty", "Skin", "Oils"],
        "asin": "X",
    }
    assert render_item_text(meta) == "Rose Oil. Categories: Skin > Oils"
    assert render_item_text(meta, ItemTextConfig(fields=("title",))) == "Rose Oil"
    assert render_item_text({"title": None, "brand": "Acme", "categories": ["Beauty", "Hair"]}) == (
        "Brand: Acme. Categories: Hair"
    )
    assert render_item_text({}, item_id=7) == "Item 7"


# -- error paths -------------------------------------------------------------------------------------
def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset("nothing", tmp_path)


def test_missing_metadata_file(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "sequential_data.txt").write_text("1 1 2\n")
    with pytest.raises(DataError, match=r"item_metadata\.json: item metadata file not found"):
        load_dataset("x", tmp_path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("1 1 2\r\n\r\n2 3\r\n3\n", r"sequential_data\.txt:4: expected 'user_id item_id"),
        ("1 1 2\n2 3 abc\n", r"sequential_data\.txt:2: non-integer id 'abc'"),
        ("1 1 2\n2 0 1\n", r"sequential_data\.txt:2: ids must be >= 1"),
        ("1 1 2\n1 3\n", r"sequential_data\.txt:2: user 1 appears on more than one line"),
        ("\n\n", r"no interactions found"),
    ],
)
def test_malformed_sequences(tmp_path, content, pattern):
    path = tmp_path / "sequential_data.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        read_sequences(path)


def test_crlf_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "sequential_data.txt"
    path.write_bytes(b"1 1 2 3\r\n\r\n2 2 3\r\n")
    assert read_sequences(path) == {1: [1, 2, 3], 2: [2, 3]}


def test_item_absent_from_metadata_names_line(tmp_path):
    write_dataset(tmp_path, "d", "1 1 2\n2 2 9\n", {"1": {"title": "a"}, "2": {"title": "b"}})
    with pytest.raises(
        DataError, match=r"sequential_data\.txt:2: item 9 of user 2 is not in item_metadata\.json"
    ):
        load_dataset("d", tmp_path)


def test_metadata_gaps_and_bad_json(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('{"1": {"title": "a"}, "3": {"title": "c"}}')
    with pytest.raises(DataError, match="without gaps"):
        read_item_metadata(bad)
    bad.write_text('{"1": {"title": "a"},')
    with pytest.raises(DataError, match=r"m\.json:1: invalid JSON"):
        read_item_metadata(bad)


def test_cli_error_is_one_line_naming_file_and_line(tmp_path, capsys):
    write_dataset(tmp_path, "d", "1 1 2\n2 2 x3\n", {"1": {"title": "a"}, "2": {"title": "b"}})
    assert cli_main(["stats", "--dataset", "d", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sequential_data.txt:2" in err and err.startswith("Error:")


def test_failed_write_leaves_no_partial_file(tmp_path):
    out = tmp_path / "out"
    write_p5(out, {1: [1]}, {1: {"title": "ok"}})
    before = (out / "item_metadata.json").read_text()
    with pytest.raises(TypeError):
        write_p5(out, {1: [1]}, {1: {"title": object()}})  # not JSON-serialisable, fails mid-write
    assert (out / "item_metadata.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
