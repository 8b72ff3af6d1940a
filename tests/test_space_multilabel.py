"""The Gradio Space with a multi-label model: independent bars per label with their thresholds, the labels over
threshold named, explanations for a chosen label, "uncertain" below a minimum confidence, the explorer, the error
browser's missed / added filter, the report's thresholds, calibration and coverage, and the JSON API.

The model folder is a tiny BERT (random weights, its classifier scaled so scores spread) with four emotion labels,
`problem_type: multi_label_classification` and per-label `decision_thresholds`; its analysis files are written here
as the contract describes them, from the model's own scores."""

import importlib.util
import json
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from tests.conftest import ROOT, WORDS

sys.path.insert(0, str(ROOT / "space"))
import backend  # noqa: E402

EMOTIONS = ["joy", "anger", "sadness", "relief"]
TEXTS = [f"{a} {b} , really {c}" for a, b, c in zip(WORDS[:24], WORDS[5:29], WORDS[3:27])]


def logits_of(folder, texts: list[str]) -> np.ndarray:
    """The model's logits straight from transformers, the reference every answer is checked against."""
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.double().numpy()


def expected(probs: np.ndarray, thresholds: np.ndarray, labels=EMOTIONS) -> tuple[list[list[str]], np.ndarray]:
    """The labels at or over their thresholds (most probable first) and the contract's confidence, by hand."""
    chosen = probs >= thresholds
    names = [[labels[j] for j in np.argsort(-row, kind="stable") if pick[j]] for row, pick in zip(probs, chosen)]
    return names, np.where(chosen, probs, 1 - probs).min(1)


def write_model(folder) -> np.ndarray:
    """A tiny four-emotion multi-label BERT in `folder`; returns its thresholds (each label's median score over
    TEXTS, so about half the texts get each label)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, problem_type="multi_label_classification",
                        id2label=dict(enumerate(EMOTIONS)),
                        label2id={n: i for i, n in enumerate(EMOTIONS)})  # fmt: skip
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(60)  # random weights give scores near 0.5; these spread them over (0, 1)
    model.save_pretrained(folder)
    thresholds = np.round(np.median(expit(logits_of(folder, TEXTS)), axis=0), 3)
    config.decision_thresholds = dict(zip(EMOTIONS, map(float, thresholds)))
    config.calibration = {"method": "temperature", "temperature": dict.fromkeys(EMOTIONS, 1.0),
                          "fitted_on": "validation"}  # fmt: skip
    config.save_pretrained(folder)
    return thresholds


def score(value: float) -> dict:
    return {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05}


def multi_metrics(thresholds: np.ndarray) -> dict:
    """metrics.json of a multi-label run, with the keys the contract names (figures made up, checked as shown)."""
    per_label = {f"{m}_{name}": score(0.4 + i / 10) for i, name in enumerate(EMOTIONS)
                 for m in ("precision", "recall", "f1", "roc_auc", "pr_auc")}  # fmt: skip
    per_label.update({f"support_{name}": {"value": 10 + i} for i, name in enumerate(EMOTIONS)})
    scores = {"f1_micro": score(0.61), "f1_macro": score(0.52), "subset_accuracy": score(0.3),
              "hamming_loss": score(0.2), "ece": score(0.04), **per_label}  # fmt: skip
    catalogue = [{"key": "accuracy", "headline": True, "task": "single"},
                 {"key": "f1_macro", "headline": True, "task": "both"},
                 {"key": "f1_micro", "headline": True, "task": "multi"},
                 {"key": "subset_accuracy", "headline": True, "format": "percent", "digits": 1, "task": "multi"},
                 {"key": "hamming_loss", "headline": True, "task": "multi"}]  # fmt: skip
    points = [{"coverage": c / 10, "accuracy": 1 - c / 20, "min_confidence": 0.9 - c / 20} for c in range(1, 11)]
    return {
        "data": "tiny-emotions", "eval_samples": len(TEXTS), "multi_label": True, "evaluation": scores,
        "label_set": {"names": EMOTIONS}, "metric_catalogue": catalogue,
        "thresholds": {"per_label": dict(zip(EMOTIONS, map(float, thresholds))), "global": 0.35,
                       "tuned_on": "validation", "objective": "F1 per label",
                       "results": {"validation": {"per_label": {"f1_macro": 0.52, "f1_micro": 0.61},
                                                  "global": {"f1_macro": 0.47, "f1_micro": 0.6},
                                                  "0.5": {"f1_macro": 0.31, "f1_micro": 0.44}}}},
        "calibration": {"method": "temperature", "temperature": dict.fromkeys(EMOTIONS, 1.0),
                        "ece": {"validation": {"before": 0.081, "after": 0.023},
                                "test": {"before": 0.09, "after": 0.03}}},
        "risk_coverage": {"points": points, "aurc": 0.123, "accuracy_measure": "subset_accuracy"},
    }  # fmt: skip


def write_analysis(folder, thresholds: np.ndarray) -> None:
    """predictions.parquet, embeddings.parquet, incorrect_predictions.csv and metrics.json for TEXTS, with true
    labels that differ from the predictions on some texts (missed and extra labels)."""
    sys.path.insert(0, str(ROOT / "space"))
    from inference import Classifier

    model = Classifier(folder, device="cpu")
    scored = model.score(TEXTS, embeddings=True)
    probs, chosen = scored.probs, model.decide(scored.probs)
    truth = chosen.copy()
    truth[::3, 0] = ~truth[::3, 0]  # every third text: joy flipped (missed or extra)
    truth[1::4, 2] = ~truth[1::4, 2]
    join = lambda row: ";".join(EMOTIONS[j] for j in np.flatnonzero(row))  # noqa: E731
    frame = pd.DataFrame({"text": TEXTS, "label": [join(r) for r in truth], "predicted": [join(r) for r in chosen],
                          "confidence": model.confidence(probs), "correct": (truth == chosen).all(1),
                          "missed": [join(r) for r in truth & ~chosen], "extra": [join(r) for r in chosen & ~truth],
                          "top_label": [EMOTIONS[i] for i in probs.argmax(1)],
                          **{f"p_{n}": probs[:, j] for j, n in enumerate(EMOTIONS)}})  # fmt: skip
    frame.to_parquet(folder / "predictions.parquet")
    embedded = frame[["text", "label", "predicted", "correct", "top_label"]].copy()
    embedded["embedding"] = list(scored.embeddings)
    embedded.to_parquet(folder / "embeddings.parquet")
    wrong = frame[~frame["correct"]].rename(columns={"label": "true_labels", "predicted": "predicted_labels"})
    wrong = wrong.assign(error_types=np.where(wrong["missed"] != "", "missed_label", "extra_label"))
    wrong[["text", "true_labels", "predicted_labels", "missed", "extra", "confidence", "error_types"]].to_csv(
        folder / "incorrect_predictions.csv", index=False
    )
    (folder / "metrics.json").write_text(json.dumps(multi_metrics(thresholds)))


def make_multi_folder(folder) -> np.ndarray:
    """A tiny multi-label model folder with its analysis files in `folder`; returns its thresholds."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    thresholds = write_model(folder)
    write_analysis(folder, thresholds)
    return thresholds


