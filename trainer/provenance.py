"""What a run was trained on and with: hardware, library versions, git commit, the command. Recorded in metrics.json."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("torch", "transformers", "datasets", "tokenizers", "huggingface_hub", "accelerate", "scikit-learn")
_SECRET_FLAGS = ("token", "api_key", "password", "secret")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(cwd: str | Path = ".") -> str | None:
    """HEAD of the repository the command ran in, with `-dirty` when tracked files had changed; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def redact(argv: list[str]) -> list[str]:
    """The command line with the value of any token-like flag replaced, so it can be written and published."""
    out, hide_next = [], False
    for arg in argv:
        flag = arg.lstrip("-").split("=", 1)[0].lower()
        secret = arg.startswith("--") and any(word in flag for word in _SECRET_FLAGS)
        if hide_next:
            out.append("***")
        elif secret and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
        hide_next = secret and "=" not in arg
    return out


def environment(argv: list[str], precision: str, processes: int = 1) -> dict:
    """Hardware, precision, library versions, git commit and the (redacted) command of this run."""
    import torch

    hardware = {"cpu": cpu_name(), "cpu_cores": os.cpu_count()}
    if torch.cuda.is_available():
        hardware["gpu"] = torch.cuda.get_device_name(0)
        hardware["gpu_count"] = torch.cuda.device_count()
    launcher = "python -m"
    if processes > 1:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
        nodes = f" --nnodes {processes // per_node}" if per_node < processes else ""
        launcher = f"torchrun{nodes} --nproc_per_node {per_node} -m"
    return {
        "hardware": hardware,
        "processes": processes,
        "precision": precision,
        "versions": library_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "command": f"{launcher} trainer.train " + shlex.join(redact(argv)),
    }
