"""The model card: metadata the Hub can parse, sections written from the run folder's own numbers."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from huggingface_hub import ModelCard

from model_card import card_data, card_facts, render_card
from model_card.render import dataset_facts, eval_rows, limitations, widget_examples
from tests.conftest import writable_copy
from tests.hub_server import validate_card
from trainer.evaluate import main as evaluate_main

SECTIONS = [
    "## Usage", "## Training data", "## Training procedure", "### Training curve", "## Evaluation results",
    "## Error analysis", "## Limitations and bias", "## Environmental information", "## Framework versions",
    "## Reproducibility", "## Citation",
]  # fmt: skip


def test_card_metadata_parses_and_matches_the_runs_metrics(tiny_run):
    text = render_card(tiny_run, "alice/tiny-sentiment")
    card = ModelCard(text)
    metrics = json.loads((tiny_run / "metrics.json").read_text())

    assert validate_card(text) is None
    data = card.data
    assert (data.license, data.language, data.library_name, data.pipeline_tag) == (
        "apache-2.0", "en", "transformers", "text-classification",
    )  # fmt: skip
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == {"accuracy", "f1", "precision", "recall"}
    assert results["accuracy"].metric_value == round(metrics["accuracy"], 4)
    assert results["f1"].metric_value == round(metrics["f1_macro"], 4)
    assert results["accuracy"].dataset_split == "dev"  # the validation file's name
    assert data.base_model is None  # a local base model is not a Hub id
    dev = pd.read_csv(tiny_run.parent / "dev.tsv", sep="\t")
    assert data.widget and all(example["text"] in set(dev["sentence"].str.strip()) for example in data.widget)


def test_a_run_recorded_before_the_metric_catalogue_lists_its_metrics_by_key(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics.pop("metric_catalogue")  # metrics.json as runs wrote it before the catalogue was recorded
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = render_card(run)
    table = text.split("| metric | value | 95% CI |\n|---|---|---|\n")[1].split("\n\n")[0].splitlines()
    # every figure the analysis scored but the per-class ones, in the order recorded, by key, at four decimals
    assert [row.split(" | ")[0][2:] for row in table] == [
        key for key in metrics["evaluation"] if not key.endswith(("_negative", "_positive"))
    ]
    mcc = metrics["evaluation"]["mcc"]
    assert f"| mcc | {mcc['value']:.4f} | {mcc['ci_low']:.4f}-{mcc['ci_high']:.4f} |" in table
    assert [r.metric_type for r in ModelCard(text).data.eval_results] == ["accuracy"]  # the figure the text is on
    assert "| negative | " in text.split("Per class")[1]  # the per-class table as before


def test_card_sections_name_the_repo_and_quote_the_run(tiny_run):
    text = render_card(tiny_run, "alice/tiny-sentiment")
    metrics = json.loads((tiny_run / "metrics.json").read_text())

    for heading in SECTIONS:
        assert f"\n{heading}\n" in text, heading
    assert 'pipeline("text-classification", model="alice/tiny-sentiment")' in text
    # pipeline() truncates only when asked, at the run's max_length (quick.yaml's 128); chunking is one command away
    assert 'classifier("A gorgeous, witty and moving film.", truncation=True, max_length=128)' in text
    assert "python -m trainer.predict --model alice/tiny-sentiment --long_text chunk" in text
    assert 'AutoModelForSequenceClassification.from_pretrained("alice/tiny-sentiment")' in text
    assert "make push-space MODEL_ID=alice/tiny-sentiment" in text and "POST /api/classify" in text
    assert f"| Accuracy | {metrics['evaluation']['accuracy']['value']:.4f} |" in text
    assert f"`{metrics['environment']['command']}`" in text
    assert metrics["environment"]["git_commit"] in text
    assert "![Training curves](plots/training_curves.png)" in text
    assert "![Reliability diagram](plots/reliability_diagram.png)" in text
    # Training data: size and label balance from the recorded counts (48 train rows: 12 positive).
    assert "| train | 64 | 48 (75.0%) | 16 (25.0%) |" in text


def test_rendering_is_a_pure_function_of_the_run_folder(tiny_run):
    assert render_card(tiny_run, "alice/x") == render_card(tiny_run, "alice/x")
    assert 'model="' + str(tiny_run) + '"' in render_card(tiny_run)  # unpushed: the snippet loads the local folder


def test_training_curve_table_bolds_the_best_checkpoint():
    history = [
        {"loss": 0.7, "step": 1, "epoch": 0.5},
        {"eval_loss": 0.6, "eval_accuracy": 0.7, "eval_f1_macro": 0.69, "step": 1, "epoch": 0.5},
        {"loss": 0.4, "step": 2, "epoch": 1.0},
        {"eval_loss": 0.5, "eval_accuracy": 0.8, "eval_f1_macro": 0.79, "step": 2, "epoch": 1.0},
    ]
    rows = eval_rows(history, best_step=2)
    assert [(r["step"], r["train_loss"], r["accuracy"], r["best"]) for r in rows] == [
        (1, 0.7, 0.7, False), (2, 0.4, 0.8, True),
    ]  # fmt: skip
    # Never evaluated: mean training loss per epoch.
    per_epoch = eval_rows([h for h in history if "loss" in h] + [{"loss": 0.2, "step": 3, "epoch": 1.5}], None)
    assert [(r["epoch"], round(r["train_loss"], 4)) for r in per_epoch] == [(1, 0.55), (2, 0.2)]


def test_limitations_are_written_from_measured_failures():
    facts = {
        "evaluation": {"accuracy": {"value": 0.9}, "recall_negative": {"value": 0.85},
                       "recall_positive": {"value": 0.95}, "ece": {"value": 0.06}},
        "label_names": ["negative", "positive"],
        "slices": [
            {"slice": "negation: yes", "n": 200, "accuracy": 0.8, "ci_low": 0.74, "ci_high": 0.85},
            {"slice": "contrast: yes", "n": 100, "accuracy": 0.88, "ci_low": 0.8, "ci_high": 0.93},  # within noise
            {"slice": "sarcasm_cue: yes", "n": 5, "accuracy": 0.2, "ci_low": 0.04, "ci_high": 0.6},  # too few
        ],
        "behavioral": [
            {"name": "negated_negative", "type": "MFT", "n": 10, "failure_rate": 0.2, "description": "Not bad is good.",
             "examples": [{"text": "Not bad at all.", "predicted": "negative"}]},
            {"name": "names", "type": "INV", "n": 6, "failure_rate": 0.0, "description": "Names.", "examples": []},
        ],
        "confident_mistakes": 40, "n_mistakes": 87, "label_noise": 50,
    }  # fmt: skip
    lines = limitations(facts)
    assert (
        lines[0]
        == "Accuracy drops to 80.0% (95% CI 74.0%-85.0%, n=200) on the slice *negation: yes*, against 90.0% overall."
    )
    assert not any("contrast" in line or "sarcasm" in line or "*names*" in line for line in lines)
    assert "recall 85.0% against 95.0%" in lines[1] and "leans towards positive" in lines[1]
    assert '"Not bad at all." was predicted negative' in lines[2]
    assert "expected calibration error 0.060" in lines[3] and "40 of the 87" in lines[3]
    assert lines[4].startswith("50 of the 87 validation mistakes look like label noise")


def test_hub_datasets_fill_the_model_index_dataset_fields():
    facts = dataset_facts({"dataset_name": "stanfordnlp/sst2", "validation_split": "validation"}, {})
    assert (facts["id"], facts["name"], facts["config"], facts["split"], facts["on_hub"]) == (
        "stanfordnlp/sst2", "SST-2 (GLUE)", "default", "validation", True,
    )  # fmt: skip
    data = card_data({
        "dataset": facts, "evaluation": {"accuracy": {"value": 0.91234}}, "base_model": "org/base",
        "base_model_on_hub": True, "model_type": "bert", "repo_id": "alice/m", "run_name": "r", "widget": [],
    })  # fmt: skip
    assert data.datasets == ["stanfordnlp/sst2"] and data.base_model == "org/base"
    result = data.eval_results[0]
    assert (result.dataset_type, result.dataset_config, result.metric_value) == ("stanfordnlp/sst2", "default", 0.9123)


def test_with_a_test_split_the_model_index_reports_test_and_the_card_shows_both(tiny_run, tmp_path):
    config = {"dataset_name": "cornell-movie-review-data/rotten_tomatoes", "validation_split": "validation",
              "test_split": "test"}  # fmt: skip
    facts = dataset_facts(config, {})
    assert (facts["split"], facts["test_split"]) == ("validation", "test")
    data = card_data({
        "dataset": facts, "evaluation": {"accuracy": {"value": 0.85}}, "test": {"accuracy": {"value": 0.8312}},
        "base_model": "bert-base-uncased", "base_model_on_hub": True, "model_type": "bert", "repo_id": "alice/m",
        "run_name": "r", "widget": [],
    })  # fmt: skip
    result = data.eval_results[0]
    assert (result.dataset_split, result.metric_value, data.base_model) == ("test", 0.8312, "bert-base-uncased")
    assert dataset_facts({"dataset_name": "stanfordnlp/imdb", "validation_split_percentage": 10}, {})["split"] == (
        "10% of train"
    )
    run = writable_copy(tiny_run, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    test = {key: {**score, "value": 0.5} for key, score in metrics["evaluation"].items()}
    metrics.update(
        test=test, test_samples=16, label_counts={**metrics["label_counts"], "test": {"negative": 8, "positive": 8}}
    )
    (run / "metrics.json").write_text(json.dumps(metrics))
    with open(run / "train_config.yaml", "a") as config_file:
        config_file.write(f"test_file: {tmp_path / 'test.tsv'}\n")
    card = render_card(run)
    assert "It reaches **50.0% accuracy**" in card and "16 held-out examples of the `test` split" in card
    assert "| metric | dev | 95% CI | test | 95% CI |" in card
    assert re.search(r"\| Accuracy \| [0-9.]+ \| [0-9.-]+ \| 0\.5000 \|", card)
    assert "| test | 16 | 8 (50.0%) | 8 (50.0%) |" in card


def test_widget_takes_confident_right_validation_sentences_per_class():
    frame = pd.DataFrame({
        "text": ["a b c d e f g h good", "a b c d e f g h bad", "a b c d e f g h not bad", "short",
                 "a b c d e f g h x"],
        "label": ["positive", "negative", "positive", "positive", "negative"],
        "correct": [True, True, True, True, False],
        "confidence": [0.99, 0.97, 0.6, 0.999, 0.99],
        "negation": [False, False, True, False, False],
    })  # fmt: skip
    assert [w["text"] for w in widget_examples(frame, ["negative", "positive"])] == [
        "a b c d e f g h bad", "a b c d e f g h good", "a b c d e f g h not bad",
    ]  # fmt: skip


def test_out_of_domain_evaluations_get_their_own_table(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run")
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\nthe acting was great\t1\nthe plot was bad\t0\nreally fun story\t1\n")
    assert evaluate_main(["--model", str(run), "--data", str(other), "--output_dir",
                          str(run / "evaluations" / "reviews"), "--n_bootstrap", "10"]) == 0  # fmt: skip
    text = render_card(run, "alice/x")
    assert "### Other evaluation sets" in text
    assert f"| reviews | `{other}` | 3 | yes |" in text
    assert "was measured on the other sets above only" in text


@pytest.mark.slow  # two trainer.card processes, ~6 s
def test_make_card_cli_writes_readme_and_errors_in_one_line(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    done = subprocess.run([sys.executable, "-m", "trainer.card", "--run_dir", str(run)], capture_output=True, text=True)
    assert done.returncode == 0 and (run / "README.md").read_text() == render_card(run)

    (run / "model.safetensors").unlink()
    done = subprocess.run([sys.executable, "-m", "trainer.card", "--run_dir", str(run)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "missing model.safetensors" in done.stderr and "make train" in done.stderr


def test_facts_for_a_run_without_analysis_files_still_render(tiny_run, tmp_path):
    keep = {"config.json", "model.safetensors", "metrics.json", "train_config.yaml", "tokenizer.json"}
    run = tmp_path / "bare"
    run.mkdir()
    for name in keep:
        shutil.copy(tiny_run / name, run / name)
    facts = card_facts(run, "alice/bare")
    assert facts["n_mistakes"] == 0 and facts["eval_rows"] == [] and facts["widget"] == []
    text = render_card(run, "alice/bare")
    assert "No error analysis files were found in the run folder." in text and validate_card(text) is None
