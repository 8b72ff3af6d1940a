"""trainer.evaluate on the tiny BERT: every artifact written, consistent and readable; bad data is one line."""

import json
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_tiny_data, write_tsv
from trainer.evaluate import main
from trainer.run_folder import RUN_FILES

ARTIFACTS = [
    "metrics.json",
    "classification_report.txt",
    "predictions.parquet",
    "incorrect_predictions.csv",
    "slices.csv",
    "behavioral_tests.json",
    "embeddings.parquet",
    "error_analysis.md",
    "plots/confusion_matrix.png",
    "plots/embeddings_pca.png",
    "plots/reliability_diagram.png",
    "plots/confidence_histogram.png",
    "plots/slice_accuracy.png",
]


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tmp_path_factory) -> Path:
    """trainer.evaluate of the tiny (untrained) BERT on the tiny training file, written beside that file."""
    folder = tmp_path_factory.mktemp("evaluated")
    data, _ = make_tiny_data(folder)
    out = folder / "eval"
    args = ["--model", str(tiny_model_dir), "--data", str(data), "--output_dir", str(out), "--n_bootstrap", "50"]
    assert main(args) == 0
    return out


def test_every_artifact_is_written_and_non_empty(evaluated):
    for name in ARTIFACTS:
        assert (evaluated / name).is_file() and (evaluated / name).stat().st_size > 0, name


def test_every_analysis_file_is_one_a_push_publishes(evaluated):
    written = {p.relative_to(evaluated).as_posix() for p in evaluated.rglob("*") if p.is_file()}
    assert written >= set(ARTIFACTS)
    assert {name for name in written if not any(fnmatch(name, pattern) for pattern in RUN_FILES)} == set()


def test_artifacts_agree_with_each_other(evaluated):
    data = evaluated.parent / "train.tsv"
    metrics = json.loads((evaluated / "metrics.json").read_text())
    predictions = pd.read_parquet(evaluated / "predictions.parquet")
    wrong = pd.read_csv(evaluated / "incorrect_predictions.csv")
    n = len(pd.read_csv(data, sep="\t"))
    accuracy = metrics["metrics"]["accuracy"]
    assert metrics["n"] == len(predictions) == n
    assert len(wrong) == round((1 - accuracy["value"]) * n)
    assert accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"]
    assert accuracy["value"] == pytest.approx(predictions["correct"].mean())
    # Each row is the data file's row: its true label, the most probable class, and whether they agree.
    labels = pd.read_csv(data, sep="\t")["label"]
    assert predictions["label"].tolist() == [("negative", "positive")[i] for i in labels]
    more_positive = predictions["p_positive"] > predictions["p_negative"]
    assert predictions["predicted"].tolist() == ["positive" if up else "negative" for up in more_positive]
    assert predictions["correct"].tolist() == (predictions["predicted"] == predictions["label"]).tolist()
    assert {"text", "label", "predicted", "p_negative", "p_positive", "confidence", "correct", "length", "loss"} <= set(
        predictions.columns
    )
    assert list(wrong.columns) == ["text", "true_label", "predicted_label", "confidence", "error_types"]
    assert wrong["confidence"].is_monotonic_decreasing
    assert {"ece", "brier", "log_loss", "roc_auc", "mcc", "f1_weighted", "recall_positive"} <= set(metrics["metrics"])


def test_embeddings_state_their_pooling(evaluated):
    table = pq.read_table(evaluated / "embeddings.parquet")
    assert b"mean" in table.schema.metadata[b"pooling"]
    assert len(table.column("embedding")[0]) == 32 and {"pca_x", "pca_y"} <= set(table.column_names)


def test_report_links_every_plot(evaluated):
    report = (evaluated / "error_analysis.md").read_text()
    for plot in (evaluated / "plots").iterdir():
        assert f"plots/{plot.name}" in report
    assert "## The ten most confident mistakes" in report


