"""Training command lines of a search: each trial's (the base flags plus the searched values) and best.yaml's."""

from __future__ import annotations

from pathlib import Path

# Flags that shorten each trial: they describe the search, not the model, so best.yaml leaves them out.
TRIAL_ONLY_FLAGS = {
    "max_train_samples", "max_eval_samples", "max_steps", "eval_steps", "save_steps", "logging_steps", "output_dir",
    "run_analysis",
}  # fmt: skip


def as_flags(values: dict) -> list[str]:
    return [item for name, value in values.items() for item in (f"--{name}", str(value))]


def drop_flags(argv: list[str], names: set[str]) -> list[str]:
    """argv without the given `--name value` / `--name=value` flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def trial_argv(base_argv: list[str], cadence: dict, params: dict, run_dir: Path, group: str) -> list[str]:
    """A trial's training command line: the base flags plus the searched values. Evaluation and checkpoint
    intervals follow the batch size, so every trial is evaluated after the same number of examples (the pruner
    compares trials evaluation by evaluation); the analysis is off unless asked for."""
    flags = dict(params)
    base_batch = cadence["per_device_train_batch_size"]
    batch = params.get("per_device_train_batch_size", base_batch)
    if batch != base_batch:
        for name in ("eval_steps", "save_steps"):
            steps = cadence[name]
            if isinstance(steps, (int, float)) and steps >= 1:
                flags[name] = max(1, round(steps * base_batch / batch))
    extra = [] if any(a.startswith("--run_analysis") for a in base_argv) else ["--run_analysis", "false"]
    return [*base_argv, *extra, *as_flags(flags), "--output_dir", str(run_dir), "--run_name", f"{group}-{run_dir.name}"]
