"""The Gradio Space with k labels: the pure helpers on five-label inputs, then the app serving a five-label run."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client
from scipy.special import softmax
from transformers import pipeline

from tests.conftest import FIVE_LABELS, ROOT, writable_copy
from trainer.metric_catalogue import record

sys.path.insert(0, str(ROOT / "space"))
import backend  # noqa: E402
import palette  # noqa: E402

COLOURS = dict(zip(FIVE_LABELS, ["#d0473d", "#f7a98b", "#dcdddd", "#9bbcff", "#536edd"]))
LABEL_SET = {"names": FIVE_LABELS, "ordinal": True, "scale": FIVE_LABELS, "positive": FIVE_LABELS[3:],
             "negative": FIVE_LABELS[:2], "colours": COLOURS}  # fmt: skip


def score(value: float) -> dict:
    return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1}


def five_label_metrics(test: bool = False) -> dict:
    """metrics.json of a five-label ordered run: headline, per-class (in id order) and ordinal scores."""
    per_class = {f"{metric}_{name}": score(0.5 + i / 10) for i, name in enumerate(FIVE_LABELS)
                 for metric in ("precision", "recall", "f1")}  # fmt: skip
    # stored as the analysis writes them: accuracy, per class, averages, then the ordinal scores
    scores = {"accuracy": score(0.6), **per_class, "f1_macro": score(0.55), "f1_weighted": score(0.57),
              "mcc": score(0.4), "log_loss": score(1.2), "mae": score(0.5), "qwk": score(0.7),
              "polarity_flips": score(0.05)}  # fmt: skip
    metrics = {"data": "sst5", "eval_samples": 30, "label_set": LABEL_SET, "evaluation": scores,
               "metric_catalogue": record()}  # fmt: skip
    if test:
        metrics.update(test={key: score(s["value"] - 0.05) for key, s in scores.items()}, test_samples=40)
    return metrics


# --- pure helpers ---


def test_the_report_lists_headline_metrics_then_one_row_per_class():
    head = backend.report_headline(five_label_metrics(), "alice/five")
    assert head.startswith("## Accuracy 60.0% (95% CI 50.0%–70.0%)\non the **30** examples of `sst5` · macro F1 0.550")
    assert "**labels (ordered):** very negative < negative < neutral < positive < very positive" in head
    text = backend.metrics_markdown(five_label_metrics(), "alice/five")
    headline, per_class = text.split("**Per class**")
    rows = [line.split(" | ")[0].strip("| ") for line in headline.splitlines() if line.startswith("| ")][1:]
    # the headline scores in the recorded catalogue's order, whatever order metrics.json holds them in; others after
    assert rows == ["accuracy", "f1_macro", "mcc", "log_loss", "mae", "polarity_flips", "qwk", "f1_weighted"]
    assert "| accuracy | 0.600 | 0.500–0.700 |" in headline
    assert "| class | precision | recall | f1 |" in per_class
    assert "| very negative | 0.500 | 0.500 | 0.500 |" in per_class  # a name with a space
    assert "| very positive | 0.900 | 0.900 | 0.900 |" in per_class
    assert [line.split(" | ")[0][2:] for line in per_class.splitlines()[4:]] == FIVE_LABELS


def test_the_report_puts_test_scores_beside_validation_ones_per_class():
    head = backend.report_headline(five_label_metrics(test=True), "alice/five")
    assert "the **30** examples of the validation split of `sst5`" in head
    assert "**Test split:** accuracy 55.0% (95% CI 45.0%–65.0%) on 40 examples" in head
    text = backend.metrics_markdown(five_label_metrics(test=True), "alice/five")
    assert "| accuracy | 0.600 | 0.500–0.700 | 0.550 | 0.450–0.650 |" in text
    assert "| class | precision | recall | f1 | test precision | test recall | test f1 |" in text
    assert "| neutral | 0.700 | 0.700 | 0.700 | 0.650 | 0.650 | 0.650 |" in text


def test_a_run_recorded_before_the_catalogue_shows_every_metric_in_its_recorded_order():
    metrics = five_label_metrics(test=True)
    del metrics["metric_catalogue"]
    headline = backend.metrics_markdown(metrics, "alice/five").split("**Per class**")[0]
    rows = [line.split(" | ")[0].strip("| ") for line in headline.splitlines() if line.startswith("| ")][1:]
    assert rows == ["accuracy", "f1_macro", "f1_weighted", "mcc", "log_loss", "mae", "qwk", "polarity_flips"]
    assert "| mae | 0.500 | 0.400–0.600 | 0.450 | 0.350–0.550 |" in headline  # three decimals, as before


def test_the_report_reads_class_names_from_the_keys_of_older_runs():
    metrics = five_label_metrics()
    del metrics["label_set"]
    head = backend.report_headline(metrics, "alice/five")
    assert "**labels:** very negative, negative, neutral, positive, very positive" in head
    text = backend.metrics_markdown(metrics, "alice/five")
    assert "| recall_very negative |" not in text and "| very negative | 0.500 |" in text


def test_explorer_colours_follow_the_runs_plots():
    assert backend.colour_map({"label_set": LABEL_SET}, FIVE_LABELS) == COLOURS
    # a run without recorded colours: the shared palette (Okabe-Ito for unordered labels, red to blue for ordered
    # ones and for two labels), still one colour per class
    fallback = backend.colour_map({}, ["sports", "politics", "tech"])
    assert list(fallback.values()) == palette.OKABE_ITO[:3]
    ordered = backend.colour_map(
        {"label_set": {"scale": ["bad", "ok", "good"], "ordinal": True}}, ["good", "bad", "ok"]
    )
    assert ordered == {"bad": palette.DIVERGING[0], "ok": palette.DIVERGING[3], "good": palette.DIVERGING[-1]}
    assert backend.colour_map(None, ["negative", "positive"]) == {"negative": "#b2182b", "positive": "#2166ac"}


def test_errors_from_confidence_0_show_a_five_class_models_unsure_mistakes():
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"],
                          "true_label": ["neutral", "very positive", "negative", "positive"],
                          "predicted_label": ["negative", "negative", "very negative", "very positive"],
                          "confidence": [0.2025, 0.31, 0.9, 0.45],
                          "error_types": ["intensifier_hedge;off_by_one", "polarity_flip", "off_by_one", ""],
                          "class_distance": [1, 3, 1, 1]})  # fmt: skip
    assert backend.filter_errors(frame, "all", 0.0)["text"].tolist() == ["a", "b", "c", "d"]
    assert backend.filter_errors(frame, "off_by_one", 0.0)["text"].tolist() == ["a", "c"]
    assert backend.filter_errors(frame, "polarity_flip", 0.0)["class_distance"].tolist() == [3]
    assert backend.filter_errors(frame, "all", 0.5)["text"].tolist() == ["c"]


def test_log_odds_of_the_predicted_class_against_the_other_four():
    logits = np.array([[0.3, -1.0, 2.0, 0.5, 1.5], [4.0, 0.0, 0.0, 0.0, 0.0]])
    probs = softmax(logits, axis=1)
    for target in range(5):
        expected = np.log(probs[:, target] / (1 - probs[:, target]))
        np.testing.assert_allclose(backend.log_odds(logits, target), expected)


def write_behavioural(folder, report) -> backend.Artifacts:
    folder.mkdir()
    (folder / "behavioral_tests.json").write_text(json.dumps(report))
    return backend.Artifacts.read(folder)


def test_behavioural_tests_that_were_skipped_are_listed_with_the_reason(tmp_path):
    reason = "the label names (sports, politics, tech) carry no polarity"
    skipped = [{"name": name, "type": kind, "description": f"{name} test", "reason": reason}
               for name, kind in [("clear_positive", "MFT"), ("clear_negative", "MFT"), ("negated_positive", "MFT"),
                                  ("negated_negative", "MFT"), ("add_not_great", "DIR")]]  # fmt: skip
    only_skipped = {"tests": [], "skipped": skipped, "overall_failure_rate": 0.0, "positive_labels": [],
                    "negative_labels": []}  # fmt: skip
    table = write_behavioural(tmp_path / "skipped", only_skipped).behavioral
    assert table.columns.tolist() == ["name", "type", "status", "n", "failures", "failure_rate", "description"]
    assert table["name"].tolist()[-1] == "add_not_great" and len(table) == 5
    assert set(table["status"]) == {f"skipped: {reason}"} and table["n"].isna().all()

    ran = {"name": "typos", "type": "INV", "description": "typos test", "n": 20, "failures": 3, "failure_rate": 0.15,
           "examples": [{"text": "x"}]}  # fmt: skip
    table = write_behavioural(tmp_path / "mixed", {**only_skipped, "tests": [ran]}).behavioral
    assert table.iloc[0][["name", "status", "n", "failures"]].tolist() == ["typos", "ran", 20, 3]
    assert len(table) == 6

    older = write_behavioural(tmp_path / "older", {"skipped": "behavioural tests need a binary model", "tests": []})
    assert older.behavioral["status"].tolist() == ["skipped: behavioural tests need a binary model"]
    assert write_behavioural(tmp_path / "none", {"tests": [], "skipped": []}).behavioral is None


# --- the app on a five-label run, in its own process ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # starts the app on a five-label run, ~13 s
def test_the_app_serves_a_five_label_model_on_every_endpoint(tiny_five_run, tmp_path):
    from model_card import render_card

    run = writable_copy(tiny_five_run, tmp_path / "run", "checkpoints")
    (run / "README.md").write_text(render_card(run, "alice/five"))
    port = free_port()
    env = {**os.environ, "MODEL_ID": str(run), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT / "space", env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        client, deadline = None, time.monotonic() + 180
        while client is None and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read())
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        assert client is not None, "the app did not answer within 180 s"

        # /predict: all five classes, named as the run names them, agreeing with the pipeline offline
        text = "good film , really good"
        result = client.predict(text, api_name="/predict")
        served = {c["label"]: c["confidence"] for c in result["confidences"]}
        assert sorted(served) == sorted(FIVE_LABELS) and sum(served.values()) == pytest.approx(1.0, abs=1e-4)
        offline = pipeline("text-classification", model=str(run), top_k=None)([text])[0]
        assert served == pytest.approx({r["label"]: r["score"] for r in offline}, abs=1e-4)

        words, note = client.predict(text, api_name="/explain")
        spans = re.findall(r'data-class="([\w ]+)"[^>]*>([^<]*)</span>', words)
        assert [word for _, word in spans] == ["good", "film", ",", "really", "good"]
        assert {name for name, _ in spans} <= set(FIVE_LABELS)
        assert note.startswith(f"### {result['label']}\nprobability ") and "occlusion" in note

        table, csv_path = client.predict("good film\nworst film\nplot film", None, api_name="/batch")
        assert table["headers"] == ["text", "label", "confidence", *(f"p_{name}" for name in FIVE_LABELS)]
        downloaded = pd.read_csv(csv_path)
        np.testing.assert_allclose(downloaded.filter(like="p_").sum(1), 1.0, atol=1e-3)

        colours = json.loads((run / "metrics.json").read_text())["label_set"]["colours"]
        plot, neighbours, note = client.predict("best film , really best", "true label", 4, api_name="/explore")
        traces = json.loads(plot["plot"])["data"]
        stored = pd.read_parquet(run / "embeddings.parquet")
        by_class = {t["name"].split(" (")[0]: t for t in traces[:-2]}  # then the neighbours and your sentence
        assert {name: len(t["x"]) for name, t in by_class.items()} == stored["label"].value_counts().to_dict()
        assert {name: t["marker"]["color"] for name, t in by_class.items()} == {n: colours[n] for n in by_class}
        assert traces[-1]["name"].startswith("your sentence") and len(traces[-2]["x"]) == 4
        assert len(neighbours["data"]) == 4 and "cosine" in note
        plot, _, _ = client.predict("", "predicted label", 4, api_name="/explore")
        assert {t["name"].split(" (")[0] for t in json.loads(plot["plot"])["data"]} <= set(FIVE_LABELS)
        exported = pd.read_csv(client.predict(api_name="/export_selection"))
        assert len(exported) == len(stored)  # no sentence: every plotted point

        wrong = pd.read_csv(run / "incorrect_predictions.csv", keep_default_na=False)
        assert len(client.predict("all", 0.0, api_name="/errors")["data"]) == len(wrong)
        # an error type this run's mistakes carry (a tiny model's near-ties decide which)
        tag = sorted({t for tags in wrong["error_types"] for t in tags.split(";") if t})[0]
        tagged = client.predict(tag, 0.0, api_name="/errors")
        assert len(tagged["data"]) == wrong["error_types"].str.split(";").apply(lambda tags: tag in tags).sum()

        # The page itself: the slider starts at 0, the report has a class table.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config") as response:
            components = json.load(response)["components"]
        props = [c.get("props", {}) for c in components]
        assert next(p for p in props if p.get("label") == "Minimum confidence")["value"] == 0
        report = next(p["value"] for p in props if "**Per class**" in str(p.get("value")))
        assert "| very negative |" in report and "| qwk |" in report
    finally:
        proc.terminate()
        proc.wait(timeout=30)
