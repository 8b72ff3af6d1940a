"""Fine-tune the packaged all-MiniLM-L6-v2 on a few hundred real SST-2 rows, through the CLI entry points."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, pipeline

from tests.conftest import ROOT, read_sst2, write_tsv
from trainer.config import load_config
from trainer.evaluate import main as evaluate_main
from trainer.export.onnx import export_int8
from trainer.modeling import default_backend, load_classifier, resolve_model_path
from trainer.predict import main as predict_main
from trainer.train import main as train_main
from trainer.training.loop import train

pytestmark = [pytest.mark.slow, pytest.mark.data_mirror("sst2")]


class StopAfterStep20(TrainerCallback):
    """Ends training after step 20 as an interrupted run ends: checkpoint-20 saved, on the 40-step schedule."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = control.should_training_stop or state.global_step == 20


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    """One short fine-tuning run shared by the tests below: 400 train rows, 200 dev rows, 40 steps, stopped after
    step 20 and resumed through the CLI (so the resume test shares this training instead of adding 20 steps)."""
    folder = tmp_path_factory.mktemp("minilm")
    train_file = write_tsv(read_sst2("train", 400), folder / "train.tsv")
    dev_file = write_tsv(read_sst2("dev", 200), folder / "dev.tsv")
    args = [
        "--config", str(ROOT / "configs/quick.yaml"),
        "--train_file", str(train_file), "--validation_file", str(dev_file),
        "--output_dir", str(folder / "run"),
        "--max_steps", "40", "--eval_steps", "20", "--save_steps", "20",
        "--learning_rate", "1e-4", "--disable_tqdm", "true",
    ]  # fmt: skip
    train(load_config(args), callbacks=[StopAfterStep20()])
    assert train_main(["--resume", str(folder / "run"), "--disable_tqdm", "true"]) == 0
    return folder / "run"


def test_weights_changed_and_model_learned(minilm_run):
    base = load_file(f"{resolve_model_path('sentence-transformers/all-MiniLM-L6-v2')}/model.safetensors")
    tuned = load_file(minilm_run / "model.safetensors")
    name = "encoder.layer.5.output.dense.weight"
    assert not torch.allclose(base[name], tuned[f"bert.{name}"])
    metrics = json.loads((minilm_run / "metrics.json").read_text())
    assert metrics["eval_samples"] == 200 and metrics["train_samples"] == 400
    assert metrics["accuracy"] >= 0.65, metrics  # chance is 0.5; 40 steps of MiniLM reach ~0.75-0.8


def test_pipeline_loads_the_run_with_human_labels(minilm_run):
    classify = pipeline("text-classification", model=str(minilm_run))
    out = classify(["a gorgeous , witty , moving film", "a dull , lifeless and boring mess"])
    assert [o["label"] for o in out] == ["positive", "negative"]


def test_predictor_matches_pipeline_probabilities(minilm_run):
    texts = read_sst2("dev", 40)["sentence"].tolist()
    ours = load_classifier(str(minilm_run)).predict(texts, batch_size=16)
    theirs = pipeline("text-classification", model=str(minilm_run))(texts)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert [o["score"] for o in ours] == pytest.approx([t["score"] for t in theirs], abs=1e-4)


def test_predict_cli_prints_label_confidence_and_latency(minilm_run, capsys):
    assert predict_main(["--model", str(minilm_run), "a wonderful film"]) == 0
    label, confidence, latency, unit, *text = capsys.readouterr().out.split()
    backend = default_backend()  # what predict uses, with the int8 file it exported
    int8_file = export_int8(str(minilm_run)) if backend == "onnx-int8" else None
    expected = load_classifier(str(minilm_run), backend=backend, int8_file=int8_file).predict(["a wonderful film"])[0]
    assert (label, confidence) == (expected["label"], f"{expected['score']:.3f}") and label in {"positive", "negative"}
    assert 0.5 <= float(confidence) <= 1
    assert latency.replace(".", "", 1).isdigit() and unit == "ms" and " ".join(text) == "a wonderful film"


