"""Multi-label data, training and decisions, and calibrated scores: the data forms, the saved model, the thresholds,
the folded temperature, and what `pipeline()` and the inference core answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, pipeline

from tests.conftest import EMOTION_WORDS, ROOT
from trainer import UserError, calibration
from trainer.config import DataConfig
from trainer.data import load_splits, multi_hot, tokenize
from trainer.inference import UNCERTAIN, Classifier, probabilities
from trainer.modeling import load_tokenizer
from trainer.predict import main as predict_main

EMOTIONS = sorted(EMOTION_WORDS)  # anger, fear, joy, neutral: the names a run takes from the data, in id order


def splits_of(tmp_path, train: pd.DataFrame, dev: pd.DataFrame, suffix: str = ".csv", **options):
    """load_splits on a train/validation pair written in one format."""
    paths = []
    for name, frame in (("train", train), ("dev", dev)):
        path = tmp_path / f"{name}{suffix}"
        frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
        paths.append(str(path))
    return load_splits(DataConfig(train_file=paths[0], validation_file=paths[1], **options))


TRAIN = pd.DataFrame(
    {"sentence": ["good", "awful", "good awful", "plot"], "label": ["joy", "anger", "joy;anger", "neutral"]}
)


def test_names_joined_by_the_separator_are_multi_label(tmp_path):
    splits = splits_of(tmp_path, TRAIN, TRAIN.head(2))
    assert splits.multi_label and splits.label_names == ["anger", "joy", "neutral"]
    assert splits.train["label"].tolist() == [[1], [0], [0, 1], [2]]


def test_lists_in_parquet_and_0_1_columns_give_the_same_labels(tmp_path):
    listed = TRAIN.assign(label=TRAIN["label"].str.split(";"))
    from_lists = splits_of(tmp_path, listed, listed.head(2), ".parquet")
    columns = pd.DataFrame({"sentence": TRAIN["sentence"], "anger": [0, 1, 1, 0], "joy": [1, 0, 1, 0],
                            "neutral": [0, 0, 0, 1]})  # fmt: skip
    from_columns = splits_of(tmp_path, columns, columns.head(2), label_columns=["anger", "joy", "neutral"])
    assert from_lists.label_names == from_columns.label_names == ["anger", "joy", "neutral"]
    assert from_lists.train["label"].tolist() == from_columns.train["label"].tolist() == [[1], [0], [0, 1], [2]]


def test_a_label_map_groups_labels_and_keeps_the_unmapped(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps({"negative": ["anger", "fear"], "positive": ["joy"]}))
    frame = pd.DataFrame({"sentence": ["a", "b", "c", "d"], "label": ["anger;fear", "joy", "fear;joy", "neutral"]})
    splits = splits_of(tmp_path, frame, frame, label_map=str(tmp_path / "map.json"))
    assert splits.label_names == ["negative", "positive", "neutral"]
    assert splits.data_label_names == ["anger", "fear", "joy", "neutral"]
    assert splits.train["label"].tolist() == [[0], [1], [0, 1], [2]]  # anger;fear: one group, once


def test_multi_hot_targets_are_float_vectors_for_the_bce_loss(tiny_model_dir):
    from datasets import Dataset

    data = Dataset.from_dict({"text": ["good", "awful good"], "label": [[1], [0, 1]]})
    encoded = tokenize(data, load_tokenizer(str(tiny_model_dir)), 16, num_labels=3)
    assert encoded["labels"] == [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    assert multi_hot([[2], []], 3).tolist() == [[0, 0, 1], [0, 0, 0]]


@pytest.mark.data_mirror("go_emotions")
def test_go_emotions_loads_through_datasets_with_its_config_and_label_names():
    cfg = DataConfig(dataset_name="google-research-datasets/go_emotions", dataset_config_name="simplified",
                     text_column="text", label_column="labels", max_train_samples=300)  # fmt: skip
    splits = load_splits(cfg)
    assert splits.multi_label and len(splits.label_names) == 28
    assert splits.label_names[0] == "admiration" and splits.label_names[-1] == "neutral"
    assert len(splits.validation) == 5_426 and len(splits.train) == 300
    assert splits.sources["train"].endswith("simplified/train-00000-of-00001.parquet")
    grouped = load_splits(
        DataConfig(**{**cfg.__dict__, "label_map": str(ROOT / "configs/go-emotions/sentiment_mapping.json")})
    )
    assert grouped.label_names == ["positive", "negative", "ambiguous", "neutral"]


def test_a_missing_config_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "emotions"
    folder.mkdir()
    pd.DataFrame({"text": ["a"], "labels": [[0]]}).to_parquet(folder / "train.parquet")
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path))
    with pytest.raises(
        UserError, match=r"cannot load split 'train' of dataset 'x/emotions' from the local copy .*config"
    ):
        load_splits(DataConfig(dataset_name="x/emotions", dataset_config_name="raw", validation_split_percentage=10))


# --- the trained model: config.json, thresholds, calibration, and every client's answer ---


def test_the_saved_model_is_multi_label_with_thresholds_and_temperatures(tiny_multi_training):
    run, metrics = tiny_multi_training
    config = json.loads((run / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["decision_thresholds"]) == EMOTIONS
    assert all(0 < t < 1 for t in config["decision_thresholds"].values())
    assert config["calibration"]["method"] == "temperature" and sorted(config["calibration"]["temperature"]) == EMOTIONS
    assert metrics["multi_label"] is True
    assert metrics["thresholds"]["per_label"] == config["decision_thresholds"]
    results = metrics["thresholds"]["results"]["validation"]
    assert set(results) == {"per_label", "global", "0.5"}
    # tuned on validation: each label's own threshold is at least as good there as one threshold for all
    assert results["per_label"]["f1_macro"] >= results["global"]["f1_macro"] - 1e-9
    assert metrics["label_counts"]["train"] == {"anger": 16, "fear": 12, "joy": 24, "neutral": 12}


def test_pipeline_applies_a_sigmoid_and_the_core_applies_the_thresholds(tiny_multi_run):
    texts = ["good and awful film", "plot film , really plot", "dull film"]
    classifier = Classifier(tiny_multi_run, device="cpu")
    probs = classifier.predict_proba(texts)
    scored = pipeline("text-classification", model=str(tiny_multi_run), top_k=None, device="cpu")(texts)
    for row, answer in zip(probs, scored):
        by_name = {item["label"]: item["score"] for item in answer}
        np.testing.assert_allclose([by_name[name] for name in classifier.labels], row, rtol=1e-5)
    assert not np.allclose(probs.sum(1), 1)  # independent labels, not a softmax
    for row, answer in zip(probs, classifier.predict(texts)):  # the documented rule: score >= its threshold
        chosen = {n for n, p, t in zip(classifier.labels, row, classifier.thresholds) if p >= t}
        assert set(answer["labels"]) == chosen and answer["label"] == ";".join(answer["labels"])


def decision_model(tmp_path, thresholds: dict) -> Classifier:
    """A tiny four-emotion model whose logits are set by hand: its output layer reads nothing, its bias is the logit."""
    from tests.conftest import WORDS

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from transformers import BertTokenizerFast

    BertTokenizerFast(vocab=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, problem_type="multi_label_classification",
                        id2label=dict(enumerate(EMOTIONS)),
                        label2id={n: i for i, n in enumerate(EMOTIONS)})  # fmt: skip
    config.decision_thresholds = thresholds
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.logit(torch.tensor([0.30, 0.90, 0.55, 0.02])))
    model.save_pretrained(tmp_path)
    return Classifier(tmp_path, device="cpu")


def test_labels_over_their_thresholds_and_uncertain_below_min_confidence(tmp_path):
    classifier = decision_model(tmp_path, {"anger": 0.25, "joy": 0.6})  # fear and neutral: 0.5
    answer = classifier.predict(["good film"])[0]
    assert answer["labels"] == ["fear", "anger"]  # 0.90 >= 0.5, 0.30 >= 0.25; joy 0.55 < 0.6; neutral 0.02
    # the least sure decision: anger chosen at 0.30 -> 0.30 (joy left out at 0.55 -> 0.45)
    assert answer["score"] == pytest.approx(0.30)
    assert classifier.predict(["good film"], min_confidence=0.3)[0]["label"] == "fear;anger"
    unsure = classifier.predict(["good film"], min_confidence=0.31)[0]
    assert unsure["label"] == UNCERTAIN and unsure["best_guess"] == ["fear", "anger"]
    classifier.use_thresholds(0.5)
    assert classifier.predict(["good film"])[0]["labels"] == ["fear", "joy"]
    with pytest.raises(ValueError, match=r"threshold 1.2 for 'anger': use a probability in \(0, 1\)"):
        classifier.use_thresholds({"anger": 1.2})


def test_predict_prints_the_labels_and_uncertain(tmp_path, capsys):
    decision_model(tmp_path, {"anger": 0.25, "joy": 0.6})
    assert predict_main(["--model", str(tmp_path), "--backend", "torch", "good film"]) == 0
    assert capsys.readouterr().out.startswith("fear;anger 0.300")
    assert predict_main(["--model", str(tmp_path), "--backend", "torch", "--min_confidence", "0.5", "good film"]) == 0
    assert capsys.readouterr().out.startswith("uncertain  0.300")
    assert predict_main(["--model", str(tmp_path), "--backend", "torch", "--threshold", "0.95", "good film"]) == 0
    assert capsys.readouterr().out.startswith("(none)     0.100")  # every label left out; least sure: fear, 1 - 0.9


# --- calibration: the fit, the fold, and what the run records ---


def test_the_temperature_fit_recovers_an_overconfident_models_t():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 3))
    labels = np.array([rng.choice(3, p=p) for p in probabilities(true_logits)])
    assert calibration.fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.08)
    targets = (rng.random((4000, 2)) < probabilities(true_logits[:, :2], True)).astype(int)
    np.testing.assert_allclose(calibration.fit_label_temperatures(true_logits[:, :2] * [0.5, 3.0], targets),
                               [0.5, 3.0], rtol=0.12)  # fmt: skip


def test_folding_divides_the_logits_by_t_and_keeps_the_argmax(tiny_model_dir):
    model = BertForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    batch = load_tokenizer(str(tiny_model_dir))(
        ["good film", "bad film , really bad"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        before = model(**batch).logits.numpy()
        calibration.fold_temperature(model, np.array([2.0, 2.0]))
        after = model(**batch).logits.numpy()
    np.testing.assert_allclose(after, before / 2.0, rtol=1e-5, atol=1e-6)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_thresholds_maximise_each_labels_f1_on_a_hand_made_example():
    probs = np.array([[0.9, 0.2], [0.6, 0.35], [0.4, 0.3], [0.1, 0.8]])
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 1]])
    per_label, global_t = calibration.tune_thresholds(probs, targets)
    # label 0: any cut in (0.4, 0.6] gives F1 1; nearest 0.5 is 0.5. label 1: a cut <= 0.3 catches all three: F1 1
    assert per_label.tolist() == [0.5, 0.3]
    assert global_t == 0.3  # 0.3 is the cut nearest 0.5 at the best macro F1 (label 0: 0.8 there, label 1: 1.0)
    results = calibration.threshold_results(probs, targets, per_label, global_t)
    assert results["per_label"] == {"f1_macro": 1.0, "f1_micro": 1.0}


def test_a_single_label_run_is_calibrated_and_pipeline_returns_the_calibrated_scores(tiny_training):
    run, metrics = tiny_training
    record = json.loads((run / "config.json").read_text())["calibration"]
    assert record["method"] == "temperature" and record["temperature"] == metrics["calibration"]["temperature"]
    ece = metrics["calibration"]["ece"]["validation"]
    assert ece["after"] <= ece["before"] + 1e-9  # fitted on this split: never worse on it
    texts = ["good film , really good", "bad film"]
    scored = pipeline("text-classification", model=str(run), top_k=None, device="cpu")(texts)
    probs = Classifier(run, device="cpu").predict_proba(texts)
    for row, answer in zip(probs, scored):
        by_name = {item["label"]: item["score"] for item in answer}
        np.testing.assert_allclose([by_name["negative"], by_name["positive"]], row, rtol=1e-5)


@pytest.mark.slow  # a training run of its own
def test_calibrate_none_leaves_the_model_as_trained(tiny_model_dir, tmp_path):
    from tests.conftest import make_tiny_data, tiny_args
    from trainer.config import load_config
    from trainer.training.loop import train

    run, metrics = train(load_config(tiny_args(tiny_model_dir, make_tiny_data(tmp_path), tmp_path / "run",
                                               "--calibrate", "none", "--run_analysis", "false")))  # fmt: skip
    assert metrics["calibration"] == {"method": "none"}
    assert "calibration" not in json.loads((run / "config.json").read_text())  # the weights as trained
    assert Classifier(run, device="cpu").temperature.tolist() == [1.0, 1.0]


def test_evaluate_scores_multi_label_data_and_reports_coverage(tiny_multi_run, tmp_path, capsys):
    from tests.conftest import make_multi_label_data
    from trainer.evaluate import main as evaluate_main

    _, dev = make_multi_label_data(tmp_path)
    out = tmp_path / "eval"
    argv = ["--model", str(tiny_multi_run), "--data", str(dev), "--output_dir", str(out), "--n_bootstrap", "10"]
    assert evaluate_main([*argv, "--min_confidence", "0.6"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    frame = pd.read_parquet(out / "predictions.parquet")
    sure = frame["confidence"] >= 0.6
    assert metrics["multi_label"] and metrics["min_confidence"]["answered"] == int(sure.sum())
    assert metrics["min_confidence"]["accuracy"] == pytest.approx(frame["correct"][sure].mean() if sure.any() else 0)
    assert f"{int(sure.sum())} of {len(frame)} texts answered" in printed and printed.startswith("f1 micro ")


def test_evaluate_groups_the_data_with_the_models_label_map(tmp_path):
    from trainer.data import load_labelled

    (tmp_path / "map.json").write_text(json.dumps({"negative": ["anger", "fear"], "positive": ["joy"]}))
    data = pd.DataFrame({"sentence": ["a", "b", "c"], "label": ["anger;fear", "joy", "neutral;joy"]})
    data.to_csv(tmp_path / "d.csv", index=False)
    cfg = DataConfig(label_map=str(tmp_path / "map.json"))
    model_names = ["positive", "negative", "neutral"]  # the model's order need not be the map's
    frame = load_labelled(str(tmp_path / "d.csv"), cfg, model_names, multi=True)
    assert frame["label"].tolist() == [[1], [0], [0, 2]]
    with pytest.raises(UserError, match=r"makes the labels \['negative', 'positive', 'neutral'\], the model's are"):
        load_labelled(str(tmp_path / "d.csv"), cfg, ["positive", "negative", "ambiguous", "neutral"], multi=True)


def test_28_labels_get_28_colours_in_the_plots_and_the_space():
    from trainer.palette import class_colours

    names = [f"emotion {i}" for i in range(28)]
    assert len(set(class_colours(names).values())) == 28
    assert list(class_colours(names[:8]).values())[:2] == ["#0072b2", "#e69f00"]  # up to eight: Okabe-Ito, as before
