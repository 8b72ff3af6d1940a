"""`make gpu-check`: the nvidia-smi summary, the steps' bookkeeping (fallback teacher, skips, time limit, a JSON
saved at every step), the table, and the whole check as a CPU dry run."""

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from trainer import gpu_models, gpu_steps
from trainer.gpu_check import main as gpu_check_main
from trainer.gpu_steps import Plan, last_line, nccl_skip_reason, parse_nvidia_smi, run_check, run_logged, table

# nvidia-smi's output in its own format, as on a lent two-GPU H200 machine (driver and memory as KINDS.md records)
QUERY = "NVIDIA H200, 143771 MiB, 580.159.03\nNVIDIA H200, 143771 MiB, 580.159.03\n"
BANNER = """Sat Dec  5 04:42:21 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.03             Driver Version: 580.159.03     CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
"""

SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"  # a step that runs on: its pid, then waits


def plan(tmp_path: Path, **changes) -> Plan:
    base = Plan(runs_dir=tmp_path / "runs", logs_dir=tmp_path / "logs", teacher_model="bert-base-uncased",
                teacher_fallback="minilm-folder", student_model="minilm-folder", gpus=1)  # fmt: skip
    return replace(base, **changes)


def test_nvidia_smi_summary_is_parsed():
    summary = parse_nvidia_smi(QUERY, BANNER)
    h200 = {"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.159.03"}
    assert summary == {"count": 2, "driver": "580.159.03", "cuda": "13.0", "gpus": [h200, h200]}
    # a name with a comma in it keeps it: the last two fields are split off
    assert parse_nvidia_smi("Tesla V100, PCIe, 16384 MiB, 535.1\n", "")["gpus"][0]["name"] == "Tesla V100, PCIe"


def test_no_nvidia_smi_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_steps.nvidia_smi() == {"error": "nvidia-smi not found"}


def test_a_failed_command_says_its_error_line():
    log = "INFO loading\nerror: cannot load model 'bert-base-uncased' (offline): use a model folder\nbye\n"
    assert last_line(log) == "cannot load model 'bert-base-uncased' (offline): use a model folder"
    assert last_line("Traceback\n  File x\ntorch.OutOfMemoryError: CUDA out of memory\n\n").startswith("torch.OutOf")
    assert last_line("") == ""


def test_nccl_is_skipped_with_its_reason():
    assert nccl_skip_reason(2, dry_run=False) is None
    assert nccl_skip_reason(1, dry_run=False) == "1 GPU(s) here: the NCCL path needs 2"
    assert "CPU" in nccl_skip_reason(8, dry_run=True)


def test_a_step_past_the_time_limit_is_stopped(tmp_path):
    code, _ = run_logged([sys.executable, "-c", SLEEPER], tmp_path / "sleep.log", timeout=1.5)
    assert code is None  # stopped at its limit: a step that ran to its end has an exit code
    with pytest.raises(ProcessLookupError):  # stopped, not left running
        os.kill(int((tmp_path / "sleep.log").read_text()), 0)
    late = gpu_steps.train_step(plan(tmp_path, deadline=time.monotonic() - 1), "minilm", ["--config", "x.yaml"])
    assert late["status"] == "skipped" and "--time_limit" in late["reason"] and "seconds" not in late
    # bert-base's shape is not even built once the time is up
    teacher = {"status": "failed", "reason": "stopped at --time_limit after 9 s"}
    shape = gpu_steps.bert_shape_step(plan(tmp_path, deadline=time.monotonic() - 1), {"teacher": teacher})
    assert shape == {"status": "skipped", "reason": "no time left under --time_limit"}
    assert not (tmp_path / "runs").exists()