def test_predict_cli_reads_a_file_in_batches(minilm_run, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(read_sst2("dev", 20)["sentence"]) + "\n")
    assert predict_main(["--model", str(minilm_run), "--file", str(texts)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "label\tconfidence\ttext" and len(lines) == 21


def test_bad_training_file_is_one_line(minilm_run, tmp_path):
    bad = write_tsv(read_sst2("dev", 5).rename(columns={"label": "stars"}), tmp_path / "bad.tsv")
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--config", str(ROOT / "configs/quick.yaml")]
        + ["--train_file", str(bad), "--validation_file", str(bad), "--output_dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: column 'label' not found (columns: sentence, stars): "
        "pass --text_column/--label_column with the right names"
    )


def test_resume_continues_an_interrupted_minilm_run(minilm_run):
    # The fixture run stopped after step 20 (checkpoint-20); `--resume` continued it from there to step 40.
    metrics = json.loads((minilm_run / "metrics.json").read_text())
    history = json.loads((minilm_run / "log_history.json").read_text())
    assert metrics["global_step"] == 40
    assert [r["step"] for r in history if "loss" in r][:2] == [5, 10]  # history from before the interruption kept


def test_evaluate_an_sst2_model_out_of_domain(minilm_run, tmp_path, capsys):
    """Another labelled sentiment file (string labels, other column names) just works and is called out of domain."""
    reviews = pd.DataFrame(
        {
            "review": ["An absolute joy from start to finish.", "Two hours I will never get back.", "Loved it!"] * 4,
            "sentiment": ["positive", "negative", "positive"] * 4,
        }
    )
    path = tmp_path / "reviews" / "reviews.csv"
    path.parent.mkdir()
    reviews.to_csv(path, index=False)
    out = tmp_path / "eval"
    args = ["--model", str(minilm_run), "--data", str(path), "--output_dir", str(out)]
    assert evaluate_main([*args, "--text_column", "review", "--label_column", "sentiment", "--n_bootstrap", "100"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["out_of_domain"] and metrics["n"] == 12
    assert "Out-of-domain evaluation" in (out / "error_analysis.md").read_text()
    assert "accuracy" in capsys.readouterr().out


def test_training_wrote_the_analysis_into_the_run_folder(minilm_run):
    metrics = json.loads((minilm_run / "metrics.json").read_text())
    assert not json.loads((minilm_run / "behavioral_tests.json").read_text()).get("skipped")
    report = (minilm_run / "error_analysis.md").read_text()
    assert "Out-of-domain" not in report
    assert metrics["evaluation"]["accuracy"]["value"] == metrics["accuracy"]  # one scoring of the saved model


def test_the_int8_onnx_file_agrees_with_fp32_minilm_on_real_sentences(minilm_run, tmp_path):
    """The file a push ships, on the packaged MiniLM fine-tuned for 40 steps, scored one sentence at a time on the
    run's 200 SST-2 dev sentences and in batches: its labels are fp32's almost everywhere (SST-2 dev with the full
    model: 99.5% or more, both ways), and it is a third of the fp32 file."""
    import shutil

    from trainer.export.uploads import onnx_uploads

    run = shutil.copytree(minilm_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "onnx"))
    uploads = dict(onnx_uploads(run))
    onnx_files = {f"onnx/{name}" for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx")}
    assert set(uploads) == {*onnx_files, "onnx/int8_check.json"}
    check = json.loads(uploads["onnx/int8_check.json"].read_text())
    assert check["texts"] == 200 and check["label_agreement"] >= 0.97 and check["prob_gap_p95"] < 0.1
    assert check["batched"]["label_agreement"] >= 0.97 and check["fp16"]["label_agreement"] >= 0.99
    assert abs(check["accuracy_int8"] - check["accuracy_fp32"]) <= 0.02
    assert uploads["onnx/model_quantized.onnx"].stat().st_size < 0.35 * uploads["onnx/model.onnx"].stat().st_size
