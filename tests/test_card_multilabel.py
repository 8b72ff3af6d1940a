"""The card of a multi-label model, and the calibration and coverage sections every model's card gets: written from
a hand-made run folder (a tiny 4-label BERT with its thresholds in config.json, metrics.json as the analysis writes
it), with usage snippets that run and give the labels `Classifier.predict` gives."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from model_card import render_card
from model_card.render import widget_examples
from tests.conftest import ROOT, writable_copy
from tests.hub_server import validate_card
from trainer.inference import Classifier
from trainer.metric_catalogue import record

LABELS = ["joy", "relief", "anger", "neutral"]
JS = ROOT / "tests" / "js"
TEXTS = ["Thank you so much, this is such a relief!", "I can't believe they cancelled it again."]  # the card's
SPLITS = ("evaluation", "test")
CATALOGUE = record(multi_label=True)  # as metrics.json records it for a multi-label run
HEADLINE = {"f1_micro": 0.61, "f1_macro": 0.47, "subset_accuracy": 0.42, "hamming_loss": 0.081, "pr_auc": 0.52,
            "ece": 0.012}  # fmt: skip
THRESHOLD_RESULTS = {
    "validation": {"per_label": {"f1_macro": 0.49, "f1_micro": 0.62}, "global": {"f1_macro": 0.45, "f1_micro": 0.61},
                   "0.5": {"f1_macro": 0.38, "f1_micro": 0.57}},
    "test": {"per_label": {"f1_macro": 0.47, "f1_micro": 0.61}, "global": {"f1_macro": 0.44, "f1_micro": 0.6},
             "0.5": {"f1_macro": 0.37, "f1_micro": 0.56}},
}  # fmt: skip
TEMPERATURES = {"joy": 1.31, "relief": 0.92, "anger": 1.58, "neutral": 1.12}


def score(value: float, width: float = 0.05) -> dict:
    return {"value": value, "ci_low": value - width, "ci_high": value + width}


def curve(at_90: float, at_100: float, measure: str) -> dict:
    """A risk-coverage curve whose accuracy falls linearly to `at_90` at 0.9 coverage and `at_100` at 1.0; its cut-offs
    (0.5509 at 0.9) show as 0.550, rounded down: 0.551 would answer fewer texts than the coverage says."""
    points = [{"coverage": c / 10, "accuracy": 1 - (1 - at_90) * c / 9 if c < 10 else at_100,
               "min_confidence": round(1 - c / 20, 2) + 0.0009} for c in range(1, 11)]  # fmt: skip
    return {"points": points, "aurc": 0.1, "accuracy_measure": measure}


def thresholds_with_margin(probs: np.ndarray) -> dict:
    """Thresholds far from every score (no float noise decides): joy below both texts' scores, anger above both, and
    relief and neutral midway between the two texts' scores, chosen for the text that scores higher."""
    low, high = probs.min(0), probs.max(0)
    out = dict(zip(LABELS, map(float, [low[0] / 2, (low[1] + high[1]) / 2, (high[2] + 1) / 2, (low[3] + high[3]) / 2])))
    assert all(abs(probs[:, j] - out[name]).min() > 0.005 for j, name in enumerate(LABELS)), probs
    return out


