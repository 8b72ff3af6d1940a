import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import cohen_kappa_score, precision_recall_fscore_support
from transformers import EvalPrediction

from trainer.evaluation.metrics import (
    CALIBRATION_BINS,
    calibration_bin_ids,
    compute_metrics_for,
    confusion,
    expected_calibration_error,
    metrics_with_ci,
    point_metrics,
    reliability_bins,
    wilson_interval,
)
from trainer.labels import LabelSet

NAMES = ["negative", "positive"]
LABELS = np.array([1, 0, 1, 1, 0, 0])
P_POS = np.array([0.9, 0.2, 0.4, 0.8, 0.7, 0.1])  # predictions 1 0 0 1 1 0: tp=2 tn=2 fp=1 fn=1
PROBS = np.stack([1 - P_POS, P_POS], axis=1)


def test_metrics_equal_hand_computed_values():
    m = point_metrics(LABELS, PROBS, NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx(2 / 3)
    assert m["recall_macro"] == pytest.approx(2 / 3)
    assert m["f1_positive"] == pytest.approx(2 / 3) and m["f1_negative"] == pytest.approx(2 / 3)
    assert m["f1"] == m["f1_positive"]  # GLUE's binary F1: of label id 1
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 3 / 9
    assert m["mcc"] == pytest.approx(3 / math.sqrt(3**4))
    assert all(isinstance(value, float) for value in m.values())


def test_key_names_the_card_and_report_read():
    m = point_metrics(LABELS, PROBS, NAMES)
    assert list(m) == [
        "accuracy",
        *[f"{metric}_{name}" for name in NAMES for metric in ("precision", "recall", "f1")],
        *[f"{metric}_{avg}" for avg in ("macro", "weighted") for metric in ("precision", "recall", "f1")],
        "f1",
        "mcc", "roc_auc", "log_loss", "brier", "ece",
    ]  # fmt: skip


def test_compute_metrics_takes_argmax_of_logits():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [2.0, 1.0]])
    m = compute_metrics_for(NAMES)(EvalPrediction(predictions=logits, label_ids=LABELS))
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_multiclass_has_no_binary_f1():
    probs = np.eye(3)[[0, 2, 2, 2]] * 0.8 + 0.2 / 3
    m = point_metrics([0, 1, 2, 2], probs, ["a", "b", "c"])
    assert "f1" not in m
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["recall_b"] == 0 and m["recall_c"] == 1 and m["precision_c"] == pytest.approx(2 / 3)


def test_macro_and_weighted_means_equal_sklearn_averages():
    labels, preds = np.array([0, 0, 0, 1, 1, 3, 3, 3, 3]), np.array([0, 1, 0, 1, 3, 3, 3, 0, 3])  # class 2: absent
    per_class = point_metrics(labels, np.eye(4)[preds], list("abcd"))
    for avg in ("macro", "weighted"):
        expected = precision_recall_fscore_support(labels, preds, labels=range(4), average=avg, zero_division=0)
        assert [per_class[f"{m}_{avg}"] for m in ("precision", "recall", "f1")] == pytest.approx(expected[:3])


def test_log_loss_and_brier_by_hand_on_four_rows():
    labels, p_pos = np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.6, 0.5])
    m = point_metrics(labels, np.stack([1 - p_pos, p_pos], 1), NAMES)
    # probabilities of the true label: 0.9, 0.9, 0.6, 0.5
    assert m["log_loss"] == pytest.approx(-(2 * math.log(0.9) + math.log(0.6) + math.log(0.5)) / 4)
    assert m["log_loss"] == pytest.approx(0.353673, abs=1e-6)  # (0.2107 + 0.5108 + 0.6931) / 4
    # binary Brier: mean squared error of p(positive): (0.01 + 0.01 + 0.16 + 0.25) / 4
    assert m["brier"] == pytest.approx(0.1075)


def test_multiclass_brier_is_summed_over_classes_not_halved():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    # rows: 0.09 + 0.04 + 0.01, 0.01 + 0.36 + 0.49, 0.04 + 0.04 + 0.16
    assert point_metrics([0, 2, 2], probs, ["a", "b", "c"])["brier"] == pytest.approx((0.14 + 0.86 + 0.24) / 3)


