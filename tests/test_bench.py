"""`trainer.bench --quick` on the tiny model writes every key and the plot; the int8 fast path agrees with torch."""

import json
import os

import numpy as np
import pytest

from tests.conftest import read_sst2, writable_copy
from trainer import UserError
from trainer.bench import main, pick_infer_model
from trainer.export.onnx import export_int8
from trainer.modeling import load_classifier

KEYS = {
    "train_speedup", "inference_speedup", "baseline_train_samples_per_s", "train_samples_per_s",
    "baseline_infer_samples_per_s", "infer_samples_per_s", "accuracy_fp32", "accuracy_fast", "latency_ms", "machine",
    "peak_rss_mb", "time_to_89_accuracy", "setup", "label_agreement", "labels_changed", "prob_gap_p95",
}  # fmt: skip


def scorer(model: str, backend: str = "torch"):
    """The inference core as the bench loads it: the int8 path's file exported first."""
    return load_classifier(model, backend=backend, int8_file=export_int8(model) if backend == "onnx-int8" else None)


@pytest.mark.slow  # trains twice in subprocesses (the notebook recipe and ours), then times three inference paths
@pytest.mark.data_mirror("sst2")
def test_quick_bench_writes_the_report_and_the_plot(tiny_model_dir, tiny_run, tmp_path, capsys):
    output = tmp_path / "out" / "bench.json"
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints", "onnx")  # the int8 path exports into it
    flags = ["--quick", "--model", str(tiny_model_dir), "--infer_model", str(run), "--max_length", "64"]
    assert main([*flags, "--output", str(output)]) == 0

    report = json.loads(output.read_text())
    assert set(report) >= KEYS
    assert (tmp_path / "out" / "plots" / "bench.png").stat().st_size > 10_000
    assert report["setup"] == {**report["setup"], "quick": True, "train_steps": 20, "eval_examples": 256}
    for key in ("baseline_train_samples_per_s", "train_samples_per_s", "baseline_infer_samples_per_s"):
        assert report[key] > 0
    assert report["train_speedup"] == round(report["train_samples_per_s"] / report["baseline_train_samples_per_s"], 2)
    # The accuracies are those of the fine-tuned run on the first 256 SST-2 dev rows, scored again here.
    dev = read_sst2("dev", 256)
    for key, backend in (("accuracy_fp32", "torch"), ("accuracy_fast", "onnx-int8")):
        predicted = scorer(str(run), backend).predict_proba(dev["sentence"].tolist()).argmax(1)
        assert report[key] == (predicted == dev["label"].to_numpy()).mean(), key
    assert report["accuracy_drop_points"] == round((report["accuracy_fp32"] - report["accuracy_fast"]) * 100, 2)
    fp32 = scorer(str(run)).predict_proba(dev["sentence"].tolist())
    int8 = scorer(str(run), "onnx-int8").predict_proba(dev["sentence"].tolist())
    assert report["label_agreement"] == round(float((int8.argmax(1) == fp32.argmax(1)).mean()), 5)
    assert report["prob_gap_p95"] == pytest.approx(np.percentile(np.abs(int8 - fp32).max(1), 95), abs=1e-5)
    assert report["setup"]["infer_model"] == str(run)
    assert set(report["latency_ms"]) == {"pipeline", "torch", "onnx-int8"}
    assert set(report["peak_rss_mb"]) == {"train_notebook", "train_ours", "infer_pipeline", "infer_torch",
                                          "infer_onnx-int8"}  # fmt: skip
    assert report["machine"]["cores"] == os.cpu_count() and "training samples/s" in capsys.readouterr().out


def test_int8_path_agrees_with_torch_and_caches_its_export(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints", "onnx")
    texts = ["good film , really good", "worst film , really worst", "a movie", "fun"] * 8
    fp32 = load_classifier(str(run)).predict_proba(texts)
    cached = export_int8(str(run))
    assert cached == run / "onnx" / "model_quantized.onnx"  # the file a push ships
    stamp = cached.stat().st_mtime_ns
    int8 = load_classifier(str(run), backend="onnx-int8", int8_file=cached).predict_proba(texts)
    assert np.abs(int8 - fp32).max() < 0.05
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9
    assert export_int8(str(run)) == cached and cached.stat().st_mtime_ns == stamp  # reused, not exported again


def test_unknown_backend_is_a_one_line_error(tiny_run):
    with pytest.raises(UserError, match="unknown backend 'tensorrt': use one of torch, onnx-int8"):
        load_classifier(str(tiny_run), backend="tensorrt")


def test_a_model_of_other_labels_is_refused_or_passed_over(tiny_run, tiny_five_run, tiny_multi_run, tmp_path, capsys,
                                                           monkeypatch):  # fmt: skip
    """The bench scores SST-2 dev: a five-label or multi-label model named with --infer_model is refused in one line
    before anything is measured; a runs/latest that does not fit is passed over, with the reason."""
    assert main(["--infer_model", str(tiny_five_run), "--output", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --infer_model {tiny_five_run} predicts very negative, negative, neutral, positive, very "
                   "positive, not SST-2's negative, positive in that id order: the bench scores SST-2 dev, so pass a "
                   "binary sentiment model (make train makes one)")  # fmt: skip
    with pytest.raises(UserError, match="is a multi-label model"):
        pick_infer_model(str(tiny_multi_run))
    assert not (tmp_path / "b.json").exists()

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/latest").symlink_to(tiny_five_run)
    assert pick_infer_model(None) is None
    assert "runs/latest predicts very negative" in capsys.readouterr().err
    (tmp_path / "runs/latest").unlink()
    (tmp_path / "runs/latest").symlink_to(tiny_run)
    assert pick_infer_model(None) == "runs/latest"
    assert pick_infer_model(str(tiny_run)) == str(tiny_run)
