"""A search's training configs: each trial's (the base config plus the searched values) and best.yaml's flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trainer.config import TrainConfig, derive

# Flags that shorten each trial: they describe the search, not the model, so best.yaml leaves them out.
TRIAL_ONLY_FLAGS = {
    "max_train_samples", "max_eval_samples", "max_steps", "eval_steps", "save_steps", "logging_steps", "output_dir",
    "run_analysis",
}  # fmt: skip


def as_flags(values: dict) -> list[str]:
    return [item for name, value in values.items()
            for item in (f"--{name}", str(value).lower() if isinstance(value, bool) else str(value))]  # fmt: skip


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


def trial_overrides(base_argv: list[str], cadence: dict, params: dict, run_dir: Path, group: str) -> dict:
    """A trial's options over the base config: the searched values, its folder and name. Evaluation and checkpoint
    intervals follow the batch size, so every trial is evaluated after the same number of examples (the pruner
    compares trials evaluation by evaluation); the analysis is off unless the command line asked for it."""
    overrides = {} if any(a.startswith("--run_analysis") for a in base_argv) else {"run_analysis": False}
    overrides.update(params)
    base_batch = cadence["per_device_train_batch_size"]
    batch = params.get("per_device_train_batch_size", base_batch)
    if batch != base_batch:
        for name in ("eval_steps", "save_steps"):
            steps = cadence[name]
            if isinstance(steps, (int, float)) and steps >= 1:
                overrides[name] = max(1, round(steps * base_batch / batch))
    return {**overrides, "output_dir": str(run_dir), "run_name": f"{group}-{run_dir.name}"}


def trial_config(base: TrainConfig, cadence: dict, params: dict, run_dir: Path, group: str, **extra) -> TrainConfig:
    """A trial's config: `base` derived with `trial_overrides` (and `extra`). Its recorded command line (metrics.json)
    is the base's flags then the trial's, the command that trains the trial again."""
    overrides = {**trial_overrides(base.argv, cadence, params, run_dir, group), **extra}
    return dataclasses.replace(derive(base, **overrides), argv=[*base.argv, *as_flags(overrides)])
