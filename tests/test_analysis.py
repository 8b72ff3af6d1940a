import math

import numpy as np
import pandas as pd
import pytest

from trainer.evaluation.analysis import (
    RULES,
    confused_pairs,
    error_tags,
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


FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]


def test_five_ordered_labels_tag_near_misses_flips_and_far_misses():
    labels = np.array([0, 0, 0, 2, 4, 3])
    preds = np.array([1, 3, 2, 2, 0, 4])  # off by one; a flip (very negative -> positive); off by two, no flip;
    frame = predictions_frame([f"text {i}" for i in range(6)], labels, np.eye(5)[preds] * 0.9 + 0.02, FIVE)
    assert frame["off_by_one"].tolist() == [True, False, False, False, False, True]
    assert frame["polarity_flip"].tolist() == [False, True, False, False, True, False]
    assert frame["off_by_more"].tolist() == [False, False, True, False, False, False]
    assert frame["class_distance"].tolist() == [1, 3, 2, 0, 4, 1]
    assert "false_positive" not in frame  # "the positive class" means nothing with five labels
    wrong = incorrect_predictions(frame)
    assert set(wrong["error_types"].str.split(";").explode()) >= {"off_by_one", "polarity_flip", "off_by_more"}
    assert wrong.columns.tolist()[-1] == "class_distance"


def test_polarity_without_order_and_labels_without_either():
    names = ["positive", "negative", "neutral", "mixed"]  # neutral and mixed share a place: no scale
    labels, preds = np.array([0, 1, 2, 3]), np.array([1, 2, 0, 3])
    frame = predictions_frame(["a", "b", "c", "d"], labels, np.eye(4)[preds], names)
    assert frame["polarity_flip"].tolist() == [True, False, False, False]
    assert frame["neutral_confusion"].tolist() == [False, True, True, False] and "off_by_one" not in frame
    topics = predictions_frame(["a", "b"], np.array([0, 1]), np.eye(3)[[1, 1]], ["sports", "politics", "tech"])
    assert error_tags(topics) == [*RULES, "high_confidence_error", "likely_label_noise"]


def test_the_sarcasm_cue_needs_a_label_with_a_side():
    texts = pd.Series(['"great" , another dull sequel !'] * 3)
    cues = rule_features(texts, np.array([2, 3, 0]), LabelSet.of(FIVE))  # neutral, positive, very negative
    assert cues["sarcasm_cue"].tolist() == [False, True, True]


def test_most_confused_pairs_count_the_mistakes():
    labels, preds = np.array([0, 0, 0, 1, 2, 2]), np.array([1, 1, 0, 0, 1, 2])
    pairs = confused_pairs(predictions_frame(list("abcdef"), labels, np.eye(3)[preds], ["a", "b", "c"]))
    assert pairs.values.tolist() == [["a", "b", 2, 0.5], ["b", "a", 1, 0.25], ["c", "b", 1, 0.25]]