def multi_label_metrics() -> dict:
    per_label = {}
    for i, name in enumerate(LABELS):
        per_label |= {f"precision_{name}": score(0.5 + i / 20), f"recall_{name}": score(0.4 + i / 20),
                      f"f1_{name}": score(0.45 + i / 20), f"support_{name}": {"value": 10 * (i + 1)}}  # fmt: skip
    scores = {key: score(value) for key, value in HEADLINE.items()} | per_label
    counts = {name: 5 * (i + 1) for i, name in enumerate(LABELS)}
    return {
        "multi_label": True, "base_model": None, "train_samples": 100, "eval_samples": 40, "test_samples": 40,
        "label_set": {"names": LABELS, "ordinal": False, "scale": None, "positive": [], "negative": []},
        "metric_catalogue": CATALOGUE, "evaluation": scores, "test": scores, "global_step": 6, "train_runtime": 1.0,
        "label_counts": {"train": counts, "eval": counts, "test": counts},
        "thresholds": {"per_label": {}, "global": 0.35, "tuned_on": "validation", "objective": "F1 of each label",
                       "results": THRESHOLD_RESULTS},
        "calibration": {"method": "temperature", "temperature": TEMPERATURES,
                        "ece": {"validation": {"before": 0.041, "after": 0.012},
                                "test": {"before": 0.044, "after": 0.017}}},
        "risk_coverage": {"validation": curve(0.55, 0.42, "subset_accuracy"),
                          "test": curve(0.53, 0.4, "subset_accuracy")},
    }  # fmt: skip