@pytest.fixture(scope="module")
def multi_folder(tmp_path_factory):
    """A tiny multi-label model folder with its analysis files: (folder, thresholds)."""
    folder = tmp_path_factory.mktemp("tiny-multi")
    return folder, make_multi_folder(folder)


def load_app(folder, name: str):
    """The Space's app module for `folder`, loaded under its own `name` (the single-label app of `app_client` keeps
    its module)."""
    before = os.environ.get("MODEL_ID")
    os.environ["MODEL_ID"] = str(folder)
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "space" / "app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
    finally:
        if before is None:
            os.environ.pop("MODEL_ID")
        else:
            os.environ["MODEL_ID"] = before
    return app


@pytest.fixture(scope="module")
def multi_app(multi_folder):
    """The app for the multi-label folder, serving on 127.0.0.1: (app module, URL)."""
    app = load_app(multi_folder[0], "app_multi")
    server, url = app.serve(port=0)
    yield app, url
    server.should_exit = True


def bars(html: str) -> list[dict]:
    """The rows of the label bars, as their data- attributes carry them."""
    found = re.findall(r'data-label="([^"]+)" data-score="([\d.]+)" data-threshold="([\d.]+)" data-chosen="(\w+)"',
                       html)  # fmt: skip
    return [{"label": n, "score": float(s), "threshold": float(t), "chosen": c == "true"} for n, s, t, c in found]


# --- Predict ---


