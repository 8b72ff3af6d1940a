"""The steps of `make gpu-check`: the machine's GPUs, then each training run as a subprocess of the commands users
run (`trainer.train`, `trainer.launch`), its figures read from the run folder's metrics.json, or its failure as one
line; the report written after every step."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer import UserError
from trainer.gpu_models import BERT_PRESET, MINILM_PRESET, ROOT, TEACHER_MODEL, bert_shape_model, preset_value
from trainer.run_folder import METRICS

logger = logging.getLogger(__name__)

NCCL_STEPS = 200  # a short two-process run: enough to see DDP over NCCL step and synchronise
SHAPE_STEPS = 300  # bert-base's shape with random weights: enough steps to time past the start-up
DRY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# --dry_run: every step on CPU, a few steps on a few hundred SST-2 rows (later flags override the preset's)
DRY_FLAGS = ("--use_cpu", "true", "--max_steps", "4", "--max_train_samples", "256", "--max_eval_samples", "128",
             "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "16",
             "--per_device_eval_batch_size", "64", "--n_bootstrap", "20")  # fmt: skip
FIGURES = ("accuracy", "train_samples_per_second", "train_runtime", "wall_time_seconds", "global_step",
           "train_samples")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What the check trains, where, and until when."""

    runs_dir: Path
    logs_dir: Path
    teacher_model: str
    teacher_fallback: str | None  # trained as the teacher when teacher_model fails; None: no fallback
    student_model: str | None  # None: the MiniLM preset's own base model
    gpus: int
    dry_run: bool = False
    deadline: float | None = None  # time.monotonic() after which no step starts and a running one is stopped


def parse_nvidia_smi(query: str, banner: str) -> dict:
    """The GPUs from `nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader` and the CUDA
    version from plain `nvidia-smi`'s banner."""
    gpus = []
    for line in query.strip().splitlines():
        name, memory, driver = (part.strip() for part in line.rsplit(",", 2))
        gpus.append({"name": name, "memory": memory, "driver": driver})
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    return {"count": len(gpus), "gpus": gpus, "driver": gpus[0]["driver"] if gpus else None,
            "cuda": cuda.group(1) if cuda else None}  # fmt: skip


def nvidia_smi() -> dict:
    """The nvidia-smi summary, or {"error": one line} where there is none or it fails."""
    if shutil.which("nvidia-smi") is None:
        return {"error": "nvidia-smi not found"}
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        answers = [subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
                   for cmd in (query, ["nvidia-smi"])]  # fmt: skip
        return parse_nvidia_smi(*answers)
    except (subprocess.SubprocessError, OSError, ValueError) as err:
        detail = getattr(err, "stderr", None) or str(err)
        return {"error": f"nvidia-smi failed: {last_line(detail) or type(err).__name__}"}


def torch_devices() -> dict:
    """What PyTorch sees: its version and CUDA build, the GPU count, bf16 support."""
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda_build": torch.version.cuda, "gpus": torch.cuda.device_count(),
            "bf16": bool(cuda and torch.cuda.is_bf16_supported())}  # fmt: skip


