"""The search space of `trainer.hpo`: which training options are searched, over which choices or ranges."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import yaml

from trainer import UserError
from trainer.config import _field_names

# learning rate (log 1e-5..1e-4), batch size, epochs, warm-up ratio, weight decay; `grid` is used by --sampler grid.
DEFAULT_SPACE = {
    "learning_rate": {"low": 1.0e-5, "high": 1.0e-4, "log": True, "grid": [1.0e-5, 3.0e-5, 1.0e-4]},
    "per_device_train_batch_size": [16, 32, 64],
    "num_train_epochs": {"low": 1, "high": 4},
    "warmup_steps": {"low": 0.0, "high": 0.1, "grid": [0.0, 0.06]},
    "weight_decay": {"low": 0.0, "high": 0.1, "grid": [0.0, 0.01]},
}


@dataclasses.dataclass
class Param:
    """One searched option: a list of choices, or an int/float range (log-scaled when `log`)."""

    name: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    grid: list | None = None

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)
        )

    def suggest(self, trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list:
        if self.choices is not None:
            return list(self.choices)
        if self.grid is not None:
            return list(self.grid)
        if self.is_int:
            return list(range(self.low, self.high + 1, int(self.step or 1)))
        raise UserError(
            f"search space: {self.name} is a float range with no grid: add `grid: [values]` to it for --sampler grid"
        )

    def holds(self, value) -> bool:
        """Whether `value` is one of the choices or lies in the range."""
        if self.choices is not None:
            return value in self.choices
        return value is not None and self.low <= value <= self.high


def parse_space(raw: dict, source: str) -> list[Param]:
    """Search space from YAML: `name: [choices]` or `name: {low, high, log?, step?, grid?}`; names are options."""
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{source}: the search space must map option names to choices or ranges")
    known, params = _field_names(), []
    for name, spec in raw.items():
        if name not in known:
            near = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else "use a training option name"
            raise UserError(f"{source}: unknown option '{name}': {hint}")
        params.append(parse_param(name, spec, source))
    return params


def parse_param(name: str, spec, source: str) -> Param:
    """One option's entry: a non-empty list of choices, or a checked {low, high} range."""
    if isinstance(spec, list) and spec:
        return Param(name, choices=spec)
    if (
        not isinstance(spec, dict)
        or not {"low", "high"} <= set(spec)
        or set(spec) - {"low", "high", "log", "step", "grid"}
    ):
        raise UserError(f"{source}: {name} must be a list of choices or {{low, high}} (optional log, step, grid)")
    param = Param(name, low=spec["low"], high=spec["high"], log=bool(spec.get("log")), step=spec.get("step"),
                  grid=spec.get("grid"))  # fmt: skip
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (param.low, param.high)):
        raise UserError(f"{source}: {name} low and high must be numbers")
    if not param.low < param.high or (param.log and param.low <= 0):
        raise UserError(f"{source}: {name} needs low < high (and low > 0 when log: true)")
    if param.grid is not None and any(not param.low <= v <= param.high for v in param.grid):
        raise UserError(f"{source}: {name} grid values must lie between {param.low} and {param.high}")
    return param


def read_space(path: str | None) -> list[Param]:
    """The search space in the YAML file at `path`, or the default one."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "default search space")
    file = Path(path)
    if not file.is_file():
        raise UserError(f"search space {path} not found: pass a YAML file (see the README's example)")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError:
        raise UserError(f"search space {path} is not valid YAML: fix the syntax") from None
    return parse_space(raw, path)