def test_predict_shows_a_bar_per_label_with_its_threshold_and_names_the_labels_over_it(multi_folder, multi_app):
    folder, thresholds = multi_folder
    app, _ = multi_app
    assert app.MULTI and app.MODEL.thresholds.tolist() == thresholds.tolist()
    probs = expit(logits_of(folder, TEXTS))
    names, _ = expected(probs, thresholds)
    assert any(names) and not all(names) and any(len(n) > 1 for n in names)  # texts with none, one and several
    for text, row, chosen in zip(TEXTS[:8], probs, names):
        shown = bars(app.predict(text))
        assert [b["label"] for b in shown] == [EMOTIONS[j] for j in np.argsort(-row, kind="stable")]
        assert {b["label"]: b["score"] for b in shown} == pytest.approx(dict(zip(EMOTIONS, row)), abs=1e-4)
        assert {b["label"]: b["threshold"] for b in shown} == dict(zip(EMOTIONS, thresholds))
        assert [b["label"] for b in shown if b["chosen"]] == chosen
        _, note = app.explain(text)
        heading = note.splitlines()[0]
        assert heading == "### " + (", ".join(chosen) or "no label over its threshold")


def test_explanations_are_for_the_chosen_label_and_default_to_the_top_one(multi_folder, multi_app):
    folder, _ = multi_folder
    app, _ = multi_app
    text = "good film , really boring"
    probs = expit(logits_of(folder, [text]))[0]
    top = EMOTIONS[int(probs.argmax())]
    words, note = app.explain(text)
    assert f"push **{top}**" in note
    assert set(re.findall(r'data-class="([^"]+)"', words)) <= {top, f"not {top}"}
    other = next(name for name in EMOTIONS if name != top)
    words, note = app.explain(text, 0.0, other)
    assert f"push **{other}** ({probs[EMOTIONS.index(other)]:.1%})" in note
    # occlusion for that label: its logit without the word against with it, by hand for the first word
    spans = re.findall(r'data-class="([^"]+)" data-weight="([-\d.]+)"', words)
    assert len(spans) == 5 and {name for name, _ in spans} <= {other, f"not {other}"}
    j = EMOTIONS.index(other)
    full, without = logits_of(folder, [text, "film , really boring"])[:, j]
    assert spans[0][0] == (other if full - without >= 0 else f"not {other}")


# --- min_confidence: Predict, Batch ---


def test_below_the_minimum_confidence_the_answer_is_uncertain_and_nowhere_else(multi_folder, multi_app):
    folder, thresholds = multi_folder
    app, _ = multi_app
    names, confidence = expected(expit(logits_of(folder, TEXTS)), thresholds)
    cut = float(np.median(confidence))
    assert (confidence < cut).any() and (confidence >= cut).any()
    table, csv_path = app.score_batch("\n".join(TEXTS), None, cut)
    rows = table.data
    assert list(rows.columns) == ["text", "labels", "confidence", *(f"p_{n}" for n in EMOTIONS)]
    want = ["uncertain" if c < cut else ";".join(n) for c, n in zip(confidence, names)]
    assert rows["labels"].tolist() == want
    assert rows["confidence"].tolist() == pytest.approx(confidence.round(4).tolist(), abs=1e-4)
    assert pd.read_csv(csv_path, keep_default_na=False)["labels"].tolist() == want
    # the same texts with no minimum: every text answered
    assert app.score_batch("\n".join(TEXTS), None, 0.0)[0].data["labels"].tolist() == [";".join(n) for n in names]
    # Predict: the heading says uncertain, with the best guess, only below the minimum
    for text, sure, chosen in zip(TEXTS[:6], confidence, names):
        heading = app.explain(text, cut)[1]
        if sure < cut:
            assert heading.startswith("### uncertain\n")
            assert f"best guess: **{', '.join(chosen) or 'no label'}**" in heading
        else:
            assert heading.startswith("### " + (", ".join(chosen) or "no label over its threshold") + "\n")


# --- Explorer, Errors, Report ---


def test_the_explorer_colours_by_top_label_and_lists_neighbours_at_three_decimals(multi_folder, multi_app):
    folder, _ = multi_folder
    app, _ = multi_app
    assert list(app.COLOR_BY) == ["top label", "exact match or not"]
    figure, neighbours, note, _ = app.explore("good film , really good", "top label", 5)
    stored = pd.read_parquet(folder / "embeddings.parquet")
    traces = {t.name.split(" (")[0]: t for t in figure.data[:-2]}
    assert {n: len(t.x) for n, t in traces.items()} == stored["top_label"].value_counts().to_dict()
    assert {n: t.marker.color for n, t in traces.items()} == {n: app.COLOURS[n] for n in traces}
    assert len(set(app.COLOURS.values())) == len(EMOTIONS)
    sims = neighbours["similarity"].tolist()
    assert len(sims) == 5 and all(s == round(s, 3) for s in sims) and sims == sorted(sims, reverse=True)
    assert "nearest neighbours" in figure.data[-2].name and figure.data[-1].name.startswith("your sentence")


