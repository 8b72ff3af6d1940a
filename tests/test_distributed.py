"""Multi-process training: two CPU processes (DDP over gloo) launched by trainer.launch, and launches that fail."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, make_tiny_data, tiny_args, write_tsv
from trainer import UserError
from trainer.launch import explicit_port, process_count
from trainer.modeling import load_classifier
from trainer.training.loop import check_world_size


def launch(*args: str, nproc: str = "2", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer.launch", "--nproc_per_node", nproc, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def run_files(run_dir: Path) -> set[str]:
    """The run folder's files, without checkpoints (one RNG state per process, by design) and the int8 export
    that `trainer.predict` caches there on first use."""
    skip = {"checkpoints", "onnx"}
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and not skip & set(p.parts)}


def messages(stderr: str) -> list[str]:
    """The problems a user reads: stderr without progress bars and informational log lines."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not re.search(r"\d+%\|", line) and not line.startswith(("INFO", "WARNING"))
    ]


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny training data, and 15 validation rows: two processes get 8 each, one of them padded with a repeat."""
    folder = tmp_path_factory.mktemp("odd")
    train, dev = make_tiny_data(folder)
    rows = pd.read_csv(train, sep="\t")
    rows = pd.concat([rows[rows.label == 1].head(1), rows[rows.label == 0].head(14)])  # row 0: the rare class
    return train, write_tsv(rows, folder / "dev15.tsv")


@pytest.fixture(scope="module")
def ddp_run(tiny_model_dir, odd_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    args = tiny_args(tiny_model_dir, odd_data, run_dir, "--bf16", "false", "--learning_rate", "5e-3")
    return run_dir, launch("-m", "trainer.train", *args)


@pytest.mark.slow  # torchrun trains with two processes (ddp_run)
def test_two_processes_write_one_complete_run_folder(ddp_run, tiny_run):
    run_dir, proc = ddp_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run_files(run_dir) == run_files(tiny_run)  # the same shape as a one-process run
    assert proc.stdout.count("accuracy ") == 1 and proc.stdout.count("run folder:") == 1  # one process reports
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2
    assert metrics["environment"]["command"].startswith("torchrun --nproc_per_node 2 -m trainer.train")
    assert metrics["eval_samples"] == 15 and sum(metrics["label_counts"]["eval"].values()) == 15
    checkpoint = run_dir / "checkpoints/checkpoint-6"
    assert {p.name for p in checkpoint.glob("rng_state*")} == {"rng_state_0.pth", "rng_state_1.pth"}
    # 64 training rows in batches of 8 per process: 6 steps cover 96 rows, 1.5 epochs (one process would do 0.75).
    assert json.loads((checkpoint / "trainer_state.json").read_text())["epoch"] == 1.5
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(predictions) == 15


@pytest.mark.slow  # torchrun trains with two processes (ddp_run)
def test_distributed_evaluation_counts_every_row_once(ddp_run, odd_data):
    """The curve's last evaluation equals a one-process evaluation of the same weights on the 15 rows,
    and differs from what a repeated (padding) row or a dropped row would give."""
    run_dir, proc = ddp_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    last_eval = [entry for entry in json.loads((run_dir / "log_history.json").read_text()) if "eval_loss" in entry][-1]
    assert last_eval["step"] == 6
    rows = pd.read_csv(odd_data[1], sep="\t")
    proba = load_classifier(str(run_dir / "checkpoints/checkpoint-6")).predict_proba(rows.sentence.tolist())
    losses = -np.log(proba[np.arange(len(rows)), rows.label.to_numpy()])
    correct = proba.argmax(axis=1) == rows.label.to_numpy()
    assert last_eval["eval_loss"] == pytest.approx(losses.mean(), abs=2e-5)
    assert last_eval["eval_accuracy"] == pytest.approx(correct.mean())
    repeated, dropped = np.append(losses, losses[0]).mean(), losses[1:].mean()
    assert abs(repeated - losses.mean()) > 1e-3 and abs(dropped - losses.mean()) > 1e-3  # the check can tell


def test_port_in_use_is_one_line(tiny_model_dir, tiny_data, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run")
        proc = launch("--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "trainer.train", *args)
    assert proc.returncode == 2
    assert messages(proc.stderr) == [
        f"error: port {port} on 127.0.0.1 is in use (another training run?): "
        "pass another --master_port (MASTER_PORT), or none to pick a free one"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # torchrun starts three training processes
def test_more_processes_than_examples_is_one_line(tiny_model_dir, tiny_data, tmp_path):
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_eval_samples", "2")
    proc = launch("-m", "trainer.train", *args, nproc="3")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert messages(proc.stderr) == [
        "error: 3 processes but only 64 training and 2 validation examples: use at most NPROC=2 or more data"
    ]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # torchrun starts two training processes
def test_a_worker_error_is_printed_once(tiny_model_dir, tiny_data, tmp_path):
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_lenght", "64")
    proc = launch("-m", "trainer.train", *args)
    assert proc.returncode == 2
    assert messages(proc.stderr) == ["error: unknown flag --max_lenght: did you mean --max_length?"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "start at least one process"), ("two", "is not a number"), ("-1", "start at least one process")],
)
def test_bad_process_counts(value, message):
    proc = launch("-m", "trainer.train", nproc=value)
    assert proc.returncode == 2 and len(messages(proc.stderr)) == 1 and message in proc.stderr
    with pytest.raises(UserError, match=message):
        process_count(value)


def test_launch_helpers(monkeypatch):
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("PET_MASTER_PORT", raising=False)
    assert process_count("auto") is None and process_count("4") == 4
    assert not explicit_port(["--nproc_per_node", "2", "-m", "trainer.train"])
    assert explicit_port(["--master_port=29501"]) and explicit_port(["--master-port", "1"])
    monkeypatch.setenv("MASTER_PORT", "29501")
    assert explicit_port([])
    check_world_size(2, 2, 2)
    with pytest.raises(UserError, match="use at most NPROC=3"):
        check_world_size(4, 10, 3)


@pytest.mark.slow  # two torchrun nodes train
def test_two_nodes_rendezvous_with_the_documented_command(tiny_model_dir, tiny_data, tmp_path):
    """The README's multi-node line, with two 'machines' on 127.0.0.1: one process each, one run folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = ["--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "t"]
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_steps", "2")
    command = [sys.executable, "-m", "trainer.launch", "--nproc_per_node", "1", *node, "-m", "trainer.train", *args]
    nodes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert sum(out.count("run folder:") for out, _ in outputs) == 1
    environment = json.loads((tmp_path / "run" / "metrics.json").read_text())["environment"]
    assert environment["processes"] == 2
    assert environment["command"].startswith("torchrun --nnodes 2 --nproc_per_node 1 -m trainer.train")


