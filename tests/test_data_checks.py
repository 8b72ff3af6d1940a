"""The data checks: counts on small hand-made splits, the overlap with the data mirror, and their place in training."""

import json

import numpy as np
import pandas as pd
import pytest

from trainer import UserError
from trainer.data import Splits
from trainer.data_checks import (
    check_splits,
    held_out_in_train,
    mirror_references,
    named_references,
    normalise,
    summary,
    write_report,
)


def splits(train, validation, test=None, multi=False) -> Splits:
    frame = lambda rows: None if rows is None else pd.DataFrame(rows, columns=["text", "label"])  # noqa: E731
    return Splits(frame(train), frame(validation), frame(test), "hand", {}, ["negative", "positive"], multi)


TRAIN = [
    ("A fine film.", 1),
    ("a fine film", 1),
    ("A fine film.", 1),  # 2 repeats: 1 exact, 1 after normalising
    ("Dull!", 0),
    ("dull", 1),  # one text, two labels (a third repeat)
    ("?!", 0),
    ("https://example.com/x", 0),
    ("<b>bold</b> move", 1),  # near-empty, URL only, markup
    ("seen in dev", 0),
]
DEV = [("Seen in dev.", 0), ("new words", 1), ("other", 0)]
TEST = [("other", 0), ("fresh", 1)]


def test_counts_within_and_across_splits_are_the_hand_computed_ones():
    lengths = {"train": np.array([3] * 8 + [9]), "validation": np.array([2, 2, 12]), "test": np.array([1, 1])}
    report = check_splits(splits(TRAIN, DEV, TEST), {"other:train": frozenset({"newwords", "fresh"})}, lengths, 8)
    train = report["splits"]["train"]
    assert (train["rows"], train["duplicates"], train["exact_duplicates"]) == (9, 3, 1)
    assert (train["conflicting_texts"], train["near_empty"], train["url_only"], train["markup"]) == (1, 1, 1, 1)
    assert train["label_counts"] == {"negative": 4, "positive": 5}
    assert train["tokens"] == {"cut": 1, "median": 3, "p95": 6, "max": 9}
    assert report["splits"]["validation"]["tokens"]["cut"] == 1
    assert report["cross_split"] == {"validation in train": 1, "test in train": 0, "test in validation": 1}
    assert report["serious"] == ["1 validation texts are also in train"]
    assert report["splits"]["validation"]["in_other_datasets"] == {"other:train": 1}
    assert report["splits"]["test"]["in_other_datasets"] == {"other:train": 1}
    assert "train" not in {k for k, v in report["splits"].items() if v["in_other_datasets"]}
    assert "warning: 1 validation texts are also in train" in summary(report)


def test_multi_label_rows_conflict_by_their_set_of_labels():
    rows = [("joy and fear", [0, 1]), ("Joy and fear!", [1, 0]), ("joy", [0]), ("JOY", [1])]
    report = check_splits(splits(rows, [("x", [1])], multi=True), {}, {}, 8)
    assert report["splits"]["train"]["conflicting_texts"] == 1  # [0, 1] and [1, 0] are the same labels
    assert report["splits"]["train"]["label_counts"] == {"negative": 3, "positive": 3}


def test_normalising_keeps_letters_and_digits_of_any_script():
    assert normalise(pd.Series(["Café, 2 stars!", "  --  "])).tolist() == ["café2stars", ""]
    # rotten_tomatoes holds UTF-8 read as Latin-1: repaired, its texts match SST's
    assert normalise(pd.Series(["the clumsy clichÃ© â\x80\x93 again"])).tolist() == ["theclumsyclichéagain"]


def test_drop_overlap_finds_the_training_rows_with_held_out_texts():
    assert held_out_in_train(splits(TRAIN, DEV, TEST)).tolist() == [False] * 8 + [True]


def test_check_against_a_file_and_a_missing_file(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"text": ["New words!", "x"], "label": [1, 0]}).to_csv(path, index=False)
    assert named_references([str(path)], "sentence") == {str(path): frozenset({"newwords", "x"})}
    with pytest.raises(UserError, match="--check_against .*nope.tsv: file not found"):
        named_references([str(tmp_path / "nope.tsv")], "sentence")


def test_report_and_picture_are_written(tmp_path):
    lengths = {"train": np.array([3] * 8 + [9]), "validation": np.array([2, 2, 12])}
    report = check_splits(splits(TRAIN, DEV), {}, lengths, 8)
    json_path, png = write_report(report, lengths, tmp_path)
    assert json.loads(json_path.read_text())["cross_split"] == {"validation in train": 1}
    assert png == tmp_path / "plots" / "data_checks.png" and png.stat().st_size > 10_000


@pytest.mark.data_mirror("sst2", "rotten_tomatoes")
def test_the_mirror_finds_sst2_dev_in_rotten_tomatoes_train():
    from trainer.config import DataConfig
    from trainer.data import load_splits

    data = load_splits(DataConfig(dataset_name="stanfordnlp/sst2", text_column="sentence"))
    references = mirror_references("stanfordnlp/sst2", "sentence")
    assert "rotten_tomatoes:train" in references and not any(name.startswith("sst2") for name in references)
    report = check_splits(data, references, {}, 128)
    assert report["splits"]["validation"]["in_other_datasets"]["rotten_tomatoes:train"] == 731  # of 872
    assert report["cross_split"] == {"validation in train": 2}
    assert report["splits"]["train"]["conflicting_texts"] == 157


def test_training_writes_the_checks_and_drop_overlap_removes_rows(tiny_model_dir, tmp_path):
    from tests.conftest import make_tiny_data, tiny_args
    from trainer.config import load_config
    from trainer.training.loop import train

    data = make_tiny_data(tmp_path)
    lines = data[1].read_text().splitlines()
    data[1].write_text("\n".join(lines[:9]) + "\n")  # 8 of the 16 training texts, each 4 times in train
    args = tiny_args(
        tiny_model_dir,
        data,
        tmp_path / "run",
        "--drop_overlap",
        "--check_mirror",
        "false",
        "--run_analysis",
        "false",
        "--max_steps",
        "1",
        "--save_steps",
        "1",
        "--eval_steps",
        "1",
    )
    run, metrics = train(load_config(args))
    report = json.loads((run / "data_checks.json").read_text())
    assert metrics["dropped_overlap"] == report["dropped_overlap"] == 32


def test_the_card_shows_the_checks_and_an_older_run_renders_as_before(tiny_run, tmp_path):
    from model_card.render import render_card
    from tests.conftest import writable_copy

    run = writable_copy(tiny_run, tmp_path / "run", "onnx", "checkpoints")
    report = json.loads((run / "data_checks.json").read_text())
    text = render_card(run)
    section = text.split("### Data checks", 1)[1].split("\n## ", 1)[0]
    rows = report["splits"]["train"]["rows"]
    assert f"| train | {rows} | {report['splits']['train']['duplicates']} (" in section
    assert "**Warning:** 16 validation texts are also in train" in section  # the tiny data's dev is from train
    assert "![Label balance and token length per split](plots/data_checks.png)" in section
    (run / "data_checks.json").unlink()
    (run / "plots" / "data_checks.png").unlink()
    older = render_card(run)
    assert "Data checks" not in older and "data_checks" not in older
    start, end = text.index("\n\n### Data checks"), text.index("\n\n## Training procedure")
    assert older == text[:start] + text[end:]  # the same card, less the section
