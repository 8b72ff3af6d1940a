"""Training end to end on the tiny BERT: run folder, weights, labels, resume, one-line errors."""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import pipeline

from tests.conftest import ROOT, make_tiny_data, seal, tiny_args, writable_copy
from trainer import run_folder as rf
from trainer.config import load_config
from trainer.modeling import load_classifier
from trainer.train import main
from trainer.training.loop import train

WRITTEN = [  # what a finished run with its analysis holds, by the names trainer.run_folder gives them
    *rf.REQUIRED_FILES, rf.TOKENIZER_FILES[0], rf.TOKENIZER_CONFIG, rf.TRAINING_ARGS, rf.LOG_HISTORY,
    rf.TRAINING_SUMMARY, rf.ERROR_ANALYSIS, rf.INCORRECT, rf.PREDICTIONS, rf.SLICES, rf.BEHAVIOURAL, rf.EMBEDDINGS,
    rf.CLASSIFICATION_REPORT,
    *(f"{rf.PLOTS}/{name}.png" for name in ("training_curves", "confusion_matrix", "reliability_diagram")),
]  # fmt: skip


def accuracy_of(run_dir: Path, data: Path) -> float:
    """The saved model's accuracy on a labelled tsv, scored here."""
    rows = pd.read_csv(data, sep="\t")
    predicted = load_classifier(str(run_dir)).predict_proba(rows["sentence"].tolist()).argmax(1)
    return float((predicted == rows["label"].to_numpy()).mean())