@pytest.mark.slow  # torchrun starts two worker processes
def test_a_crashed_process_is_named_in_one_line(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import os, signal, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "time.sleep(60)\n"
    )
    proc = launch(str(script))
    assert proc.returncode == 1
    assert messages(proc.stderr) == ["error: training process 1 was killed by signal SIGKILL: see its output above"]


@pytest.mark.slow  # accelerate launch trains with two processes
def test_accelerate_launch_works_too(tiny_model_dir, tiny_data, tmp_path):
    args = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--max_steps", "3", "--run_analysis", "false")
    accelerate = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.train", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2 and metrics["global_step"] == 3
    assert {p.name for p in (tmp_path / "run/checkpoints/checkpoint-3").glob("rng_state*")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }


@pytest.mark.slow  # two processes distil from the tiny run, ~20 s
def test_two_processes_distil_from_one_cached_scoring_of_the_teacher(tiny_model_dir, tiny_run, tmp_path):
    data = make_tiny_data(tmp_path)
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "ddp", "--bf16", "false", "--teacher", str(tiny_run))
    proc = launch("-m", "trainer.train", *args)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "runs" / "ddp" / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2 and metrics["distillation"]["teachers"][0]["model"] == str(tiny_run)
    assert len(list((tmp_path / "runs" / "teacher_cache").glob("*.npz"))) == 1  # scored once, read by both


@pytest.mark.slow  # two processes train the teacher together, then the student, ~30 s
def test_two_processes_train_a_self_teacher_together_then_learn_from_it(tiny_model_dir, tmp_path):
    data = make_tiny_data(tmp_path)
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "ddp", "--bf16", "false", "--teacher", "self")
    proc = launch("-m", "trainer.train", *args)
    assert proc.returncode == 0, proc.stderr
    (teacher,) = (tmp_path / "runs" / "teacher_cache").glob("self-*")
    assert json.loads((teacher / "metrics.json").read_text())["environment"]["processes"] == 2
    metrics = json.loads((tmp_path / "runs" / "ddp" / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2
    assert metrics["distillation"]["teachers"][0] == {**metrics["distillation"]["teachers"][0], "model": str(teacher),
                                                      "self": True}  # fmt: skip