def write_run(folder: Path) -> None:
    """A 4-label tiny BERT (its vocabulary the card's example words, taught in a few steps that the first text is joy
    and relief, the second joy and neutral) saved as a finished multi-label run: thresholds and calibration in
    config.json, metrics.json as the analysis writes it."""
    words = sorted({word for text in TEXTS for word in re.findall(r"\w+|[^\w\s]", text.lower())})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
        problem_type="multi_label_classification",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):  # a random tiny BERT scores every text alike; a few steps tell these two apart
        optimizer.zero_grad()
        model(**inputs, labels=torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 1]])).loss.backward()
        optimizer.step()
    model.eval().save_pretrained(folder)
    with torch.inference_mode():
        probs = model(**inputs).logits.sigmoid().numpy()
    saved = json.loads((folder / "config.json").read_text())
    saved["decision_thresholds"] = thresholds_with_margin(probs)
    saved["calibration"] = {"method": "temperature", "temperature": TEMPERATURES, "fitted_on": "validation"}
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    (folder / "metrics.json").write_text(json.dumps(multi_label_metrics()))
    (folder / "train_config.yaml").write_text(
        "model_name_or_path: tiny-bert\ntrain_file: train.jsonl\nvalidation_file: dev.jsonl\n"
        "test_file: test.jsonl\nmax_length: 64\nseed: 42\n"
    )
    (folder / "plots").mkdir()
    (folder / "plots" / "risk_coverage.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "onnx").mkdir()  # the int8 check a push makes: the card then shows the ONNX snippets
    (folder / "onnx" / "int8_check.json").write_text(json.dumps({"texts": 40}))
    pd.DataFrame({"text": ["so glad it is over", "meh"], "true_labels": ["joy;relief", "neutral"],
                  "predicted_labels": ["joy", "anger;neutral"], "missed": ["relief", ""], "extra": ["", "anger"],
                  "confidence": [0.93, 0.61], "error_types": ["missed_label", "extra_label"]}
                 ).to_csv(folder / "incorrect_predictions.csv", index=False)  # fmt: skip
    (folder / "behavioral_tests.json").write_text(json.dumps({"tests": [], "skipped": [
        {"name": "clear_positive", "type": "MFT", "reason": "the labels carry no polarity (no --label_map grouping)"}
    ]}))  # fmt: skip


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi") / "run"
    folder.mkdir()
    write_run(folder)
    return folder


def table(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header`, one list per body row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_multi_label_card_validates_with_micro_and_macro_f1_in_the_model_index(multi_run):
    text = render_card(multi_run, "alice/emotions")
    assert validate_card(text) is None
    data = ModelCard(text).data
    assert data.pipeline_tag == "text-classification" and "multi-label-classification" in data.tags
    results = {(r.metric_type, (r.metric_args or {}).get("average")): r for r in data.eval_results}
    assert set(results) == {("f1", "micro"), ("f1", "macro"), ("exact_match", None)}  # those metrics.json has
    assert results[("f1", "micro")].metric_value == 0.61 and results[("f1", "macro")].dataset_split == "test"
    assert data.metrics == ["f1", "precision", "recall", "exact_match"]  # micro and macro F1: one Hub metric
    assert "A BERT multi-label text classifier (joy / relief / anger / neutral)" in text
    assert '"parameters": {"min_confidence": 0.5}' in text and '"thresholds": {...}' in text  # the Space's answer
    assert "**macro F1 0.470** (95% CI 0.420-0.520) and micro F1 0.610 (0.560-0.660)" in text


def test_results_show_the_multi_label_metrics_and_a_row_per_label(multi_run):
    text = render_card(multi_run)
    rows = {row[0]: row[1:] for row in table(text, "| metric | dev | 95% CI | test | 95% CI |")}
    assert list(rows) == ["F1 (micro)", "F1 (macro)", "Subset accuracy (exact match)", "Hamming loss",
                          "PR AUC (macro average precision)", "Expected calibration error"]  # fmt: skip
    assert rows["Hamming loss"] == ["0.0810", "0.0310-0.1310", "0.0810", "0.0310-0.1310"]
    per_label = table(text, "| label | threshold | dev precision | dev recall | dev F1 | dev support |")
    thresholds = json.loads((multi_run / "config.json").read_text())["decision_thresholds"]
    assert [row[0] for row in per_label] == LABELS
    anger = per_label[2]
    assert anger[1] == f"{thresholds['anger']:.3f}" and anger[2] == "0.600 (0.550-0.650)" and anger[5] == "30"
    assert len(anger) == 10 and anger[9] == "30"  # the test split's four columns beside
    assert "| class | precision |" not in text  # the single-label table is not drawn as well
    assert (
        "| label | train (100 texts) | dev (40 texts) | test (40 texts) |" in text
        and "| relief | 10 (10.0%) | 10 (25.0%) | 10 (25.0%) |" in text
    )


def test_thresholds_section_states_the_rule_and_compares_the_strategies(multi_run):
    thresholds = section(render_card(multi_run), "## Thresholds")
    assert "`labels = [l for l, s in scores if s >= config.decision_thresholds[l]]`" in thresholds
    assert "tuned on\n`dev` (F1 of each label)" in thresholds
    assert "the best single one on `dev`, 0.35" in thresholds
    rows = table(thresholds, "| thresholds | dev F1 (macro) | dev F1 (micro) | test F1 (macro) | test F1 (micro) |")
    assert rows == [
        ["per-label thresholds (saved with the model)", "0.4900", "0.6200", "0.4700", "0.6100"],
        ["one global threshold", "0.4500", "0.6100", "0.4400", "0.6000"],
        ["0.5 for every label", "0.3800", "0.5700", "0.3700", "0.5600"],
    ]


def test_calibration_and_coverage_sections_read_the_run(multi_run):
    text = render_card(multi_run)
    calibrated = section(text, "## Calibrated scores")
    assert "weights and bias divided by T" in calibrated and "with no client code" in calibrated
    assert "from 0.920 (relief) to 1.580 (anger), median 1.215" in calibrated
    assert "3 of 4 labels have T above 1" in calibrated
    assert "`dev` 0.041 -> 0.012, `test` 0.044 -> 0.017." in calibrated
    unsure = section(text, "## When the model is not sure")
    assert "on `dev`, **at 90% coverage it is 55.0% accurate** (42.0% at 100%)" in unsure
    assert "exact-match accuracy (every label right)" in unsure
    rows = table(unsure, "| coverage | dev exact match | dev min_confidence | test exact match |")
    assert [row[0] for row in rows] == ["50%", "80%", "90%", "100%"] and rows[2][1:3] == ["55.0%", "0.550"]
    assert "--min_confidence 0.550 --file texts.txt" in unsure and '"parameters": {"min_confidence": ...}' in unsure
    assert "![Risk-coverage curve](plots/risk_coverage.png)" in unsure


def test_errors_are_missed_and_extra_labels_and_skipped_tests_say_why(multi_run):
    text = render_card(multi_run)
    errors = section(text, "## Error analysis")
    assert "2 of 40 validation texts get a set of labels that is not exactly theirs" in errors
    assert table(errors, "| text | true | predicted | missed | extra |")[0] == [
        "so glad it is over", "joy;relief", "joy", "relief", "", "0.930"
    ]  # fmt: skip
    assert "Not run: clear_positive (MFT), because the labels carry no polarity (no --label_map grouping)." in errors
    limits = " ".join(section(text, "## Limitations and bias").split())
    assert "every one of its 4 labels whose score reaches that label's threshold, so a text can get several" in limits


def test_widget_takes_one_text_per_label_and_each_text_once():
    frame = pd.DataFrame({
        "text": ["so glad and so relieved it is over now", "relieved that the long wait is over now",
                 "angry about the wait and the price too"],
        "label": ["joy;relief", "relief", "anger"], "correct": [True, True, True], "confidence": [0.99, 0.9, 0.8],
    })  # fmt: skip
    assert [(w["text"], w["example_title"]) for w in widget_examples(frame, LABELS, multi_label=True)] == [
        ("so glad and so relieved it is over now", "joy (validation)"),
        ("relieved that the long wait is over now", "relief (validation)"),  # the first is joy's already
        ("angry about the wait and the price too", "anger (validation)"),
    ]  # fmt: skip


def python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_python_snippets_choose_the_labels_classifier_predict_chooses(multi_run):
    text = render_card(multi_run)  # unpushed: the snippets load the run folder
    pipeline_code, direct_code = python_snippets(text)[:2]  # then the ONNX Runtime one
    expected = [set(answer["labels"]) for answer in Classifier(multi_run, device="cpu").predict(TEXTS)]
    # thresholds_with_margin: joy for both texts, anger for neither, relief and neutral each for one of them
    assert all("joy" in labels and "anger" not in labels for labels in expected)
    assert sum("relief" in labels for labels in expected) == sum("neutral" in labels for labels in expected) == 1
    for code in (pipeline_code, direct_code):
        scope = {}
        exec(code, scope)  # noqa: S102 - the card's own snippet, run as a reader would
        assert scope["texts"] == TEXTS and [set(labels) for labels in scope["labels"]] == expected


def test_the_onnx_snippet_chooses_the_labels_the_int8_classifier_chooses(multi_run, tmp_path, monkeypatch):
    import huggingface_hub

    from trainer.export.onnx import ensure_onnx

    run = writable_copy(multi_run, tmp_path / "run")
    ensure_onnx(run)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: str(run / name))  # no network
    code = python_snippets(render_card(run, onnx=True))[2]
    assert "1 / (1 + np.exp(-logits))" in code
    scope = {}
    exec(code, scope)  # noqa: S102
    int8 = Classifier(run, device="cpu", backend="onnx-int8").predict(TEXTS)
    assert [set(labels) for labels in scope["labels"]] == [set(answer["labels"]) for answer in int8]


@pytest.mark.slow  # Node and transformers.js: `make test` installs them (npm ci), `make test-fast` does not
def test_the_transformers_js_snippet_chooses_the_labels_the_int8_classifier_chooses(multi_run, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    assert (JS / "node_modules" / "@huggingface" / "transformers").is_dir(), "run: npm ci --prefix tests/js"
    from trainer.export.onnx import ensure_onnx

    run = writable_copy(multi_run, tmp_path / "models" / "emotions")
    ensure_onnx(run)
    code = re.findall(r"```js\n(.*?)```", render_card(run, "emotions", onnx=True), flags=re.S)[0]
    models = tmp_path / "models"  # the snippet's repo id, "emotions", read from here instead of the Hub
    local = f'import {{ env, pipeline }} from "@huggingface/transformers";\nenv.localModelPath = "{models}/";\n'
    (tmp_path / "snippet.mjs").write_text(code.replace('import { pipeline } from "@huggingface/transformers";', local))
    (tmp_path / "node_modules").symlink_to(JS / "node_modules")  # where Node looks for the package
    proc = subprocess.run(["node", "snippet.mjs"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))  # console.log of a string array
    assert labels == Classifier(run, device="cpu", backend="onnx-int8").predict(TEXTS[:1])[0]["labels"]


def test_a_trained_multi_label_runs_card_validates_and_its_snippets_agree_with_predict(tiny_multi_run):
    text = render_card(tiny_multi_run, "alice/emotions")
    assert validate_card(text) is None and "## Thresholds" in text and "## Calibrated scores" in text
    results = {(r.metric_type, (r.metric_args or {}).get("average")) for r in ModelCard(text).data.eval_results}
    assert {("f1", "micro"), ("f1", "macro")} <= results and ("accuracy", None) not in results
    assert "| Subset accuracy (exact match) |" in text and "| Hamming loss |" in text
    assert "**at 90% coverage it is" in section(text, "## When the model is not sure")
    thresholds = json.loads((tiny_multi_run / "config.json").read_text())["decision_thresholds"]
    rows = table(text, "| label | threshold |")
    assert {row[0]: float(row[1]) for row in rows} == {name: round(t, 3) for name, t in thresholds.items()}
    pipeline_code, direct_code = python_snippets(render_card(tiny_multi_run))[:2]
    expected = [set(answer["labels"]) for answer in Classifier(tiny_multi_run, device="cpu").predict(TEXTS)]
    for code in (pipeline_code, direct_code):
        scope = {}
        exec(code, scope)  # noqa: S102
        assert [set(labels) for labels in scope["labels"]] == expected


def test_a_single_label_run_states_its_temperature_and_coverage(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["calibration"] = {"method": "temperature", "temperature": 1.42,
                              "ece": {"validation": {"before": 0.059, "after": 0.021}}}  # fmt: skip
    metrics["risk_coverage"] = curve(0.95, 0.9, "accuracy")
    metrics["evaluation"]["ece"]["value"] = 0.05  # still over the 0.02 a limitation takes
    (run / "metrics.json").write_text(json.dumps(metrics))
    model_config = json.loads((run / "config.json").read_text())  # where training folds the temperature in
    model_config["calibration"] = {"method": "temperature", "temperature": 1.42, "fitted_on": "validation"}
    (run / "config.json").write_text(json.dumps(model_config))
    text = render_card(run, "alice/sst2")
    assert validate_card(text) is None
    calibrated = section(text, "## Calibrated scores")
    assert "T = 1.420: the model as trained was over-confident" in calibrated and "the most probable" in calibrated
    assert "`dev` 0.059 -> 0.021." in calibrated
    limits = " ".join(section(text, "## Limitations and bias").split())
    assert (
        "Even after temperature scaling, confidence is not a calibrated probability: expected calibration error 0.050"
        in limits
    )
    unsure = section(text, "## When the model is not sure")
    assert "its top probability" in unsure and "**at 90% coverage it is 95.0% accurate** (90.0% at 100%)" in unsure
    assert table(unsure, "| coverage | dev accuracy | dev min_confidence |")[-1] == ["100%", "90.0%", "0.500"]
    assert "## Thresholds" not in text and "decision_thresholds" not in text

    metrics["calibration"] = model_config["calibration"] = {"method": "none"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps(model_config))
    assert "not calibrated: the model was trained with `--calibrate none`" in render_card(run)


def test_a_run_recorded_before_calibration_and_coverage_has_neither_section(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("calibration", "risk_coverage", "multi_label", "thresholds"):
        metrics.pop(key, None)
    (run / "metrics.json").write_text(json.dumps(metrics))
    model_config = json.loads((run / "config.json").read_text())
    model_config.pop("calibration", None)
    (run / "config.json").write_text(json.dumps(model_config))
    shutil.rmtree(run / "plots", ignore_errors=True)
    text = render_card(run)
    for heading in ("## Thresholds", "## Calibrated scores", "## When the model is not sure"):
        assert heading not in text
    assert "\n## Usage\n\n```python\nfrom transformers import pipeline\n" in text and validate_card(text) is None