def test_metrics_equal_hand_computed_values_and_intervals_contain_them():
    m = metrics_with_ci(LABELS, PROBS, NAMES, n_boot=300, seed=0)
    assert m["accuracy"]["value"] == pytest.approx(4 / 6)
    assert m["f1_positive"]["value"] == pytest.approx(2 / 3) and m["f1_macro"]["value"] == pytest.approx(2 / 3)
    assert m["mcc"]["value"] == pytest.approx(1 / 3)
    # ROC-AUC: of the 9 (positive, negative) pairs the positive scores higher in all but (0.4, 0.7).
    assert m["roc_auc"]["value"] == pytest.approx(8 / 9)
    given = np.array([0.9, 0.8, 0.4, 0.8, 0.3, 0.9])  # probability of the true label
    assert m["log_loss"]["value"] == pytest.approx(-np.log(given).mean())
    assert m["brier"]["value"] == pytest.approx(((P_POS - LABELS) ** 2).mean())
    # ECE: confidences 0.9 0.8 0.6 0.8 0.7 0.9, correct 1 1 0 1 0 1; per bin |#correct - sum of confidences|:
    # {0.9, 0.9}: |2 - 1.8| = 0.2; {0.8, 0.8}: |2 - 1.6| = 0.4; {0.7}: |0 - 0.7|; {0.6}: |0 - 0.6|; over 6 rows
    assert m["ece"]["value"] == pytest.approx((0.2 + 0.4 + 0.7 + 0.6) / 6)
    for key, s in m.items():
        assert s["ci_low"] <= s["value"] + 1e-12 and s["value"] <= s["ci_high"] + 1e-12, key


def test_bootstrap_is_seeded():
    a = metrics_with_ci(LABELS, PROBS, NAMES, n_boot=50, seed=3)
    assert a == metrics_with_ci(LABELS, PROBS, NAMES, n_boot=50, seed=3)


def test_trainer_hook_and_final_report_give_the_same_numbers():
    rng = np.random.default_rng(0)
    for names in (NAMES, ["negative", "neutral", "positive"]):
        labels = rng.integers(0, len(names), 40)
        logits = rng.normal(size=(40, len(names))).astype(np.float32) + 2 * np.eye(len(names))[labels]
        hook = compute_metrics_for(names)(EvalPrediction(predictions=(logits,), label_ids=labels))
        report = metrics_with_ci(labels, softmax(logits.astype(float), axis=1), names, n_boot=20, seed=0)
        assert hook == {key: s["value"] for key, s in report.items()}
        assert {"accuracy", "f1_macro", "roc_auc", "log_loss", "brier", "ece"} <= set(hook)


def test_hook_survives_a_single_class_evaluation():
    m = compute_metrics_for(NAMES)(EvalPrediction(predictions=np.array([[0.0, 1.0], [2.0, 0.0]]), label_ids=[1, 1]))
    assert m["accuracy"] == 0.5 and m["mcc"] == 0 and "roc_auc" not in m
    assert m["log_loss"] == pytest.approx(-(math.log(softmax([0.0, 1.0])[1]) + math.log(softmax([2.0, 0.0])[1])) / 2)


def test_ece_by_hand():
    conf = np.array([0.95, 0.95, 0.65, 0.65])
    correct = np.array([True, False, True, True])
    # bin (0.9, 1.0]: |0.5 - 0.95| * 2; bin (0.6, 0.7]: |1 - 0.65| * 2; over 4 rows
    assert expected_calibration_error(conf, correct) == pytest.approx((0.45 * 2 + 0.35 * 2) / 4)


def test_ece_uses_the_ten_bins_of_the_reliability_diagram():
    conf, correct = np.array([0.62, 0.68, 0.91, 0.99]), np.array([1, 0, 1, 1])
    # 10 bins: (0.6, 0.7] holds 0.62 and 0.68: |1 - 1.30| = 0.3; (0.9, 1.0] holds 0.91 and 0.99: |2 - 1.90| = 0.1.
    # (15 bins would split both pairs: (0.38 + 0.68 + 0.09 + 0.01) / 4 = 0.29.)
    assert CALIBRATION_BINS == 10
    assert expected_calibration_error(conf, correct) == pytest.approx((0.3 + 0.1) / 4)
    bins = reliability_bins(conf, correct)
    assert bins.index.tolist() == [6, 9] and bins["n"].tolist() == [2, 2]
    assert bins["accuracy"].tolist() == [0.5, 1.0] and bins["confidence"].tolist() == pytest.approx([0.65, 0.95])


def test_reliability_bins_and_ece_share_their_bins():
    rng = np.random.default_rng(1)
    conf = np.concatenate([rng.uniform(0.5, 1.0, 500), [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]])  # edges included
    correct = rng.random(len(conf)) < conf
    bins = reliability_bins(conf, correct)
    assert bins["n"].sum() == len(conf)
    from_plot = (bins["n"] * (bins["accuracy"] - bins["confidence"]).abs()).sum() / len(conf)
    assert expected_calibration_error(conf, correct) == pytest.approx(from_plot)


def test_bins_are_right_closed_like_calibration_curve():
    assert calibration_bin_ids(np.array([0.0, 0.5, 0.55, 0.7, 0.7001, 1.0])).tolist() == [0, 4, 5, 6, 7, 9]


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=5e-5)  # textbook value
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_confusion_rows_are_true_labels_and_every_class_is_kept():
    assert confusion([0, 0, 1, 1], [0, 1, 1, 1], 3).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]