def test_a_stopped_check_ends_the_running_step(tmp_path):
    """Ctrl-C (and SIGTERM, which the entry point turns into an exit) while a step runs: its processes end too,
    though they run in their own process group."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_logged([sys.executable, "-c", SLEEPER], tmp_path / "step.log", timeout=None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "step.log").read_text()), 0)


def fake_training(outcomes: dict):
    """train_step's stand-in: each model's outcome as given, without training."""

    def train_step(plan, name, flags, launch=None):
        model = flags[flags.index("--model_name_or_path") + 1]
        run_dir = str(plan.runs_dir / name)
        if outcomes[model] == "ok":
            return {"status": "ok", "run_dir": run_dir, "model": model, "accuracy": 0.9, "seconds": 5.0}
        return {"status": "failed", "run_dir": run_dir, "reason": outcomes[model], "seconds": 1.0}

    return train_step


def test_a_teacher_that_cannot_load_falls_back_named_as_such(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_steps, "train_step", fake_training({"bert-base-uncased": "cannot load model",
                                                                "minilm-folder": "ok"}))  # fmt: skip
    teacher = gpu_steps.teacher_step(plan(tmp_path), {})
    assert teacher["status"] == "ok" and teacher["model"] == "minilm-folder"
    assert teacher["requested_model"] == "bert-base-uncased" and teacher["fallback_reason"] == "cannot load model"
    assert teacher["run_dir"].endswith("teacher-fallback")
    # no fallback asked for: the failure stands, and the student has no teacher
    failed = gpu_steps.teacher_step(plan(tmp_path, teacher_fallback=None), {})
    assert failed["status"] == "failed" and "requested_model" not in failed
    student = gpu_steps.student_step(plan(tmp_path), {"teacher": failed})
    assert student == {"status": "skipped", "reason": "no teacher run: the teacher step failed (cannot load model)"}


def test_the_report_is_saved_before_and_after_every_step(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_steps, "train_step", fake_training({"bert-base-uncased": "ok", "minilm-folder": "ok"}))
    saved = []
    report = run_check(plan(tmp_path), {}, lambda r: saved.append(json.loads(json.dumps(r))))
    assert len(saved) == 2 * len(gpu_steps.STEPS)
    assert saved[0]["steps"] == {"teacher": {"status": "running"}}
    assert [s["status"] for s in report["steps"].values()] == ["ok", "skipped", "ok", "skipped", "ok"]
    assert report["steps"]["bert_shape"]["reason"] == "the teacher step trained bert-base-uncased itself"
    assert report["steps"]["student"]["teacher"] == str(tmp_path / "runs" / "teacher")


def test_two_gpus_two_processes_through_launch_and_one_process_on_one_gpu(monkeypatch, tmp_path):
    started = []

    def run_logged(cmd, log, timeout, env):
        started.append((cmd, env))
        log.write_text("")
        return 2, 1.0

    monkeypatch.setattr(gpu_steps, "run_logged", run_logged)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "logs").mkdir()
    record = gpu_steps.nccl_step(plan(tmp_path, gpus=2), {})
    assert started[0][0][1:6] == ["-m", "trainer.launch", "--nproc_per_node", "2", "-m"] and started[0][1] == {}
    assert record["command"].startswith(
        "python -m trainer.launch --nproc_per_node 2 -m trainer.train --config "
        "configs/sst2-minilm.yaml --model_name_or_path minilm-folder --max_steps 200"
    )
    assert record["status"] == "failed" and record["reason"] == "exit 2"  # an empty log: its exit code
    # a one-process step on the same machine trains on one GPU, and its command says so
    single = gpu_steps.minilm_step(plan(tmp_path, gpus=2), {})
    assert started[1][1] == {"CUDA_VISIBLE_DEVICES": "0"}
    assert single["command"].startswith("CUDA_VISIBLE_DEVICES=0 python -m trainer.train --config")
    assert gpu_steps.minilm_step(plan(tmp_path, gpus=1), {})["command"].startswith("python -m")
    assert started[2][1] == {}


def test_every_step_runs_flags_that_train_reads_as_meant(monkeypatch, tmp_path):
    """The commands of a real (not dry) check on a two-GPU machine where bert-base cannot load, read by the config
    loader each training process runs, so a renamed option fails here rather than on a lent GPU."""
    from trainer.config import load_config

    started = []

    def run_logged(cmd, log, timeout, env):
        argv = cmd[cmd.index("trainer.train") + 1 :]
        started.append(argv)
        log.write_text("error: cannot load model 'bert-base-uncased'\n" if "bert-base-uncased" in argv else "")
        if "bert-base-uncased" in argv:
            return 2, 1.0
        run_dir = Path(argv[argv.index("--output_dir") + 1])
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "model": "m"}))
        return 0, 1.0

    def bert_shape_model(folder, tokenizer_from, **shape):  # bert-base's 440 MB of random weights: not needed here
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 12, "hidden_size": 768, "vocab_size": 9}))
        return folder

    monkeypatch.setattr(gpu_steps, "run_logged", run_logged)
    monkeypatch.setattr(gpu_steps, "bert_shape_model", bert_shape_model)
    (tmp_path / "logs").mkdir()
    report = run_check(plan(tmp_path, gpus=2), {}, lambda r: None)
    assert [s["status"] for s in report["steps"].values()] == ["ok"] * 5
    # the machine's precision is not this one's: --bf16 false after the step's flags, as a later flag wins
    configs = {Path(a[a.index("--output_dir") + 1]).name: load_config([*a, "--use_cpu", "true", "--bf16", "false"])
               for a in started}  # fmt: skip
    assert list(configs) == ["teacher", "teacher-fallback", "bert-shape", "minilm", "nccl", "student"]
    assert configs["teacher"].model.model_name_or_path == "bert-base-uncased"
    assert configs["teacher-fallback"].training.num_train_epochs == 1 and "--bf16" in started[1]
    assert configs["teacher-fallback"].preset == "sst2-bert-base"
    assert configs["bert-shape"].training.max_steps == 300 and not configs["bert-shape"].run.run_analysis
    assert configs["minilm"].preset == "sst2-minilm" and configs["minilm"].training.max_steps == -1
    assert configs["nccl"].training.max_steps == 200 and not configs["nccl"].run.run_analysis
    assert configs["student"].model.teacher == [str(tmp_path / "runs" / "teacher-fallback")]
    assert all(c.run.output_dir.startswith(str(tmp_path / "runs")) for c in configs.values())


def test_the_table_shows_each_step_its_figures_or_its_reason():
    report = {
        "machine": {"nvidia_smi": parse_nvidia_smi(QUERY, BANNER), "torch": {"torch": "2.11.0", "gpus": 2}},
        "steps": {
            "teacher": {"status": "ok", "accuracy": 0.9123, "train_samples_per_second": 1234.5, "train_runtime": 55,
                        "seconds": 70, "model": "minilm", "requested_model": "bert-base-uncased",
                        "fallback_reason": "offline"},
            "nccl": {"status": "skipped", "reason": "1 GPU(s) here: the NCCL path needs 2"},
            "student": {"status": "ok", "accuracy": 0.9, "accuracy_minus_plain": 0.0023, "model": "m"},
        },
    }  # fmt: skip
    lines = table(report).splitlines()
    assert lines[0] == "GPUs: NVIDIA H200 (143771 MiB), NVIDIA H200 (143771 MiB); driver 580.159.03, CUDA 13.0; " \
                       "torch 2.11.0 sees 2 GPU(s)"  # fmt: skip
    assert "91.23%" in lines[2] and "1234.5" in lines[2] and "fallback: bert-base-uncased failed: offline" in lines[2]
    assert lines[3].split()[:2] == ["nccl", "skipped"] and lines[3].endswith("the NCCL path needs 2")
    assert lines[4].endswith("+0.23% against the plain MiniLM")


@pytest.mark.data_mirror("sst2")
def test_pack_carries_data_and_half_weights_that_train_in_fp32(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from trainer.data import mirror_folder

    size = gpu_models.pack(tmp_path / "carry", str(tiny_model_dir))
    carried = [path for path in (tmp_path / "carry").rglob("*") if path.is_file()]
    assert size == sum(path.stat().st_size for path in carried)
    sst2 = mirror_folder("stanfordnlp/sst2")
    assert (tmp_path / "carry/data/sst2/train.tsv").read_bytes() == (sst2 / "train.tsv").read_bytes()
    original, half = (
        load_file(tiny_model_dir / "model.safetensors"),
        load_file(tmp_path / "carry/model/model.safetensors"),
    )
    assert {v.dtype for v in half.values()} == {torch.float16} and half.keys() == original.keys()
    # on the machine: an fp32 copy to train from; an fp32 folder is used as it is
    wide = gpu_models.full_precision(str(tmp_path / "carry/model"), tmp_path / "wide")
    assert wide == str(tmp_path / "wide") and (tmp_path / "wide/vocab.txt").is_file()
    restored = load_file(tmp_path / "wide/model.safetensors")
    assert all(restored[k].dtype == torch.float32 and torch.equal(restored[k], half[k].float()) for k in half)
    assert gpu_models.full_precision(str(tiny_model_dir), tmp_path / "unused") == str(tiny_model_dir)
    assert not (tmp_path / "unused").exists()


@pytest.mark.slow
@pytest.mark.data_mirror("sst2")
def test_dry_run_measures_every_step_on_cpu(tmp_path):
    """As on a lent machine: the teacher's weights are out of reach, so the fallback teaches and bert-base's shape
    is timed."""
    output, runs = tmp_path / "out" / "gpu_check.json", tmp_path / "runs"
    argv = ["--dry_run", "--output", str(output), "--runs_dir", str(runs), "--teacher_model", str(tmp_path / "none")]
    assert gpu_check_main(argv) == 0
    report = json.loads(output.read_text())
    steps = report["steps"]
    assert report["dry_run"] is True and list(steps) == ["teacher", "bert_shape", "minilm", "nccl", "student"]
    assert "error" in report["machine"]["nvidia_smi"] or report["machine"]["nvidia_smi"]["count"] >= 1
    for name in ("teacher", "minilm", "student", "bert_shape"):
        step = steps[name]
        assert step["status"] == "ok", step
        assert 0 <= step["accuracy"] <= 1 and step["train_samples_per_second"] > 0, step
        assert step["global_step"] == 4 and step["train_samples"] == 256 and Path(step["log"]).is_file()
    teacher = steps["teacher"]
    assert teacher["command"].startswith("python -m trainer.train --config configs/sst2-bert-base.yaml")
    assert teacher["model"] == str(runs / "tiny-bert") and teacher["requested_model"] == str(tmp_path / "none")
    assert teacher["fallback_reason"].startswith("no model at ") and (output.parent / "logs/teacher.log").is_file()
    assert steps["bert_shape"]["model"] == "bert-base-uncased's shape, random weights"
    assert steps["bert_shape"]["shape"]["num_hidden_layers"] == 2  # the dry run's; bert-base's 12 on a GPU
    assert steps["nccl"] == {"status": "skipped", "reason": "--dry_run trains on CPU: the NCCL path needs 2 GPUs"}
    # the student learned from the teacher run (its own record says so), and is compared with the plain MiniLM
    assert steps["student"]["teachers"] == [teacher["run_dir"]] == [str(runs / "teacher-fallback")]
    assert steps["student"]["plain_accuracy"] == steps["minilm"]["accuracy"]
    assert steps["student"]["accuracy_minus_plain"] == pytest.approx(
        steps["student"]["accuracy"] - steps["minilm"]["accuracy"]
    )
