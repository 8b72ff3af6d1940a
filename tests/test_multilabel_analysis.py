"""The analysis of a multi-label model: its frame, mistakes, slices and plots by hand, and analyse() end to end on a
tiny multi-label BERT (four emotions, per-label thresholds and temperatures in its config.json)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.special import expit
from sklearn.metrics import f1_score, hamming_loss
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from tests.conftest import WORDS
from trainer.evaluation.analysis import (
    confused_pairs,
    incorrect_predictions,
    label_mistakes,
    multilabel_frame,
    slice_table,
)
from trainer.evaluation.behavioral import run_behavioral_tests
from trainer.evaluation.metrics import decisions, expected_calibration_error, point_metrics
from trainer.evaluation.plots import plot_confusion_matrix
from trainer.evaluation.run import AnalysisOptions, analyse
from trainer.inference import Classifier
from trainer.labels import LabelSet
from trainer.metric_catalogue import record

EMOTIONS = ["joy", "anger", "fear", "neutral"]
THRESHOLDS = {"joy": 0.45, "anger": 0.55, "fear": 0.5, "neutral": 0.6}
TEMPERATURES = {"joy": 2.0, "anger": 0.5, "fear": 1.5, "neutral": 1.0}


def tiny_multi_label_model(folder, tokenizer_dir, names=EMOTIONS, calibrated: bool = True):
    """A random 2-layer BERT saved as a multi-label model folder: sigmoid per label, thresholds and temperatures in
    config.json, its output layer scaled so the probabilities spread over (0, 1)."""
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, folder / name)
    calibration = {"method": "temperature", "temperature": dict(zip(names, TEMPERATURES.values())),
                   "fitted_on": "validation"} if calibrated else {"method": "none"}  # fmt: skip
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, problem_type="multi_label_classification",
                        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                        decision_thresholds=dict(zip(names, THRESHOLDS.values())), calibration=calibration)  # fmt: skip
    model = BertForSequenceClassification._from_config(config).eval()
    # A random encoder pools every text to nearly one vector, so a random head gives each label one probability for
    # all texts: aim the head at the directions the pooled vectors vary along instead (logits centred, std ~2).
    batch = BertTokenizerFast.from_pretrained(folder)(texts_and_labels()[0], padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = model.bert(**batch).pooler_output
        _, spread, directions = torch.linalg.svd(pooled - pooled.mean(0), full_matrices=False)
        weight = directions[: len(names)] * (2 * len(pooled) ** 0.5 / spread[: len(names), None])
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-(pooled.mean(0) @ weight.T))
    model.save_pretrained(folder)
    return folder


def texts_and_labels(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS[:20], size=rng.integers(2, 9))) for _ in range(n)]
    labels = (rng.random((n, len(EMOTIONS))) < 0.35).astype(int)
    return texts, labels


@pytest.fixture(scope="module")
def multi_analysis(tiny_model_dir, tmp_path_factory):
    """analyse() of the tiny multi-label model on 40 texts with random multi-hot labels: (folder, metrics, classifier,
    texts, labels)."""
    root = tmp_path_factory.mktemp("multi-analysis")
    (root / "model").mkdir()
    model = tiny_multi_label_model(root / "model", tiny_model_dir)
    classifier = Classifier(model, device="cpu")
    texts, labels = texts_and_labels()
    options = AnalysisOptions(output_dir=root / "out", data_id="random.csv", model=str(model), n_bootstrap=50)
    return root / "out", analyse(classifier, texts, labels, options), classifier, texts, labels


def test_the_classifier_reads_the_folder_and_the_metrics_decide_as_it_does(multi_analysis):
    _, _, classifier, texts, _ = multi_analysis
    assert classifier.multi_label and classifier.thresholds.tolist() == list(THRESHOLDS.values())
    probs = classifier.predict_proba(texts)
    assert (decisions(probs, classifier.thresholds) == classifier.decide(probs)).all()
    assert probs.std() > 0.1  # spread over (0, 1), so the thresholds matter


def test_metrics_json_holds_the_multi_label_figures_at_the_thresholds(multi_analysis):
    out, metrics, classifier, texts, labels = multi_analysis
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["multi_label"] is True and saved["metric_catalogue"] == record(multi_label=True)
    assert saved["thresholds"]["per_label"] == THRESHOLDS
    scores = saved["metrics"]
    contract = ["f1_micro", "f1_macro", "f1_weighted", "precision_micro", "recall_micro", "precision_macro",
                "recall_macro", "subset_accuracy", "hamming_loss", "log_loss", "brier", "ece", "labels_per_text",
                "labels_per_text_true", *(f"{m}_{n}" for m in ("precision", "recall", "f1", "support")
                                          for n in EMOTIONS)]  # fmt: skip
    assert set(contract) <= set(scores) and "accuracy" not in scores
    chosen = classifier.predict_proba(texts) >= np.array(list(THRESHOLDS.values()))
    assert scores["f1_micro"]["value"] == pytest.approx(f1_score(labels, chosen, average="micro", zero_division=0))
    assert scores["hamming_loss"]["value"] == pytest.approx(hamming_loss(labels, chosen))
    assert scores["subset_accuracy"]["value"] == pytest.approx((labels == chosen).all(1).mean())
    assert scores["labels_per_text_true"]["value"] == pytest.approx(labels.sum(1).mean())
    for key in contract:
        assert scores[key]["ci_low"] <= scores[key]["value"] + 1e-9 <= scores[key]["ci_high"] + 2e-9, key
    assert saved["label_mistakes"]["labels_missed"] == int((labels & ~chosen).sum())


def test_ece_before_and_after_calibration_differ_and_are_the_uncalibrated_logits(multi_analysis):
    out, metrics, classifier, texts, labels = multi_analysis
    calibration = metrics["calibration"]
    assert calibration["method"] == "temperature" and calibration["temperature"] == TEMPERATURES
    logits = classifier.score(texts).logits.astype(float)
    before = expit(logits * np.array(list(TEMPERATURES.values())))  # what the model gave before T was folded in
    assert calibration["ece"]["before"] == pytest.approx(expected_calibration_error(before.ravel(), labels.ravel()))
    assert calibration["ece"]["after"] == metrics["metrics"]["ece"]["value"]
    assert calibration["ece"]["before"] != pytest.approx(calibration["ece"]["after"], abs=1e-6)
    report = (out / "error_analysis.md").read_text()
    assert f"{calibration['ece']['before']:.4f} before, {calibration['ece']['after']:.4f} after" in report


def test_risk_coverage_reads_exact_match_on_the_most_confident(multi_analysis):
    out, metrics, classifier, texts, labels = multi_analysis
    found = metrics["risk_coverage"]
    assert found["accuracy_measure"] == "subset_accuracy" and len(found["points"]) == 10
    probs = classifier.predict_proba(texts)
    confidence, right = classifier.confidence(probs), (classifier.decide(probs) == labels.astype(bool)).all(1)
    top = np.argsort(-confidence, kind="stable")[:36]  # 90% of 40
    at_90 = found["points"][8]
    assert at_90["n"] == 36 and at_90["accuracy"] == pytest.approx(right[top].mean())
    assert at_90["min_confidence"] == pytest.approx(confidence[top].min())
    assert found["points"][-1]["accuracy"] == pytest.approx(metrics["metrics"]["subset_accuracy"]["value"])
    assert "At 90% coverage: " in (out / "error_analysis.md").read_text()


def test_the_files_of_a_multi_label_analysis(multi_analysis):
    out, metrics, _, texts, labels = multi_analysis
    frame = pd.read_parquet(out / "predictions.parquet")
    for column in ["text", "label", "predicted", *(f"p_{n}" for n in EMOTIONS), "confidence", "correct", "missed",
                   "extra", "n_missed", "n_extra", "length", "loss", "negation", "likely_label_noise",
                   "high_confidence_error", "top_label"]:  # fmt: skip
        assert column in frame, column
    assert frame["label"].tolist() == [";".join(n for n, on in zip(EMOTIONS, row) if on) for row in labels]
    assert frame["loss"].mean() == pytest.approx(metrics["metrics"]["log_loss"]["value"], rel=1e-9)
    wrong = pd.read_csv(out / "incorrect_predictions.csv", keep_default_na=False)
    assert wrong.columns.tolist() == ["text", "true_labels", "predicted_labels", "missed", "extra", "confidence",
                                      "error_types"]  # fmt: skip
    assert len(wrong) == (~frame["correct"]).sum() and wrong["confidence"].is_monotonic_decreasing
    assert pd.read_parquet(out / "embeddings.parquet")["top_label"].tolist() == frame["top_label"].tolist()
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"label_cooccurrence.png", "risk_coverage.png", "per_label_f1.png", "reliability_diagram.png"} <= plots
    assert "confusion_matrix.png" not in plots  # a text may hold several labels: per-label F1 takes its place
    report_txt = (out / "classification_report.txt").read_text()
    assert "micro avg" in report_txt and "samples avg" in report_txt
    report = (out / "error_analysis.md").read_text()
    for section in ("## Per label", "## Several labels per text", "## Not sure", "## Calibration", "## Slices"):
        assert section in report, section
    slices = pd.read_csv(out / "slices.csv").set_index("slice")
    assert slices.loc["label fear", "n"] == labels[:, 2].sum()


def test_behavioural_tests_run_through_polarity_or_are_skipped_with_the_reason(multi_analysis, tmp_path):
    out, _, classifier, _, _ = multi_analysis
    behaviour = json.loads((out / "behavioral_tests.json").read_text())
    assert {t["name"] for t in behaviour["tests"]} >= {"clear_positive", "negated_negative", "typos", "add_not_great"}
    assert behaviour["positive_labels"] == ["joy"] and behaviour["negative_labels"] == ["anger", "fear"]
    # an answer is the side of the labels chosen: joy alone is positive; joy with fear is neither side
    probs = np.array([[0.9, 0.1, 0.1, 0.1], [0.9, 0.1, 0.8, 0.1], [0.1, 0.1, 0.1, 0.9]])
    found = run_behavioral_tests(lambda texts: np.tile(probs[[0]], (len(texts), 1)), EMOTIONS,
                                 label_set=LabelSet.of(EMOTIONS, "nominal"), decide=lambda p: p >= 0.5)  # fmt: skip
    by_name = {t["name"]: t for t in found["tests"]}
    assert by_name["clear_positive"]["failure_rate"] == 0 and by_name["clear_negative"]["failure_rate"] == 1
    assert by_name["clear_negative"]["examples"][0]["predicted"] == "joy"
    topics = ["sports", "politics", "tech", "science"]
    skipped = run_behavioral_tests(lambda texts: np.full((len(texts), 4), 0.5), topics,
                                   label_set=LabelSet.of(topics, "nominal"), decide=lambda p: p >= 0.5)  # fmt: skip
    assert skipped["tests"] == [] and len(skipped["skipped"]) == 9
    assert "carry none" in skipped["skipped"][0]["reason"] and "sports, politics" in skipped["skipped"][0]["reason"]


# --- the frame, mistakes and slices by hand ---

Y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
P = np.array([[0.9, 0.6, 0.2, 0.1], [0.1, 0.8, 0.1, 0.1], [0.2, 0.7, 0.9, 0.1], [0.1, 0.1, 0.1, 0.95]])


def hand_frame():
    chosen = P >= 0.5  # row 0: joy, anger (fear missed, anger extra); row 2: anger, fear (joy missed)
    confidence = np.where(chosen, P, 1 - P).min(1)
    return multilabel_frame(["so good but awful", "the worst", "not fun", "the plot"], Y, P, chosen, confidence,
                            EMOTIONS)  # fmt: skip


def test_missed_and_extra_labels_by_hand():
    frame = hand_frame()
    assert frame["label"].tolist() == ["joy;fear", "anger", "joy", "neutral"]
    assert frame["predicted"].tolist() == ["joy;anger", "anger", "anger;fear", "neutral"]
    assert frame["missed"].tolist() == ["fear", "", "joy", ""]
    assert frame["extra"].tolist() == ["anger", "", "anger;fear", ""]
    assert frame["n_missed"].tolist() == [1, 0, 1, 0] and frame["n_extra"].tolist() == [1, 0, 2, 0]
    assert frame["correct"].tolist() == [False, True, False, True]
    assert frame["confidence"].tolist() == pytest.approx([0.6, 0.8, 0.7, 0.9])
    assert frame["top_label"].tolist() == ["joy", "anger", "fear", "neutral"]
    # row 2: joy (positive) missed while anger and fear (negative) were chosen: a polarity flip
    assert frame["polarity_flip"].tolist() == [False, False, True, False]
    assert frame["loss"].mean() == pytest.approx(point_metrics(Y, P, EMOTIONS)["log_loss"], rel=1e-12)
    assert label_mistakes(frame) == {"texts_missed": 2, "labels_missed": 2, "texts_extra": 2, "labels_extra": 3}
    wrong = incorrect_predictions(frame)
    assert wrong["text"].tolist() == ["not fun", "so good but awful"]  # most confident first: 0.7, then 0.6
    # fear at 0.9 on a text not labelled fear: the model is surer of it than fear's own texts are (0.2), so the
    # missing label is likely noise
    assert wrong.loc[0, "error_types"].split(";") == ["negation", "very_short", "missed_label", "extra_label",
                                                      "polarity_flip", "likely_label_noise"]  # fmt: skip


def test_confusions_that_come_together_are_counted_per_text():
    pairs = confused_pairs(hand_frame())
    # row 0: (fear, anger); row 2: (joy, anger), (joy, fear)
    assert pairs[["missed", "extra", "texts"]].values.tolist() == [["fear", "anger", 1], ["joy", "anger", 1],
                                                                     ["joy", "fear", 1]]  # fmt: skip
    assert pairs["share_of_mistakes"].tolist() == [0.5, 0.5, 0.5]


def test_slices_take_each_label_held_and_exact_match():
    slices = slice_table(hand_frame()).set_index("slice")
    assert slices.loc["label joy", "n"] == 2 and slices.loc["label joy", "accuracy"] == 0
    assert slices.loc["label neutral", "n"] == 1 and slices.loc["label neutral", "accuracy"] == 1
    assert slices.loc["label anger", "accuracy"] == 1  # row 1 holds anger and is exactly right


def test_a_label_the_model_is_very_sure_is_wrong_is_likely_noise():
    y = np.zeros((6, 2), int)
    y[:3, 0] = 1
    y[5, 1] = 1
    p = np.array([[0.9, 0.1], [0.8, 0.1], [0.01, 0.1], [0.1, 0.1], [0.1, 0.2], [0.1, 0.9]])
    chosen = p >= 0.5
    frame = multilabel_frame([f"t {i}" for i in range(6)], y, p, chosen, np.where(chosen, p, 1 - p).min(1), ["a", "b"])
    # row 2 is given a, which the model puts at 0.01: surer it is absent than of a's average absent text (0.9)
    assert frame["likely_label_noise"].tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("k", [5, pytest.param(28, marks=pytest.mark.slow)])  # 28: ~10 s to draw 1,568 numbers
def test_the_confusion_matrix_grows_with_the_labels(tmp_path, k):
    names = [f"label {i}" for i in range(k)]
    matrix = np.random.default_rng(0).integers(0, 300, (k, k))
    width, height = Image.open(plot_confusion_matrix(matrix, names, tmp_path / "cm.png")).size
    assert height > width  # from five labels the two panels stack, each at the page's width
    assert width >= (600 if k == 5 else 1800)  # about 60 px a cell for 28 labels at its own size


def test_a_multi_label_training_summary_finds_the_best_micro_f1():
    from trainer.evaluation.analysis import training_summary

    history = [{"step": 1, "loss": 0.7}, {"step": 2, "eval_f1_micro": 0.4}, {"step": 4, "eval_f1_micro": 0.6},
               {"step": 6, "eval_f1_micro": 0.5}]  # fmt: skip
    assert training_summary(history)["best_eval"] == {"step": 4, "f1_micro": 0.6, "epoch": None}


def test_the_not_sure_section_rounds_the_cut_off_down_so_it_still_covers_its_share():
    from trainer.evaluation.metrics import risk_coverage
    from trainer.evaluation.report import _not_sure

    confidence = np.array([0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.43, 0.42, 0.4]) + 0.0009  # 0.4209 at 90%
    found = risk_coverage(confidence, np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0]))
    text = "\n".join(_not_sure(found))
    assert "At 90% coverage: 66.7% accurate" in text and "`--min_confidence 0.420`" in text  # 0.421 would miss one
    assert "| 90% | 9 | 66.7% | 0.420 |" in text and "![risk-coverage](plots/risk_coverage.png)" in text
    assert _not_sure(None) == [] and _not_sure({"points": []}) == []


def test_a_calibrated_single_label_model_records_ece_before_and_after(tiny_model_dir, tmp_path):
    from scipy.special import softmax

    from tests.conftest import writable_copy

    model = writable_copy(tiny_model_dir, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["calibration"] = {"method": "temperature", "temperature": 3.0, "fitted_on": "validation"}
    (model / "config.json").write_text(json.dumps(config))
    classifier = Classifier(model, device="cpu")
    texts, _ = texts_and_labels(24, seed=1)
    labels = np.arange(24) % 2
    options = AnalysisOptions(output_dir=tmp_path / "out", data_id="x.csv", model=str(model), n_bootstrap=20)
    metrics = analyse(classifier, texts, labels, options)
    before = softmax(classifier.score(texts).logits.astype(float) * 3.0, axis=1)
    assert metrics["multi_label"] is False and metrics["calibration"]["temperature"] == 3.0
    assert metrics["calibration"]["ece"] == {
        "before": pytest.approx(expected_calibration_error(before.max(1), before.argmax(1) == labels)),
        "after": metrics["metrics"]["ece"]["value"]}  # fmt: skip
    assert metrics["risk_coverage"]["accuracy_measure"] == "accuracy"
    assert metrics["risk_coverage"]["points"][-1]["accuracy"] == pytest.approx(metrics["metrics"]["accuracy"]["value"])