def test_unlabelled_data_points_to_predict(tiny_model_dir, tmp_path, capsys):
    path = write_tsv(pd.DataFrame({"sentence": ["a good film"]}), tmp_path / "u.tsv")
    assert main(["--model", str(tiny_model_dir), "--data", str(path), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "trainer.predict" in err and "\n" not in err


def test_unknown_labels_are_one_line(tiny_model_dir, tmp_path, capsys):
    path = write_tsv(pd.DataFrame({"sentence": ["a", "b"], "label": ["great", "awful"]}), tmp_path / "x.tsv")
    assert main(["--model", str(tiny_model_dir), "--data", str(path), "--output_dir", str(tmp_path / "o")]) == 2
    assert "outside the label set" in capsys.readouterr().err


def test_out_of_domain_is_judged_from_the_run_config(tmp_path):
    from trainer.evaluation.run import is_out_of_domain

    sst2 = {"dataset_name": "stanfordnlp/sst2"}
    assert not is_out_of_domain(sst2, "stanfordnlp/sst2:validation")
    assert is_out_of_domain(sst2, "cornell-movie-review-data/rotten_tomatoes:test")
    files = {"train_file": str(tmp_path / "a/train.tsv"), "validation_file": str(tmp_path / "a/dev.tsv")}
    assert not is_out_of_domain(files, str(tmp_path / "a/test.tsv"))
    assert is_out_of_domain(files, str(tmp_path / "imdb/test.csv"))
    assert not is_out_of_domain(None, "anything")


def test_analysis_options_of_a_run_folder_are_the_facts_training_passes(tiny_run, tiny_model_dir, tmp_path):
    """`trainer.evaluate` reads a run's facts from its train_config.yaml; training passes the same facts from its
    config in memory; any other model has none."""
    import dataclasses

    from trainer.config import load_config
    from trainer.evaluation.run import AnalysisOptions, training_data
    from trainer.run_folder import read_train_config

    options = AnalysisOptions.of_run(str(tiny_run), output_dir=tmp_path, data_id="dev.tsv")
    saved = read_train_config(tiny_run)
    assert options.trained_on == {key: saved[key] for key in ("train_file", "validation_file", "dataset_name")}
    assert options.trained_on == training_data(dataclasses.asdict(load_config(["--resume", str(tiny_run)]).data))
    assert options.label_order == saved["label_order"] == "auto"
    assert AnalysisOptions.of_run(str(tiny_run), "ordinal", output_dir=tmp_path, data_id="x").label_order == "ordinal"
    other = AnalysisOptions.of_run(str(tiny_model_dir), output_dir=tmp_path, data_id="x")
    assert (other.label_order, other.trained_on, other.metrics_file) == ("auto", None, "metrics.json")


@pytest.mark.slow  # ~4 s
def test_a_five_label_run_is_evaluated_on_string_labels_with_ordinal_figures(tiny_five_run, tmp_path):
    """The five-label run on its own CSV (labels written as names): per-class table, ordinal figures, error types
    and behavioural tests against polarity groups; --label_order nominal drops the ordinal part."""
    data = tiny_five_run.parent / "dev5.csv"
    out = tmp_path / "eval"
    args = ["--model", str(tiny_five_run), "--data", str(data), "--n_bootstrap", "20"]
    assert main([*args, "--output_dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["label_set"]["ordinal"] and metrics["label_set"]["positive"] == ["positive", "very positive"]
    scores = metrics["metrics"]
    assert {"mae", "within_one", "off_by_one", "polarity_flips", "qwk", "recall_very negative"} <= set(scores)
    frame = pd.read_parquet(out / "predictions.parquet")
    distance = frame["class_distance"]
    assert scores["mae"]["value"] == pytest.approx(distance.mean())
    assert scores["within_one"]["value"] == pytest.approx((distance <= 1).mean())
    report = (out / "error_analysis.md").read_text()
    assert "## Per class" in report and "## Ordered labels" in report and "| very positive |" in report
    behaviour = json.loads((out / "behavioral_tests.json").read_text())
    assert len(behaviour["tests"]) == 9 and behaviour["skipped"] == []

    nominal = tmp_path / "nominal"
    assert main([*args, "--output_dir", str(nominal), "--label_order", "nominal"]) == 0
    assert "mae" not in json.loads((nominal / "metrics.json").read_text())["metrics"]
    assert "## Ordered labels" not in (nominal / "error_analysis.md").read_text()