def test_the_error_browser_filters_texts_where_a_label_was_missed_or_added(multi_folder, multi_app):
    folder, _ = multi_folder
    app, _ = multi_app
    wrong = pd.read_csv(folder / "incorrect_predictions.csv", keep_default_na=False)
    assert wrong["missed"].str.contains("joy").any() and wrong["extra"].str.contains("joy").any()
    for how, column in (("was missed", "missed"), ("was added", "extra")):
        shown = app.browse_errors("all", 0.0, "joy", how).data
        tagged = wrong[column].str.split(";").apply(lambda names: "joy" in names)
        assert shown["text"].tolist() == wrong.loc[tagged, "text"].tolist()
        assert all("joy" in cell for cell in shown["missed" if column == "missed" else "added"])
    either = app.browse_errors("all", 0.0, "joy", "was missed or added").data
    assert len(either) == wrong[["missed", "extra"]].apply(lambda c: c.str.contains("joy")).any(axis=1).sum()
    everything = app.browse_errors("all", 0.0, backend.ANY_LABEL, "was missed").data
    assert list(everything.columns[:5]) == ["true labels", "predicted", "missed", "added", "confidence"]
    assert len(everything) == len(wrong) and everything.columns[-1] == "text"
    none = wrong["predicted_labels"] == ""  # a text given no label says so, not an empty cell
    assert none.any() and (everything.loc[none.to_numpy(), "predicted"] == "(none)").all()


def test_the_report_shows_multi_label_metrics_thresholds_calibration_and_coverage(multi_folder):
    folder, thresholds = multi_folder
    metrics = json.loads((folder / "metrics.json").read_text())
    head = backend.report_headline(metrics, str(folder))
    assert head.startswith("## Macro F1 0.520 (95% CI 0.470–0.570)\non the **24** examples of `tiny-emotions`")
    assert "micro F1 0.610 · exact match 30.0%" in head and "several labels per text" in head
    table = backend.metrics_markdown(metrics, str(folder))
    rows = [line.split(" | ")[0].strip("| ") for line in table.split("**Per label**")[0].splitlines()
            if line.startswith("| ")][1:]  # fmt: skip
    assert rows == ["f1_macro", "f1_micro", "subset_accuracy", "hamming_loss", "ece"]  # the multi-label catalogue
    assert "| subset_accuracy | 30.0% |" in table
    assert "| label | threshold | precision | recall | f1 | support | roc_auc | pr_auc |" in table
    assert f"| sadness | {thresholds[2]:.2f} | 0.600 | 0.600 | 0.600 | 12 | 0.600 | 0.600 |" in table
    decisions = backend.decisions_markdown(metrics)
    assert "| per-label thresholds | 0.520 | 0.610 |" in decisions
    assert "| one global threshold (0.35) | 0.470 | 0.600 |" in decisions
    assert "| 0.5 for every label | 0.310 | 0.440 |" in decisions
    assert "| validation | 0.081 | 0.023 |" in decisions and "| test | 0.090 | 0.030 |" in decisions
    assert "at 90% coverage: **55.0% exact-match accuracy**" in decisions and "| 90% | 55.0% | 0.450 |" in decisions
    # an older run records none of them: nothing to show, no error
    assert backend.decisions_markdown({"evaluation": {}}) == "" and backend.decisions_markdown(None) == ""
    per_split = {"validation": metrics["risk_coverage"], "test": metrics["risk_coverage"]}
    assert backend.decisions_markdown({"risk_coverage": per_split}).count("at 90% coverage") == 2


def test_twenty_eight_labels_get_twenty_eight_colours():
    names = [f"emotion{i}" for i in range(28)]
    colours = backend.colour_map({"label_set": {"names": names}}, names)  # Okabe-Ito alone would repeat after 8
    assert len(set(colours.values())) == 28
    assert backend.colour_map(None, ["a", "b", "c"]) == dict(zip("abc", ["#0072b2", "#e69f00", "#009e73"]))


# --- the JSON API ---


def post(url: str, body) -> tuple[int, object]:
    import httpx

    sent = httpx.post(url + "api/classify", json=body, timeout=30)
    return sent.status_code, sent.json()