def test_ordinal_figures_equal_hand_computed_values():
    labels = np.array([0, 1, 2, 3, 4, 0])
    preds = np.array([1, 1, 2, 0, 4, 3])  # off by 1, 0, 0, 3 (a flip), 0, 3 (a flip)
    scores = point_metrics(labels, np.eye(5)[preds] * 0.9 + 0.02, FIVE)
    assert scores["mae"] == pytest.approx(7 / 6)
    assert scores["within_one"] == pytest.approx(4 / 6) and scores["off_by_one"] == pytest.approx(1 / 6)
    assert scores["polarity_flips"] == pytest.approx(2 / 6)
    assert scores["qwk"] == pytest.approx(cohen_kappa_score(labels, preds, weights="quadratic"))


def test_ordinal_figures_follow_the_scale_not_the_ids_and_only_for_ordered_labels():
    shuffled = ["positive", "negative", "neutral"]  # ids 0, 1, 2; scale negative < neutral < positive
    labels, preds = np.array([0, 1, 2]), np.array([1, 1, 0])  # positive -> negative is two classes off
    scores = point_metrics(labels, np.eye(3)[preds], shuffled)
    assert scores["mae"] == pytest.approx((2 + 0 + 1) / 3) and scores["polarity_flips"] == pytest.approx(1 / 3)
    assert "mae" not in point_metrics(labels, np.eye(3)[preds], shuffled, LabelSet.of(shuffled, "nominal"))
    assert "mae" not in point_metrics(np.array([0, 1]), np.eye(2), ["negative", "positive"])
    assert {"mae", "qwk"} <= set(compute_metrics_for(["low", "mid", "high"], "ordinal")(
        EvalPrediction(predictions=np.eye(3), label_ids=np.array([0, 1, 2]))))  # fmt: skip


# A 3-label example by hand: rows' true labels, probabilities, and the decisions at 0.5
ML_NAMES = ["joy", "anger", "fear"]
ML_LABELS = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
ML_PROBS = np.array([[0.9, 0.2, 0.4], [0.3, 0.8, 0.3], [0.7, 0.1, 0.2]])  # chosen: {joy}, {anger}, {joy}


def test_multilabel_metrics_by_hand_on_three_rows():
    m = point_metrics(ML_LABELS, ML_PROBS, ML_NAMES)  # a 2-D 0/1 label matrix: a multi-label model, 0.5 thresholds
    # hits: joy rows 0 and 2, anger row 1 (3); misses: fear row 0, anger row 2 (2); false alarms: none
    assert m["precision_micro"] == 1 and m["recall_micro"] == pytest.approx(3 / 5)
    assert m["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 2))
    assert m["hamming_loss"] == pytest.approx(2 / 9)  # 2 wrong decisions of 9
    assert m["subset_accuracy"] == pytest.approx(1 / 3)  # row 1 alone has every label right
    assert [m[f"f1_{n}"] for n in ML_NAMES] == pytest.approx([1, 2 / 3, 0])
    assert m["f1_macro"] == pytest.approx(5 / 9) and m["support_fear"] == 1
    assert m["f1_weighted"] == pytest.approx((2 * 1 + 2 * 2 / 3 + 0) / 5)
    assert m["labels_per_text"] == 1 and m["labels_per_text_true"] == pytest.approx(5 / 3)
    flat_y, flat_p = ML_LABELS.ravel(), ML_PROBS.ravel()
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(np.where(flat_y == 1, flat_p, 1 - flat_p))))
    assert m["brier"] == pytest.approx(np.mean((flat_p - flat_y) ** 2))
    assert m["ece"] == pytest.approx(expected_calibration_error(flat_p, flat_y))
    # joy: both positives (0.9, 0.7) above the negative (0.3); fear: the positive 0.4 above both negatives
    assert m["roc_auc_joy"] == 1 and m["roc_auc_fear"] == 1 and m["roc_auc_anger"] == pytest.approx(1 / 2)
    assert m["roc_auc"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["pr_auc_anger"] == pytest.approx((1 + 2 / 3) / 2)  # ranks: 0.8 (+), 0.2 (-), 0.1 (+)


def test_multilabel_thresholds_decide_and_a_one_class_label_has_no_auc():
    m = point_metrics(ML_LABELS, ML_PROBS, ML_NAMES, thresholds=[0.5, 0.5, 0.35])  # fear at 0.4 now chosen
    assert m["subset_accuracy"] == pytest.approx(2 / 3) and m["f1_micro"] == pytest.approx(8 / 9)
    labels = ML_LABELS.copy()
    labels[:, 2] = 0
    m = point_metrics(labels, ML_PROBS, ML_NAMES)
    assert "roc_auc_fear" not in m and "pr_auc_fear" not in m and m["support_fear"] == 0
    assert m["roc_auc"] == pytest.approx((1 + 0.5) / 2)  # the macro mean over the labels with both classes


def test_multilabel_resamples_equal_sklearn_on_the_resampled_rows():
    from trainer.evaluation.metrics import multilabel_metrics, multilabel_resamples

    rng = np.random.default_rng(1)
    names = [f"l{j}" for j in range(6)]
    labels = (rng.random((120, 6)) < 0.25).astype(int)
    labels[:, 5] = 0  # a label with one class: no AUC on any resample
    probs = np.clip(0.5 * labels + 0.6 * rng.random((120, 6)), 0, 1).round(2)  # rounded: tied scores
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.3, 0.5])
    draws = [rng.integers(0, 120, 120) for _ in range(4)]
    fast = multilabel_resamples(labels, probs, names, thresholds, iter(draws))
    for r, idx in enumerate(draws):
        slow = multilabel_metrics(labels[idx], probs[idx], names, thresholds)
        assert {key: fast[key][r] for key in slow} == pytest.approx(slow, abs=1e-12)
        assert all(np.isnan(fast[key][r]) for key in fast.keys() - slow.keys())  # undefined there: nan, skipped