def last_line(text: str) -> str:
    """Why a command failed: its last `error: ...` line (without the prefix), else its last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return ((errors or lines or [""])[-1]).removeprefix("error: ")[:300]


def run_logged(cmd: list[str], log: Path, timeout: float | None, env: dict | None = None) -> tuple[int | None, float]:
    """Run `cmd` with its output in `log`, `env` added to the environment; (exit code, or None when stopped at
    `timeout`; seconds)."""
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as out:
        # in the repository, where the presets' relative paths hold; its own process group, so that a stop also
        # ends torchrun's workers and the dataloader processes
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        code = None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:  # past the time limit, or the check itself stopped (Ctrl-C, SIGTERM)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return code, round(time.monotonic() - start, 1)


def read_figures(run_dir: Path) -> dict:
    """The measured figures of a finished run folder."""
    metrics = json.loads((run_dir / METRICS).read_text())
    environment, teaching = metrics.get("environment") or {}, metrics.get("distillation")
    figures = {"model": metrics.get("model"), **{key: metrics.get(key) for key in FIGURES},
               "precision": environment.get("precision"), "processes": environment.get("processes")}  # fmt: skip
    if teaching:  # the teachers the run says it learned from, not the flag it was given
        figures["teachers"] = [teacher["model"] for teacher in teaching["teachers"]]
    return figures


def train_step(plan: Plan, name: str, flags: list[str], launch: list[str] | None = None) -> dict:
    """One training run as users start it; its figures, or status "failed" with the one-line reason."""
    run_dir = plan.runs_dir / name
    argv = [*flags, "--output_dir", str(run_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    argv += list(DRY_FLAGS) if plan.dry_run else []
    entry = ["-m", "trainer.launch", *launch, "-m", "trainer.train"] if launch else ["-m", "trainer.train"]
    # one process on a machine of several GPUs: one GPU, as the figures say (Trainer would spread it with DataParallel)
    env = (
        {"CUDA_VISIBLE_DEVICES": "0"}
        if not launch and plan.gpus > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ
        else {}
    )
    record = {"command": shlex.join([*(f"{k}={v}" for k, v in env.items()), "python", *entry, *argv]),
              "run_dir": str(run_dir), "log": str(plan.logs_dir / f"{name}.log")}  # fmt: skip
    left = None if plan.deadline is None else plan.deadline - time.monotonic()
    if left is not None and left <= 0:
        return {**record, "status": "skipped", "reason": "no time left under --time_limit"}
    logger.info("%s: %s", name, record["command"])
    code, seconds = run_logged([sys.executable, *entry, *argv], Path(record["log"]), left, env)
    record["seconds"] = seconds
    if code is None:
        return {**record, "status": "failed", "reason": f"stopped at --time_limit after {seconds:.0f} s"}
    if code != 0:
        return {**record, "status": "failed", "reason": last_line(Path(record["log"]).read_text()) or f"exit {code}"}
    try:
        return {**record, "status": "ok", **read_figures(run_dir)}
    except (OSError, ValueError) as err:
        return {**record, "status": "failed", "reason": f"no figures in {run_dir / METRICS}: {err}"}


def model_flag(model: str | None) -> list[str]:
    return [] if model is None else ["--model_name_or_path", model]


def teacher_step(plan: Plan, steps: dict) -> dict:
    """bert-base, one epoch of SST-2 in bf16; when it cannot train (its weights out of reach on a machine without
    the Hub), the fallback model trained with the same recipe, named as such."""

    def train_teacher(name: str, model: str) -> dict:
        precision = [] if plan.dry_run else ["--bf16", "true"]
        flags = ["--config", BERT_PRESET, *model_flag(model), "--num_train_epochs", "1", *precision]
        return {**train_step(plan, name, flags), "model": model}

    record = train_teacher("teacher", plan.teacher_model)
    fallback_fits = plan.teacher_fallback not in (None, plan.teacher_model)
    if record["status"] != "failed" or not fallback_fits or "time_limit" in record["reason"]:
        return record
    fallback = train_teacher("teacher-fallback", plan.teacher_fallback)
    return {**fallback, "requested_model": plan.teacher_model, "fallback_reason": record["reason"]}


def minilm_step(plan: Plan, steps: dict) -> dict:
    """The default preset as `make train` runs it: its full training time and dev accuracy."""
    return train_step(plan, "minilm", ["--config", MINILM_PRESET, *model_flag(plan.student_model)])


def nccl_skip_reason(gpus: int, dry_run: bool) -> str | None:
    """Why the two-process NCCL step cannot run here, or None when it can."""
    if dry_run:
        return "--dry_run trains on CPU: the NCCL path needs 2 GPUs"
    return None if gpus >= 2 else f"{gpus} GPU(s) here: the NCCL path needs 2"


def nccl_step(plan: Plan, steps: dict) -> dict:
    """Two processes, one per GPU, through trainer.launch: DDP over NCCL, a short run."""
    if (reason := nccl_skip_reason(plan.gpus, plan.dry_run)) is not None:
        return {"status": "skipped", "reason": reason}
    flags = ["--config", MINILM_PRESET, *model_flag(plan.student_model), "--max_steps", str(NCCL_STEPS),
             "--run_analysis", "false"]  # fmt: skip
    return train_step(plan, "nccl", flags, launch=["--nproc_per_node", "2"])


def student_step(plan: Plan, steps: dict) -> dict:
    """The MiniLM preset distilled from the teacher run (--teacher), against the plain MiniLM's dev accuracy."""
    teacher, plain = steps.get("teacher", {}), steps.get("minilm", {})
    if teacher.get("status") != "ok":
        why = f" ({teacher['reason']})" if teacher.get("reason") else ""
        return {
            "status": "skipped",
            "reason": f"no teacher run: the teacher step {teacher.get('status', 'did not run')}{why}",
        }
    flags = ["--config", MINILM_PRESET, *model_flag(plan.student_model), "--teacher", teacher["run_dir"]]
    record = {**train_step(plan, "student", flags), "teacher": teacher["run_dir"], "teacher_model": teacher["model"]}
    if record["status"] == "ok" and plain.get("status") == "ok":
        record.update(plain_accuracy=plain["accuracy"], accuracy_minus_plain=record["accuracy"] - plain["accuracy"])
    return record