def test_the_json_api_answers_a_multi_label_model_with_the_labels_over_threshold(multi_folder, multi_app):
    folder, thresholds = multi_folder
    _, url = multi_app
    probs = expit(logits_of(folder, TEXTS))
    names, confidence = expected(probs, thresholds)
    status, answer = post(url, {"inputs": TEXTS})
    assert status == 200 and len(answer) == len(TEXTS)
    assert [a["labels"] for a in answer] == names
    assert [a["label"] for a in answer] == [";".join(n) for n in names]
    assert [a["score"] for a in answer] == pytest.approx(confidence.tolist(), abs=1e-5)
    assert answer[0]["thresholds"] == pytest.approx(dict(zip(EMOTIONS, thresholds)))
    assert answer[0]["probabilities"] == pytest.approx(dict(zip(EMOTIONS, probs[0])), abs=1e-5)
    assert list(answer[0]["probabilities"].values()) == sorted(answer[0]["probabilities"].values(), reverse=True)
    cut = float(np.median(confidence))
    status, answer = post(url, {"inputs": TEXTS, "parameters": {"min_confidence": cut}})
    assert status == 200
    assert [a["label"] for a in answer] == ["uncertain" if c < cut else ";".join(n) for c, n in zip(confidence, names)]
    assert [a.get("best_guess") for a in answer] == [n if c < cut else None for c, n in zip(confidence, names)]
    status, top = post(url, {"inputs": TEXTS[0], "parameters": {"top_k": 2}})
    assert status == 200 and list(top[0]["probabilities"]) == [EMOTIONS[j] for j in np.argsort(-probs[0])[:2]]


@pytest.mark.parametrize(
    ("parameters", "status", "message"),
    [
        ({"min_confidence": 1.5}, 422, "parameters.min_confidence 1.5: use a probability in [0, 1)"),
        ({"min_confidence": 1}, 422, "parameters.min_confidence 1: use a probability in [0, 1)"),
        ({"min_confidence": -0.1}, 422, "parameters.min_confidence -0.1: use a probability in [0, 1)"),
        ({"min_confidence": "high"}, 422, "parameters.min_confidence must be a number in [0, 1), not 'high'"),
    ],
)
def test_the_json_api_rejects_a_min_confidence_outside_0_1_with_422_and_one_line(multi_app, parameters, status,
                                                                                 message):  # fmt: skip
    _, url = multi_app
    got, answer = post(url, {"inputs": "good film", "parameters": parameters})
    assert got == status and set(answer) == {"error"}
    assert message in answer["error"] and "\n" not in answer["error"]
    got, answer = post(url, {"inputs": "good film", "min_confidence": 0.5})  # not where it goes: said, not ignored
    assert got == 400 and "min_confidence goes in parameters" in answer["error"]


def test_the_report_reads_the_test_splits_coverage_beside_validations(multi_folder, tmp_path):
    folder, _ = multi_folder
    metrics = json.loads((folder / "metrics.json").read_text())
    assert backend.coverage_curves(tmp_path, metrics) == {"validation": metrics["risk_coverage"]}
    (tmp_path / "evaluations" / "test").mkdir(parents=True)
    test_curve = {**metrics["risk_coverage"], "aurc": 0.2}
    (tmp_path / "evaluations" / "test" / "metrics.json").write_text(json.dumps({"risk_coverage": test_curve}))
    curves = backend.coverage_curves(tmp_path, metrics)
    assert curves == {"validation": metrics["risk_coverage"], "test": test_curve}
    shown = backend.decisions_markdown(metrics, curves)
    assert "**validation**: at 90% coverage" in shown and "**test**: at 90% coverage" in shown
    assert backend.coverage_curves(tmp_path, {}) is None


def test_the_report_puts_the_confusion_matrix_alone_in_its_row():
    plots = dict.fromkeys(["training_curves", "reliability_diagram", "confusion_matrix", "risk_coverage",
                           "label_cooccurrence", "per_label_f1", "embeddings_pca"])  # fmt: skip
    rows = [["confusion_matrix"], ["per_label_f1"], ["label_cooccurrence"], ["reliability_diagram", "risk_coverage"],
            ["training_curves"]]  # fmt: skip
    assert backend.report_plot_rows(plots) == rows
    assert backend.report_plot_rows({"reliability_diagram": None}) == [["reliability_diagram"]]