def test_training_writes_a_complete_run_folder_that_pipeline_loads(tiny_model_dir, tiny_training):
    run_dir, metrics = tiny_training  # conftest's train() of tiny_args(): 6 steps, checkpoints at 3 and 6

    for name in WRITTEN:
        assert (run_dir / name).is_file(), name
    assert rf.is_finished(run_dir) and all(any(fnmatch(name, glob) for glob in rf.RUN_FILES) for name in WRITTEN)
    assert not list(run_dir.glob("*.bin"))  # the publishable folder holds safetensors only
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]
    assert (run_dir / "checkpoints/checkpoint-6/model.safetensors").is_file()
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()

    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(run_dir / "model.safetensors")
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(before[name], after[name]), "encoder weights did not change"

    config = json.loads((run_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["global_step"] == 6 and saved["best_step"] in (3, 6)
    assert saved["accuracy"] == metrics["accuracy"] and saved["global_step"] == metrics["global_step"]
    # The reported accuracy is the saved model's on the validation file, and the saved predictions say the same.
    dev = run_dir.parent / "dev.tsv"
    assert saved["accuracy"] == pytest.approx(accuracy_of(run_dir, dev))
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    labels = [config["id2label"][str(i)] for i in pd.read_csv(dev, sep="\t")["label"]]
    assert predictions["label"].tolist() == labels
    assert saved["accuracy"] == pytest.approx((predictions["predicted"] == predictions["label"]).mean())
    # The analysis re-scores the saved model on the same validation rows: the same accuracy, now with an interval.
    evaluation = saved["evaluation"]["accuracy"]
    assert evaluation["value"] == pytest.approx(saved["accuracy"])
    assert evaluation["ci_low"] <= evaluation["value"] <= evaluation["ci_high"]
    history = json.loads((run_dir / "log_history.json").read_text())
    assert [r["step"] for r in history if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all("grad_norm" in r and "learning_rate" in r for r in history if "loss" in r)

    classify = pipeline("text-classification", model=str(run_dir))
    assert classify("a good film")[0]["label"] in {"negative", "positive"}  # human names, not LABEL_1
    texts = predictions["text"].tolist()
    assert [r["label"] for r in classify(texts)] == predictions["predicted"].tolist()


@pytest.fixture(scope="module")
def stopped_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny run with seed 7, stopped after step 3, sealed (see conftest): resume a writable_copy() of it."""
    folder = tmp_path_factory.mktemp("stopped")
    args = tiny_args(tiny_model_dir, make_tiny_data(folder), folder / "run", "--max_steps", "3", "--seed", "7")
    return seal(train(load_config(args))[0])


def test_saved_config_reruns_the_same_configuration(stopped_run):
    saved = yaml.safe_load((stopped_run / "train_config.yaml").read_text())
    train_file = str(stopped_run.parent / "train.tsv")
    assert saved["seed"] == 7 and saved["max_steps"] == 3 and saved["train_file"] == train_file
    rerun = load_config(["--config", str(stopped_run / "train_config.yaml")])
    assert rerun.to_dict() == saved


def test_train_leaves_the_config_it_is_given_as_it_was(tiny_model_dir, tiny_data, tmp_path):
    """What the run derives (the data's label names, its checkpoint folder, run name, loggers, no push by Trainer)
    goes into the run's own config and arguments, saved in the run folder, never into the caller's config."""
    from tests.conftest import unnamed_preset

    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--push_to_hub", "true", "--hub_token", "t",
                     "--hub_model_id", "alice/tiny")  # fmt: skip
    args[1] = str(unnamed_preset(tmp_path))  # no label names: the run takes the data's
    cfg = load_config(args)
    before = copy.deepcopy(cfg)
    run_dir, _ = train(cfg)
    assert cfg == before
    assert cfg.data.label_names is None and cfg.training.push_to_hub and cfg.training.hub_token == "t"
    assert yaml.safe_load((run_dir / "train_config.yaml").read_text())["label_names"] == ["negative", "positive"]
    resolved = json.loads((run_dir / "training_args.json").read_text())
    assert resolved["output_dir"] == str(run_dir / "checkpoints") and resolved["run_name"] == "run"
    assert resolved["push_to_hub"] is False


def test_resume_continues_from_the_latest_checkpoint(tiny_model_dir, tiny_data, stopped_run, tmp_path):
    run = writable_copy(stopped_run, tmp_path / "run")
    assert (run / "checkpoints" / "checkpoint-3").is_dir()
    # A new run into the same folder would overwrite the checkpoints: refused, with the fix named.
    assert main(tiny_args(tiny_model_dir, tiny_data, run)) == 2

    _, metrics = train(load_config(["--resume", str(run), "--max_steps", "6", "--disable_tqdm", "true"]))
    assert metrics["global_step"] == 6
    history = json.loads((run / "log_history.json").read_text())
    steps = [r["step"] for r in history if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-3 come from the checkpoint's state, 4-6 were trained now


def test_resume_without_checkpoints_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "train_config.yaml").write_text("seed: 1\n")
    assert main(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume") and "no complete checkpoint" in err and "\n" not in err


@pytest.mark.slow  # a trainer.train process each (one of them trains), ~6 s
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--text_column", "review"], "column 'review' not found (columns: sentence, label)"),
        (["--label_names", "bad", "good", "ok"], None),  # three names, binary data: fine
        (["--model_name_or_path", "./no/such/model"], "no model at ./no/such/model: train one with `make train`"),
        (["--learnig_rate", "1e-4"], "did you mean --learning_rate"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tiny_model_dir, tiny_data, tmp_path, flags, message):
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_steps", "1", *flags)
    proc = subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True, text=True, cwd=ROOT)
    if message is None:
        assert proc.returncode == 0, proc.stderr[-2000:]
        return
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_empty_training_file_is_a_one_line_error(tiny_model_dir, tiny_data, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    args = tiny_args(tiny_model_dir, (empty, tiny_data[1]), tmp_path / "run")
    assert main(args) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written before the data was checked


@pytest.mark.slow  # trains in a subprocess and interrupts it
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tiny_model_dir, tiny_data, tmp_path):
    run = tmp_path / "run"
    args = tiny_args(tiny_model_dir, tiny_data, run, "--max_steps", "99999", "--save_steps", "99999")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:  # Trainer prints one dict per logging step
        if "'loss'" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and f"--resume {run}" in err
    (checkpoint,) = (run / "checkpoints").iterdir()  # saved on the interrupt, not on schedule
    stopped_at = int(checkpoint.name.split("-")[1])

    _, metrics = train(
        load_config(["--resume", str(run), "--max_steps", str(stopped_at + 2), "--disable_tqdm", "true"])
    )
    assert metrics["global_step"] == stopped_at + 2
    assert (run / "model.safetensors").is_file()


def wandb_config(path: Path) -> dict:
    """The config a wandb run file records: its records are protobufs in LevelDB-log framing (32 KiB blocks of
    chunks with a 7-byte header: crc, length, type), after a 7-byte file header."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, pending, config = path.read_bytes(), 7, b"", {}
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record.FromString(pending)
            pending = b""
            updates = {"config": record.config.update, "run": record.run.config.update}.get(
                record.WhichOneof("record_type"), []
            )
            config.update({item.key: json.loads(item.value_json) for item in updates})
    return config


def test_wandb_logs_offline_into_the_run_folder(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir, _ = train(load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_steps", "2")))
    import wandb

    wandb.finish()  # what the end of the process does: the run file is complete from here
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline_run.glob("*.wandb"))  # the run's history, ready for `wandb sync`
    (history,) = offline_run.glob("*.wandb")
    config, deadline = wandb_config(history), time.time() + 30
    while "dataset" not in config and time.time() < deadline:  # wandb's service may still be writing the file
        time.sleep(0.2)  # (a busy machine once read it before the config records were there)
        config = wandb_config(history)
    facts = {key: config[key] for key in ("dataset", "model", "num_classes", "max_steps", "batch_size",
                                          "learning_rate")}  # fmt: skip
    assert facts == {"dataset": str(tiny_data[0]), "model": str(tiny_model_dir), "num_classes": 2, "max_steps": 2,
                     "batch_size": 8, "learning_rate": 1e-3}  # fmt: skip


@pytest.mark.slow  # trains and resumes, 4-5.5 s
def test_weight_averaging_is_evaluated_saved_and_resumed(tiny_model_dir, tiny_data, tmp_path):
    ema = ["--ema_decay", "0.6", "--load_best_model_at_end", "false"]
    full, _ = train(load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "full", *ema)))
    final = load_file(full / "model.safetensors")
    averaged = load_file(full / "checkpoints/checkpoint-6/ema.safetensors")
    raw = load_file(full / "checkpoints/checkpoint-6/model.safetensors")
    name = "bert.encoder.layer.1.output.dense.weight"
    assert torch.equal(final[name], averaged[name]) and not torch.allclose(raw[name], averaged[name])
    assert "bert.embeddings.word_embeddings.weight" in averaged  # trainable here (not frozen)

    # The same run interrupted after checkpoint-3, then resumed: the average continues as if never stopped.
    part = tmp_path / "part"
    shutil.copytree(full / "checkpoints/checkpoint-3", part / "checkpoints/checkpoint-3")
    shutil.copy(full / "train_config.yaml", part)
    train(load_config(["--resume", str(part), "--disable_tqdm", "true"]))
    resumed = load_file(part / "model.safetensors")
    assert torch.allclose(resumed[name], final[name], atol=1e-6)


def test_resume_uses_the_runs_own_config_and_rejects_incompatible_changes(stopped_run, capsys):
    run = stopped_run  # sealed: a resume that wrote anything would fail here
    saved = (run / "train_config.yaml").read_text()
    # make train passes --config unless ARGS holds --resume; both together would silently swap the configuration.
    assert main(["--config", str(ROOT / "configs/sst2-minilm.yaml"), "--resume", str(run)]) == 2
    assert "drop --config" in capsys.readouterr().err
    assert main(["--resume", str(run), "--max_steps", "6", "--freeze_word_embeddings", "true"]) == 2
    assert "cannot resume from" in capsys.readouterr().err.strip().splitlines()[-1]
    assert "freeze_word_embeddings: false" in saved
    assert (run / "train_config.yaml").read_text() == saved  # a failed resume leaves the run as it was


def test_without_the_analysis_trainer_scores_the_model(tiny_model_dir, tiny_data, tmp_path):
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--run_analysis", "false")
    run_dir, metrics = train(load_config(args))
    assert metrics["accuracy"] == pytest.approx(accuracy_of(run_dir, tiny_data[1])) and "evaluation" not in metrics
    assert (run_dir / "plots/training_curves.png").is_file() and not (run_dir / "error_analysis.md").exists()
    history = json.loads((run_dir / "log_history.json").read_text())
    assert not any(key.startswith("final_") for record in history for key in record)  # curves hold training evals only


def test_class_weights_balanced_explicit_and_bad():
    from trainer import UserError
    from trainer.training.loop import class_weights

    labels = np.array([0] * 6 + [1] * 2)
    assert class_weights(["balanced"], labels, ["negative", "positive"]) == [round(8 / 12, 6), 2.0]  # n / (k x count)
    assert class_weights(["1", "3"], labels, ["negative", "positive"]) == [1.0, 3.0]
    assert class_weights(None, labels, ["negative", "positive"]) is None
    for bad in (["2"], ["a", "b"], ["0", "1"]):
        with pytest.raises(UserError, match="give 'balanced' or 2 positive numbers, one per label"):
            class_weights(bad, labels, ["negative", "positive"])
    with pytest.raises(UserError, match="no training rows of neutral"):
        class_weights(["balanced"], labels, ["negative", "positive", "neutral"])


def test_the_weighted_loss_is_the_class_weighted_mean_of_cross_entropy(tiny_model_dir):
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainer.training.loop import SentimentTrainer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(["good film", "bad film", "dull plot"], padding=True,
                                                         return_tensors="pt")  # fmt: skip
    labels = torch.tensor([1, 0, 0])
    owner = SimpleNamespace(class_weights=torch.tensor([1.0, 3.0]), multi_label=False)
    with torch.no_grad():
        loss = SentimentTrainer.compute_loss(owner, model, {**batch, "labels": labels})
        per_example = torch.nn.functional.cross_entropy(model(**batch).logits, labels, reduction="none")
    weights = torch.tensor([3.0, 1.0, 1.0])  # the weight of each example's true class
    assert torch.allclose(loss, (per_example * weights).sum() / weights.sum())


def test_multi_label_class_weights_weigh_each_labels_positives(tiny_model_dir):
    """--class_weights on multi-label data: the BCE per label with its positives weighted (negatives / positives)."""
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainer.training.loop import SentimentTrainer, positive_weights

    targets = np.array([[1, 0], [0, 0], [1, 1], [0, 0]])
    assert positive_weights(["balanced"], targets, ["joy", "fear"]) == [1.0, 3.0]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(["good film", "bad film", "dull plot", "fun"], padding=True,
                                                         return_tensors="pt")  # fmt: skip
    labels = torch.tensor(targets, dtype=torch.float32)
    owner = SimpleNamespace(class_weights=torch.tensor([1.0, 3.0]), multi_label=True)
    with torch.no_grad():
        loss = SentimentTrainer.compute_loss(owner, model, {**batch, "labels": labels})
        logits = model(**batch).logits
    by_hand = -(torch.tensor([1.0, 3.0]) * labels * torch.nn.functional.logsigmoid(logits)
                + (1 - labels) * torch.nn.functional.logsigmoid(-logits)).mean()  # fmt: skip
    assert torch.allclose(loss, by_hand)


def test_class_weights_train_and_are_recorded(tiny_model_dir, tiny_data, tmp_path):
    run_dir, metrics = train(load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_steps", "2",
                                                   "--class_weights", "balanced")))  # fmt: skip
    assert metrics["class_weights"] == {"negative": 0.666667, "positive": 2.0}  # 48 negative, 16 positive rows
    assert yaml.safe_load((run_dir / "train_config.yaml").read_text())["class_weights"] == ["balanced"]


@pytest.mark.slow  # trains and resumes, 4-5.5 s
def test_class_weights_are_saved_and_kept_by_resume_and_by_hpo_trials(tiny_model_dir, tmp_path):
    """Five string labels, names from the data: the balanced weights are computed once, saved in train_config.yaml,
    recorded in metrics.json, and a resumed run or an HPO trial built from the same flags trains with them too."""
    from tests.conftest import FIVE_LABELS, make_five_label_data, unnamed_preset
    from trainer.search.flags import trial_config

    data = make_five_label_data(tmp_path)
    skewed = pd.read_csv(data[0])
    skewed = skewed[(skewed["label"] != "very positive") | (skewed.index % 3 == 0)]  # fewer very positive rows
    skewed.to_csv(data[0], index=False)
    run = tmp_path / "run"
    args = tiny_args(tiny_model_dir, data, run, "--max_steps", "3", "--class_weights", "balanced")
    args[1] = str(unnamed_preset(tmp_path))
    train(load_config(args))
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["class_weights"] == ["balanced"] and saved["label_names"] == FIVE_LABELS

    _, metrics = train(load_config(["--resume", str(run), "--max_steps", "6", "--disable_tqdm", "true"]))
    counts = skewed["label"].value_counts()
    expected = {name: round(len(skewed) / (5 * counts[name]), 6) for name in FIVE_LABELS}
    assert metrics["global_step"] == 6 and metrics["class_weights"] == pytest.approx(expected)
    assert metrics["class_weights"]["very positive"] > 1 > metrics["class_weights"]["neutral"]

    cadence = {"per_device_train_batch_size": 8, "eval_steps": 3, "save_steps": 3}
    trial = trial_config(load_config(args), cadence, {"learning_rate": 1e-4}, tmp_path / "trial", "hpo")
    assert trial.model.class_weights == ["balanced"] and trial.training.learning_rate == 1e-4