def bert_shape_step(plan: Plan, steps: dict) -> dict:
    """When bert-base's weights were out of reach: its architecture with random weights, a short run with the
    bert-base recipe, for its training samples/s on this machine (its accuracy means nothing)."""
    teacher = steps.get("teacher", {})
    if teacher.get("status") == "ok" and "fallback_reason" not in teacher:
        return {"status": "skipped", "reason": f"the teacher step trained {teacher['model']} itself"}
    if teacher.get("status") == "skipped" or (plan.deadline is not None and time.monotonic() >= plan.deadline):
        return {"status": "skipped", "reason": "no time left under --time_limit"}  # before writing 440 MB of weights
    shape = DRY_SHAPE if plan.dry_run else {}
    try:
        folder = bert_shape_model(plan.runs_dir / "bert-shape-model", plan.student_model or preset_value(
            MINILM_PRESET, "model_name_or_path"), **shape)  # fmt: skip
    except (UserError, OSError, ValueError) as err:
        return {"status": "failed", "reason": f"cannot build bert-base's shape: {last_line(str(err))}"}
    precision = [] if plan.dry_run else ["--bf16", "true"]
    flags = ["--config", BERT_PRESET, "--model_name_or_path", str(folder), "--max_steps", str(SHAPE_STEPS),
             "--run_analysis", "false", *precision]  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    return {**train_step(plan, "bert-shape", flags), "model": f"{TEACHER_MODEL}'s shape, random weights",
            "shape": {key: config[key] for key in ("num_hidden_layers", "hidden_size", "vocab_size")}}  # fmt: skip


STEPS: dict[str, Callable[[Plan, dict], dict]] = {  # in order of what the issue asks first, for a check cut short
    "teacher": teacher_step,
    "bert_shape": bert_shape_step,
    "minilm": minilm_step,
    "nccl": nccl_step,
    "student": student_step,
}


def run_check(plan: Plan, report: dict, save: Callable[[dict], None]) -> dict:
    """Every step in order into `report["steps"]`, saved before each step starts and after it ends, so a check cut
    off by a time limit still leaves what it measured (and which step was running)."""
    steps = report.setdefault("steps", {})
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    for name, step in STEPS.items():
        steps[name] = {"status": "running"}
        save(report)
        steps[name] = step(plan, steps)
        logger.info("%s: %s", name, steps[name]["status"])
        save(report)
    return report


def cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(report: dict) -> str:
    """The report as text: the GPUs, then one line per step (a failed or skipped one with its reason)."""
    smi, devices = report["machine"]["nvidia_smi"], report["machine"]["torch"]
    gpus = smi.get("error") or ", ".join(f"{g['name']} ({g['memory']})" for g in smi["gpus"]) or "no GPU listed"
    lines = [f"GPUs: {gpus}; driver {smi.get('driver') or '-'}, CUDA {smi.get('cuda') or '-'}; "
             f"torch {devices['torch']} sees {devices['gpus']} GPU(s)",
             f"{'step':<10} {'status':<8} {'dev acc':>8} {'samples/s':>10} {'train s':>8} {'wall s':>8}  "
             "model / reason"]  # fmt: skip
    for name, step in report.get("steps", {}).items():
        figures = (f"{cell(step.get('accuracy'), '.2%'):>8} {cell(step.get('train_samples_per_second'), '.1f'):>10} "
                   f"{cell(step.get('train_runtime'), '.0f'):>8} {cell(step.get('seconds'), '.0f'):>8}")  # fmt: skip
        note = step.get("reason") or step.get("model") or ""
        if step.get("fallback_reason"):
            note += f" (fallback: {step['requested_model']} failed: {step['fallback_reason']})"
        if step.get("accuracy_minus_plain") is not None:
            note += f"; {step['accuracy_minus_plain']:+.2%} against the plain MiniLM"
        lines.append(f"{name:<10} {step['status']:<8} {figures}  {note}")
    return "\n".join(lines)
