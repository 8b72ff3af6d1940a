"""`trainer.compare`: the paired difference of two models on the same texts, McNemar's test by hand, the discordant
texts, the refusals, and the command end to end on the tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from tests.conftest import make_tiny_data, writable_copy
from trainer import UserError
from trainer.compare import main
from trainer.evaluation.analysis import multilabel_frame, predictions_frame
from trainer.evaluation.compare import compare, mcnemar, summary_line

NAMES = ["negative", "positive"]
TEXTS = [f"text number {i} , a {'good' if i % 2 else 'bad'} film" for i in range(10)]
LABELS = np.array([i % 2 for i in range(10)])


def frame(wrong: set[int], texts=TEXTS, labels=LABELS, names=NAMES) -> pd.DataFrame:
    """A predictions frame that is wrong exactly on the rows `wrong`, 0.8 sure of every answer."""
    preds = np.where([i in wrong for i in range(len(labels))], 1 - labels, labels)
    probs = np.full((len(labels), 2), 0.2)
    probs[np.arange(len(labels)), preds] = 0.8
    return predictions_frame(texts, labels, probs, names)


def test_mcnemar_p_by_hand():
    # 6 discordant texts split 5 / 1: two-sided exact binomial p = 2 * (C(6,0) + C(6,1)) / 2**6 = 14 / 64
    a = np.array([True] * 1 + [False] * 5 + [True] * 4)
    b = np.array([False] * 1 + [True] * 5 + [True] * 4)
    found = mcnemar(a, b)
    assert found == {"fixed": 5, "broken": 1, "both_right": 4, "both_wrong": 0, "p_value": pytest.approx(14 / 64)}
    assert mcnemar(a[1:6], b[1:6])["p_value"] == pytest.approx(2 / 32)  # 5 / 0: 2 * C(5,0) / 2**5
    assert mcnemar(a[6:], b[6:])["p_value"] == 1.0  # no discordant text: nothing to test


def test_difference_interval_and_discordant_rows():
    a, b = frame({1, 2, 3}), frame({3, 4})
    found = compare(a, b, multi=False, n_boot=500, seed=0)
    acc = found.summary["measures"]["accuracy"]
    assert (acc["a"], acc["b"], acc["difference"]) == (pytest.approx(0.7), pytest.approx(0.8), pytest.approx(0.1))
    assert acc["ci_low"] <= acc["difference"] <= acc["ci_high"]
    assert found.fixed["row"].tolist() == [1, 2] and found.broken["row"].tolist() == [4]
    assert found.fixed["predicted_a"].tolist() == [NAMES[1 - LABELS[1]], NAMES[1 - LABELS[2]]]
    assert found.fixed["predicted_b"].tolist() == [NAMES[LABELS[1]], NAMES[LABELS[2]]]
    assert found.broken[["confidence_a", "confidence_b"]].to_numpy().tolist() == [[0.8, 0.8]]
    test = found.summary["mcnemar"]
    assert (test["fixed"], test["broken"], test["p_value"]) == (2, 1, pytest.approx(1.0))  # 2 * P(X <= 1 | 3) = 1
    assert found.summary["verdict"] == "not a proven difference"
    line = summary_line(found.summary)
    assert line.startswith("B - A on 10 texts: +10.00 points (95% CI ") and "(2 fixed, 1 broken)" in line
    per_class = {row["label"]: row for row in found.summary["per_class"]}
    assert per_class["negative"]["support"] == 5 and per_class["positive"]["support"] == 5
    slices = {row["slice"]: row for row in found.summary["slices"]}
    assert slices["label negative"]["n"] == 5 and "likely_label_noise: yes" not in slices


def test_the_bootstrap_is_paired():
    # B is A with one text fixed: resampling the same texts for both, B can never come out behind
    found = compare(frame({1, 2, 3}), frame({1, 2}), multi=False, n_boot=300, seed=1)
    assert found.draws.min() >= 0 and found.draws.max() > 0
    assert found.summary["measures"]["accuracy"]["ci_low"] == 0


def test_b_in_another_order_is_matched_by_text():
    a, b = frame({1, 2, 3}), frame({3, 4})
    shuffled = b.sample(frac=1, random_state=0).reset_index(drop=True)
    assert compare(a, shuffled, False, 200).summary == compare(a, b, False, 200).summary


def test_different_texts_or_label_sets_are_refused():
    with pytest.raises(UserError, match=r"on different texts \(A: 10, B: 10, 9 shared\).*--data"):
        compare(frame(set()), frame(set(), texts=[*TEXTS[:9], "another text"]), False, 10)
    other = frame(set(), names=["bad", "good"])
    with pytest.raises(UserError, match="different label sets .A: negative, positive; B: bad, good."):
        compare(frame(set()), other, False, 10)
    relabelled = frame(set(), labels=1 - LABELS)
    with pytest.raises(UserError, match="give 10 texts different labels"):
        compare(frame(set()), relabelled, False, 10)


def test_multi_label_f1_differences_match_scikit_learn():
    names = ["joy", "anger", "fear"]
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 1]])
    chosen_a = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    chosen_b = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]])
    texts = [f"comment {i}" for i in range(len(y))]
    a, b = (multilabel_frame(texts, y, np.where(c, 0.9, 0.1), c.astype(bool), np.full(len(y), 0.9), names)
            for c in (chosen_a, chosen_b))  # fmt: skip
    found = compare(a, b, multi=True, n_boot=200).summary
    for avg in ("micro", "macro"):
        m = found["measures"][f"f1_{avg}"]
        want_a, want_b = f1_score(y, chosen_a, average=avg), f1_score(y, chosen_b, average=avg)
        assert (m["a"], m["b"]) == (pytest.approx(want_a), pytest.approx(want_b))
        assert m["ci_low"] <= m["difference"] <= m["ci_high"]
    per_label = [row["difference"] for row in found["per_class"]]
    want = f1_score(y, chosen_b, average=None) - f1_score(y, chosen_a, average=None)
    assert per_label == pytest.approx(want.tolist())
    assert found["headline"] == "f1_micro" and found["mcnemar"]["fixed"] == 2 and found["mcnemar"]["broken"] == 0
    assert "micro F1" in summary_line(found) and "on exact match" in summary_line(found)


def test_compare_of_a_run_with_itself_finds_no_difference(tiny_run, tmp_path, capsys):
    assert main([str(tiny_run), str(tiny_run), "--output_dir", str(tmp_path / "c"), "--n_bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "+0.00 points (95% CI +0.00 to +0.00), McNemar p = 1 (0 fixed, 0 broken): not a proven difference" in out
    found = json.loads((tmp_path / "c/comparison.json").read_text())
    assert found["n"] == 16 and found["a"]["texts"].startswith("its own validation predictions")
    assert pd.read_csv(tmp_path / "c/fixed.csv").empty and (tmp_path / "c/comparison.png").stat().st_size > 10_000


def test_fixed_csv_holds_exactly_the_texts_b_fixed(tiny_run, tmp_path):
    run_b = writable_copy(tiny_run, tmp_path / "b", "checkpoints", "onnx")
    predictions = pd.read_parquet(run_b / "predictions.parquet")
    wrong = np.flatnonzero(~predictions["correct"].to_numpy())
    right = np.flatnonzero(predictions["correct"].to_numpy())
    flip = {"negative": "positive", "positive": "negative"}
    if len(wrong):  # B gets A's first mistake right, and its first right answer wrong
        predictions.loc[wrong[0], ["predicted", "correct"]] = [predictions.loc[wrong[0], "label"], True]
    predictions.loc[right[0], ["predicted", "correct"]] = [flip[predictions.loc[right[0], "label"]], False]
    predictions.to_parquet(run_b / "predictions.parquet")
    assert main([str(tiny_run), str(run_b), "--output_dir", str(tmp_path / "c"), "--n_bootstrap", "50"]) == 0
    assert pd.read_csv(tmp_path / "c/fixed.csv")["row"].tolist() == ([int(wrong[0])] if len(wrong) else [])
    broken = pd.read_csv(tmp_path / "c/broken.csv")
    assert broken["row"].tolist() == [int(right[0])] and broken["predicted_a"].tolist() == [broken["label"][0]]


def test_scoring_on_data_agrees_with_the_runs_own_predictions(tiny_run, tmp_path):
    # the tiny run's validation file, scored again by both models: the same figures as its predictions.parquet
    _, dev = make_tiny_data(tmp_path)
    args = ["--n_bootstrap", "50"]
    assert main([str(tiny_run), str(tiny_run), "--output_dir", str(tmp_path / "own"), *args]) == 0
    assert main([str(tiny_run), str(tiny_run), "--data", str(dev), "--output_dir", str(tmp_path / "d"), *args]) == 0
    own, scored = (json.loads((tmp_path / f"{name}/comparison.json").read_text()) for name in ("own", "d"))
    assert scored["measures"]["accuracy"]["a"] == pytest.approx(own["measures"]["accuracy"]["a"])
    assert scored["calibration"]["a"]["ece"] == pytest.approx(own["calibration"]["a"]["ece"], abs=1e-6)
    assert scored["a"]["texts"] == str(dev)


def test_runs_of_other_label_sets_or_kinds_are_refused(tiny_run, tiny_five_run, tiny_multi_run, tmp_path, capsys):
    assert main([str(tiny_run), str(tiny_five_run), "--output_dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: the runs have different label sets (A: negative, positive; B: ") and err.count("\n") == 1
    )
    assert main([str(tiny_run), str(tiny_multi_run), "--output_dir", str(tmp_path / "c")]) == 2
    assert "A is single-label and B is multi-label" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_verdict_reads_the_interval_and_the_test_together():
    from trainer.evaluation.compare import verdict

    up, flat = (
        {"difference": 0.02, "ci_low": 0.01, "ci_high": 0.03},
        {"difference": 0.0, "ci_low": -0.01, "ci_high": 0.01},
    )
    assert verdict(up, {"p_value": 0.01, "fixed": 30, "broken": 10}) == "B is better"
    assert verdict(flat, {"p_value": 0.5, "fixed": 30, "broken": 28}) == "not a proven difference"
    assert verdict(up, {"p_value": 0.2, "fixed": 30, "broken": 20}).startswith("a borderline difference")
    # micro F1 up while exact match goes down (as tuned thresholds can do): said, not hidden
    said = verdict(up, {"p_value": 1e-9, "fixed": 308, "broken": 482}, "f1_micro")
    assert said == "the measures disagree: micro F1 favours B, McNemar's test (exact match) favours A"
