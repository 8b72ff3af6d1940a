"""What to label next: uncertainty by hand, one text per cluster, and the CSV an annotator gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.label_next import main as label_next
from trainer.selection import pick, uncertainty


def test_margin_and_entropy_by_hand():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    np.testing.assert_allclose(uncertainty(probs, "margin"), [1.0, 0.2, 0.8])
    np.testing.assert_allclose(
        uncertainty(probs, "entropy")[:2], [1.0, -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(2)]
    )


def test_multi_label_margin_is_the_label_nearest_its_threshold():
    probs = np.array([[0.30, 0.02], [0.90, 0.10], [0.45, 0.50]])
    # thresholds 0.3 and 0.5: row 0 sits on label 0's threshold (1.0); row 2 on label 1's
    scores = uncertainty(probs, "margin", multi_label=True, thresholds=np.array([0.3, 0.5]))
    assert scores[0] == pytest.approx(1.0) and scores[2] == pytest.approx(1.0)
    # row 1: label 0 at 0.9 is (0.9 - 0.3) / 0.7 of the way to 1; label 1 at 0.1 is 0.4 / 0.5 of the way to 0
    assert scores[1] == pytest.approx(1 - min(0.6 / 0.7, 0.4 / 0.5))


def test_near_copies_are_not_chosen_twice():
    """Two tight groups of texts and one far away: three picks take the most uncertain of each group, not the three
    most uncertain texts (all near-copies in the first group)."""
    embeddings = np.array([[0, 0], [0, 0.01], [0, 0.02], [10, 10], [10, 10.01], [50, 50]], dtype=float)
    scores = np.array([0.99, 0.98, 0.97, 0.60, 0.59, 0.01])
    rows, clusters = pick(scores, embeddings, 3)
    assert rows.tolist() == [0, 3, 5] and len(set(clusters.tolist())) == 3
    assert pick(scores, embeddings, 10)[0].tolist() == [0, 1, 2, 3, 4, 5]  # asking for all: every text, in order


def test_the_sheet_lists_the_least_sure_texts_with_why(tiny_run, tmp_path, capsys):
    texts = [f"{a} film , really {b}" for a in ("good", "bad", "dull", "fun", "plot") for b in ("great", "awful")]
    (tmp_path / "pool.txt").write_text("\n".join(texts + texts[:3]) + "\n")  # repeats are scored once
    out = tmp_path / "next.csv"
    assert label_next(["--model", str(tiny_run), "--texts", str(tmp_path / "pool.txt"), "--n", "4",
                       "--output", str(out)]) == 0  # fmt: skip
    sheet = pd.read_csv(out, keep_default_na=False)
    assert len(sheet) == 4 and sheet["text"].is_unique and set(sheet["text"]) <= set(texts)
    assert list(sheet.columns) == ["text", "predicted", "uncertainty", "cluster", "why", "p_negative", "p_positive",
                                   "label"]  # fmt: skip
    assert (sheet["label"] == "").all() and sheet["uncertainty"].is_monotonic_decreasing
    np.testing.assert_allclose(sheet["uncertainty"], 1 - (sheet["p_negative"] - sheet["p_positive"]).abs(), atol=2e-4)
    assert sheet["why"].str.contains("the most uncertain text of its cluster").all()
    assert "4 of 10 texts chosen" in capsys.readouterr().out


def test_relabel_writes_the_runs_likely_mislabelled_rows(tiny_run, tmp_path, capsys):
    out = tmp_path / "relabel.csv"
    assert label_next(["--relabel", str(tiny_run), "--output", str(out)]) == 0
    flagged = pd.read_parquet(tiny_run / "predictions.parquet").query("likely_label_noise")
    sheet = pd.read_csv(out, keep_default_na=False)
    assert len(sheet) == len(flagged) and set(sheet["text"]) == set(flagged["text"])
    assert f"{len(flagged)} likely mislabelled rows" in capsys.readouterr().out


@pytest.mark.slow  # trains for two steps
def test_a_relabelling_sheet_goes_out_and_its_corrections_come_back(tiny_model_dir, tmp_path, capsys):
    """The likely-label-noise rows of an analysis as a sheet; corrected, `train --corrections` applies it and the run
    records how many labels changed."""
    from tests.conftest import make_tiny_data, tiny_args
    from trainer.config import DataConfig, load_config
    from trainer.data import load_splits
    from trainer.selection import relabel_sheet

    predictions = pd.DataFrame({"text": ["a", "b", "c"], "label": ["positive", "negative", "positive"],
                                "predicted": ["negative", "negative", "negative"], "confidence": [0.97, 0.9, 0.99],
                                "p_negative": [0.97, 0.9, 0.99], "p_positive": [0.03, 0.1, 0.01],
                                "likely_label_noise": [True, False, True]})  # fmt: skip
    sheet = relabel_sheet(predictions)
    assert sheet["text"].tolist() == ["c", "a"] and sheet["label"].tolist() == ["positive", "positive"]
    assert sheet["why"][0] == "likely label noise: labelled 'positive', the model says 'negative' with confidence 0.99"
    train, dev = make_tiny_data(tmp_path)
    rows = pd.read_csv(train, sep="\t", quoting=3)
    first = rows.drop_duplicates("sentence").iloc[:3]  # three training texts (each repeated 4 times in the file)
    flipped = ["negative" if label else "positive" for label in first["label"]]
    corrections = pd.DataFrame({"text": first["sentence"], "label": [flipped[0], flipped[1], ""],  # "": left as is
                                "given": first["label"]})  # fmt: skip
    corrections.to_csv(tmp_path / "fixed.csv", index=False)
    splits = load_splits(
        DataConfig(train_file=str(train), validation_file=str(dev), corrections=str(tmp_path / "fixed.csv"))
    )
    new = splits.train.set_index("text")["label"]
    assert [int(new[t].iloc[0]) for t in first["sentence"][:2]] == [int(f == "positive") for f in flipped[:2]]
    assert splits.sources["corrections"].endswith(": 8 labels changed (8 training rows matched)")
    from trainer.training.loop import train as train_model

    _, metrics = train_model(load_config(tiny_args(
        tiny_model_dir, (train, dev), tmp_path / "run", "--max_steps", "2", "--run_analysis", "false",
        "--corrections", str(tmp_path / "fixed.csv"))))  # fmt: skip
    assert "8 labels changed" in metrics["data_sources"]["corrections"]