def test_multilabel_intervals_hold_the_value_and_are_seeded():
    rng = np.random.default_rng(2)
    labels = (rng.random((80, 4)) < 0.3).astype(int)
    probs = np.clip(0.4 * labels + 0.6 * rng.random((80, 4)), 0, 1)
    names = ["joy", "anger", "fear", "neutral"]
    m = metrics_with_ci(labels, probs, names, n_boot=200, seed=0)
    assert m == metrics_with_ci(labels, probs, names, n_boot=200, seed=0)
    assert {"f1_micro", "subset_accuracy", "hamming_loss", "pr_auc", "f1_joy", "roc_auc_fear"} <= set(m)
    for key, s in m.items():
        assert s["ci_low"] <= s["value"] + 1e-12 <= s["ci_high"] + 2e-12, key
    assert m["f1_micro"]["ci_low"] < m["f1_micro"]["ci_high"]


def test_multilabel_trainer_hook_applies_a_sigmoid_per_label():
    rng = np.random.default_rng(3)
    labels = (rng.random((30, 3)) < 0.4).astype(np.float32)  # the Trainer hands BCE targets as floats
    logits = rng.normal(size=(30, 3)).astype(np.float32) + 2 * labels
    hook = compute_metrics_for(ML_NAMES, multi_label=True)(EvalPrediction(predictions=logits, label_ids=labels))
    assert hook == point_metrics(labels, 1 / (1 + np.exp(-logits.astype(float))), ML_NAMES)
    assert hook["f1_micro"] > 0.5 and "accuracy" not in hook


def test_risk_coverage_by_hand_on_ten_rows():
    from trainer.evaluation.metrics import risk_coverage

    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5])
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0], bool)
    shuffle = np.random.default_rng(0).permutation(10)
    found = risk_coverage(confidence[shuffle], correct[shuffle])
    # accuracy of the m most confident: 1 1 1 3/4 4/5 5/6 5/7 6/8 6/9 6/10
    accuracy = [1, 1, 1, 3 / 4, 4 / 5, 5 / 6, 5 / 7, 6 / 8, 6 / 9, 6 / 10]
    assert [p["coverage"] for p in found["points"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert [p["accuracy"] for p in found["points"]] == pytest.approx(accuracy)
    at_90 = found["points"][8]
    assert at_90 == {"coverage": 0.9, "accuracy": pytest.approx(6 / 9), "min_confidence": 0.55, "n": 9}
    assert found["aurc"] == pytest.approx(np.mean(1 - np.array(accuracy)))
    assert found["accuracy_measure"] == "accuracy"
    assert risk_coverage(confidence[:3], correct[:3], "subset_accuracy")["points"][0]["n"] == 1  # at least one text


def test_multilabel_intervals_do_not_depend_on_how_many_resamples_are_scored_at_once(monkeypatch):
    import trainer.evaluation.metrics as metrics_module

    rng = np.random.default_rng(4)
    labels, probs = (rng.random((50, 3)) < 0.4).astype(int), rng.random((50, 3))
    whole = metrics_with_ci(labels, probs, ML_NAMES, n_boot=60, seed=1)
    monkeypatch.setattr(metrics_module, "RESAMPLE_CELLS", 50 * 7)  # 7 resamples a product: 9 products
    parts = metrics_with_ci(labels, probs, ML_NAMES, n_boot=60, seed=1)
    flat = lambda found: {(key, end): value for key, s in found.items() for end, value in s.items()}  # noqa: E731
    assert flat(parts) == pytest.approx(flat(whole), abs=1e-12, nan_ok=True)
