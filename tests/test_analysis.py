import math

import numpy as np
import pandas as pd
import pytest

from trainer.evaluation.analysis import (
    incorrect_predictions,
    label_noise_mask,
    predictions_frame,
    rule_features,
    slice_table,
    training_summary,
)
from trainer.evaluation.metrics import point_metrics, wilson_interval
from trainer.labels import LabelSet

NAMES = ["negative", "positive"]
LABELS = np.array([1, 0, 1, 1, 0, 0])
P_POS = np.array([0.9, 0.2, 0.4, 0.8, 0.7, 0.1])  # predictions 1 0 0 1 1 0: tp=2 tn=2 fp=1 fn=1
PROBS = np.stack([1 - P_POS, P_POS], axis=1)


@pytest.mark.parametrize(
    "text, label, cues",
    [
        ("the film is not good", 1, {"negation"}),
        ("it was n't funny", 0, {"negation", "very_short"}),
        ("a good cast , but a dull script that goes on and on", 0, {"contrast"}),
        ("a really fine film , although somewhat long", 1, {"contrast", "intensifier_hedge"}),
        ("oh great , another ` masterpiece ' !", 0, {"sarcasm_cue"}),
        ("great fun !", 1, {"very_short"}),
        ("an honest , tender , heartfelt film about grief and love that earns each of its tears", 1, set()),
    ],
)
def test_rule_cues_on_crafted_sentences(text, label, cues):
    texts = pd.Series([text] + ["filler text of middling length here ok"] * 9)
    features = rule_features(texts, np.array([label] + [1] * 9), LabelSet.of(["negative", "positive"])).iloc[0]
    assert {name for name, on in features.items() if on and name != "long"} == cues


def test_long_is_above_the_90th_length_percentile():
    texts = pd.Series([" ".join(["w"] * n) for n in range(1, 21)])
    assert rule_features(texts, np.ones(20, int), LabelSet.of(["negative", "positive"]))["long"].sum() == 2


def test_label_noise_flags_confidently_contradicted_labels():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.05, 0.95], [0.2, 0.8], [0.05, 0.95]])
    labels = np.array([0, 0, 1, 1, 0])
    # thresholds: class 0 (0.9 + 0.8 + 0.05) / 3 = 0.583, class 1 (0.95 + 0.8) / 2 = 0.875.
    # Row 3 is below its class threshold but p(negative) = 0.2 < 0.583: an unsure example, not noise.
    # Row 4 says negative while p(positive) = 0.95 >= 0.875: likely a wrong label.
    assert label_noise_mask(labels, probs).tolist() == [False, False, False, False, True]


def test_incorrect_predictions_rows_tags_and_order():
    frame = predictions_frame(["good", "bad", "not good at all", "fine", "awful", "meh"], LABELS, PROBS, NAMES)
    wrong = incorrect_predictions(frame)
    accuracy = frame["correct"].mean()
    assert len(wrong) == round((1 - accuracy) * len(frame)) == 2
    assert wrong["confidence"].is_monotonic_decreasing
    assert wrong.loc[0, "text"] == "awful" and "false_positive" in wrong.loc[0, "error_types"].split(";")
    assert "false_negative" in wrong.loc[1, "error_types"] and "negation" in wrong.loc[1, "error_types"]


def test_slice_table_counts_and_accuracy():
    frame = predictions_frame(["good", "bad", "not good at all", "fine", "awful", "meh"], LABELS, PROBS, NAMES)
    slices = slice_table(frame).set_index("slice")
    assert slices.loc["label positive", "n"] == 3 and slices.loc["label positive", "accuracy"] == pytest.approx(2 / 3)
    assert slices.loc["negation: yes", "n"] == 1 and slices.loc["negation: yes", "accuracy"] == 0
    assert slices.loc["length 1-10 words", "n"] == 6
    low, high = wilson_interval(2, 3)
    assert (slices.loc["label positive", "ci_low"], slices.loc["label positive", "ci_high"]) == (low, high)
    assert low < 2 / 3 < high


def test_per_example_loss_averages_to_the_log_loss():
    frame = predictions_frame(["good", "bad", "not good at all", "fine", "awful", "meh"], LABELS, PROBS, NAMES)
    assert frame["loss"].mean() == pytest.approx(point_metrics(LABELS, PROBS, NAMES)["log_loss"], rel=1e-12)


def test_training_summary_finds_the_grad_norm_spike():
    history = [{"step": s, "loss": 1 / s, "grad_norm": 1.0 + 0.01 * (s % 3), "learning_rate": 1e-4, "epoch": s / 10}
               for s in range(1, 21)]  # fmt: skip
    history[11]["grad_norm"] = 9.0
    history.append({"step": 20, "eval_accuracy": 0.8, "epoch": 2.0})
    summary = training_summary(history)
    assert [s["step"] for s in summary["grad_norm"]["spikes"]] == [12]
    assert summary["lowest_loss"]["step"] == 20 and summary["best_eval"]["step"] == 20
    assert math.isclose(summary["grad_norm"]["median"], 1.01)