def test_labels_that_carry_polarity_colour_the_explorer_by_the_top_labels_side():
    label_set = {"names": EMOTIONS, "positive": ["joy", "relief"], "negative": ["anger", "sadness"]}
    sides = backend.polarity_sides({"label_set": label_set}, EMOTIONS)
    assert sides == {"joy": "positive", "anger": "negative", "sadness": "negative", "relief": "positive"}
    assert backend.polarity_sides({"label_set": {"names": EMOTIONS, "positive": [], "negative": []}}, EMOTIONS) is None
    top = ["joy", "anger", "relief", "sadness", "joy"]
    points = pd.DataFrame({"x": range(5), "y": range(5), "text": list("abcde"), "label": top, "predicted": top,
                           "confidence": 0.9, "correct": [True, False, True, True, True],
                           "side": [sides[name] for name in top]})  # fmt: skip
    figure = backend.explorer_figure(points, "side", {}, ["PC1", "PC2"])
    traces = {t.name.split(" (")[0]: t for t in figure.data}
    assert {n: len(t.x) for n, t in traces.items()} == {"negative": 2, "positive": 3}
    assert {n: t.marker.color for n, t in traces.items()} == {n: backend.SIDE_COLOURS[n] for n in traces}


def test_a_program_sending_a_min_confidence_outside_0_1_gets_one_line(multi_app):
    import gradio as gr

    app, _ = multi_app
    for call in (lambda: app.score_batch("good film", None, 1.5), lambda: app.explain("good film", -0.2)):
        with pytest.raises(gr.Error, match=r"min_confidence .*: use a probability in \[0, 1\)"):
            call()


# --- a trained multi-label run (conftest's tiny_multi_run: joy, anger, fear, neutral) ---


@pytest.mark.slow  # trains the tiny multi-label run when no other test has (~30 s)
def test_the_app_serves_a_trained_multi_label_run_as_pipeline_and_its_thresholds_decide(tiny_multi_run):
    from transformers import pipeline

    app = load_app(tiny_multi_run, "app_multi_run")
    config = json.loads((tiny_multi_run / "config.json").read_text())
    thresholds = config["decision_thresholds"]
    texts = ["good film , really good", "awful and dull film", "plot film , really plot", "fun and worst film"]
    offline = pipeline("text-classification", model=str(tiny_multi_run), top_k=None)(texts)  # a sigmoid per label
    for text, scores in zip(texts, offline):
        shown = {b["label"]: b for b in bars(app.predict(text))}
        assert {n: b["score"] for n, b in shown.items()} == pytest.approx({r["label"]: r["score"] for r in scores},
                                                                          abs=1e-4)  # fmt: skip
        chosen = [r["label"] for r in scores if r["score"] >= thresholds[r["label"]]]  # the documented rule
        assert sorted(n for n, b in shown.items() if b["chosen"]) == sorted(chosen)
        assert app.explain(text)[1].splitlines()[0] == "### " + (", ".join(chosen) or "no label over its threshold")
    # the run's own files: the report, the explorer, the errors
    metrics = json.loads((tiny_multi_run / "metrics.json").read_text())
    head = backend.report_headline(metrics, str(tiny_multi_run))
    assert head.startswith(f"## Macro F1 {metrics['evaluation']['f1_macro']['value']:.3f}")
    assert "| per-label thresholds |" in backend.decisions_markdown(metrics) and "ECE before" in (
        backend.decisions_markdown(metrics))  # fmt: skip
    assert [row for row in backend.report_plot_rows(app.ART.plots) if "per_label_f1" in row] == [["per_label_f1"]]
    figure, neighbours, _, _ = app.explore("good film", next(iter(app.COLOR_BY)), 4)
    stored = pd.read_parquet(tiny_multi_run / "embeddings.parquet")
    assert sum(len(t.x) for t in figure.data[:-2]) == len(stored) and len(neighbours) == 4
    wrong = pd.read_csv(tiny_multi_run / "incorrect_predictions.csv", keep_default_na=False)
    extra = wrong["extra"].str.split(";")
    label = next(name for name in app.MODEL.labels if any(name in names for names in extra))
    added = app.browse_errors("all", 0.0, label, "was added").data
    assert len(added) == sum(label in names for names in extra) > 0


def test_moving_the_slider_or_the_label_before_typing_changes_nothing(multi_app):
    app, _ = multi_app
    assert app.explain_again("  ", 0.5, "joy") == ({"__type__": "update"},) * 2  # gr.skip(): no error, no change
    words, note = app.explain_again("good film", 0.0, "joy")
    assert "push **joy**" in note and 'data-class="' in words
