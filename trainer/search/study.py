"""The Optuna study behind `python -m trainer.hpo`: the search space, the trials as training runs, the outputs.

Every trial is a normal training run (in OUTPUT_DIR/trials/trial-NNN) with the searched values as flags;
intermediate evaluations feed Optuna's median pruner. The study lives in OUTPUT_DIR/study.db (SQLite), so the same
command continues an interrupted study, and a larger --n_trials adds trials to a finished one. After every trial
the folder holds trials.csv, plots/hpo_history.png, plots/hpo_importance.png and best.yaml, a preset for
`make train CONFIG=OUTPUT_DIR/best.yaml`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import math
import os
import shutil
import socket
import warnings
from pathlib import Path

import optuna
import torch
import yaml
from optuna.trial import TrialState
from transformers import TrainerCallback

from trainer import UserError, files
from trainer.config import _field_names, load_config
from trainer.training.callbacks import Interrupted
from trainer.training.loop import train

logger = logging.getLogger(__name__)

# learning rate (log 1e-5..1e-4), batch size, epochs, warm-up ratio, weight decay; `grid` is used by --sampler grid.
DEFAULT_SPACE = {
    "learning_rate": {"low": 1.0e-5, "high": 1.0e-4, "log": True, "grid": [1.0e-5, 3.0e-5, 1.0e-4]},
    "per_device_train_batch_size": [16, 32, 64],
    "num_train_epochs": {"low": 1, "high": 4},
    "warmup_steps": {"low": 0.0, "high": 0.1, "grid": [0.0, 0.06]},
    "weight_decay": {"low": 0.0, "high": 0.1, "grid": [0.0, 0.01]},
}
# Flags that shorten each trial: they describe the search, not the model, so best.yaml leaves them out.
TRIAL_ONLY_FLAGS = {
    "max_train_samples", "max_eval_samples", "max_steps", "eval_steps", "save_steps", "logging_steps", "output_dir",
    "run_analysis",
}  # fmt: skip
SAMPLERS = ("tpe", "random", "grid")
PRUNE_FROM_EVALUATION = 3  # reports are numbered by evaluation (1, 2, ...): optuna prunes from step n_warmup_steps


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
        if isinstance(spec, list) and spec:
            params.append(Param(name, choices=spec))
            continue
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
        params.append(param)
    return params


def read_space(path: str | None) -> list[Param]:
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


class ReportToOptuna(TrainerCallback):
    """Each evaluation's metric goes to the trial; a trial below the median of earlier ones at the same point stops."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.evaluations = trial, metric, 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self.evaluations += 1  # evaluations are aligned on examples seen (see trial_flags), so compare by count
        self.trial.report(value, self.evaluations)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", state.global_step)
            raise optuna.TrialPruned(f"{self.metric} {value:.4f} at step {state.global_step} is below the median")


class Study:
    """A resumable Optuna study of `trainer.train` runs under one output folder."""

    def __init__(self, base_argv: list[str], space: list[Param], output_dir: Path, sampler: str, n_trials: int,
                 pruner: str = "median", storage: str | None = None, study_name: str = "hpo"):  # fmt: skip
        self.base_argv, self.space, self.output_dir, self.n_trials = base_argv, space, output_dir, n_trials
        self.base = load_config([*base_argv, "--output_dir", str(output_dir / "trials" / "check")])
        args = self.base.training
        metric = (args.metric_for_best_model or "accuracy").removeprefix("eval_")
        self.metric = metric
        maximize = args.greater_is_better if args.greater_is_better is not None else not metric.endswith("loss")
        if args.max_steps and args.max_steps > 0 and any(p.name == "num_train_epochs" for p in space):
            logger.warning("num_train_epochs is not searched: --max_steps %d fixes each trial's length", args.max_steps)
            self.space = [p for p in space if p.name != "num_train_epochs"]
        # What trial_argv needs to keep evaluations aligned when the batch size changes (plain values: Ray pickles it).
        self.cadence = {
            name: getattr(args, name) for name in ("per_device_train_batch_size", "eval_steps", "save_steps")
        }
        output_dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage or f"sqlite:///{(output_dir / 'study.db').resolve()}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        described = json.dumps({p.name: dataclasses.asdict(p) for p in self.space}, sort_keys=True)
        existing = self._existing(study_name)
        if existing is not None and existing.user_attrs.get("search_space", described) != described:
            raise UserError(
                f"the study in {output_dir} searched a different space: use the same --search_space, "
                "or another --output_dir for a new study"
            )
        if existing is not None and existing.user_attrs.get("sampler", sampler) != sampler:
            raise UserError(
                f"the study in {output_dir} used --sampler {existing.user_attrs['sampler']}: keep it, "
                "or use another --output_dir for a new study"
            )
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=study_name,
            direction="maximize" if maximize else "minimize",
            load_if_exists=True,
            sampler=self._sampler(sampler, args.seed + len(existing.trials) if existing else args.seed),
            pruner=self._pruner(pruner),
        )
        if existing is None and sampler != "grid":
            self.enqueue_preset()
        self.study.set_user_attr("search_space", described)
        self.study.set_user_attr("sampler", sampler)
        self.sampler = sampler

    @staticmethod
    def _pruner(name: str):
        """Median pruning from a trial's third evaluation on (the first ones mostly measure warm-up: a slow
        starter is not a bad trial), against at least two finished trials that reached the same evaluation
        (one longer schedule alone, still at a high learning rate, would prune every other long trial)."""
        if name == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=PRUNE_FROM_EVALUATION, n_min_trials=2)

    def enqueue_preset(self) -> None:
        """The preset's own values run first (when the space holds them): the trials are then compared against
        the preset under the same budget, and the study can only improve on it."""
        values = {}
        for p in self.space:
            value = getattr(self.base.training, p.name, None)
            if value is None:
                value = getattr(self.base.model, p.name, getattr(self.base.data, p.name, None))
            if p.is_int and isinstance(value, float) and value.is_integer():
                value = int(value)  # epochs are floats in TrainingArguments
            inside = value in p.choices if p.choices is not None else value is not None and p.low <= value <= p.high
            if not inside:
                return
            values[p.name] = value
        self.study.enqueue_trial(values, user_attrs={"preset": True})

    def _existing(self, study_name: str):
        try:
            return optuna.load_study(study_name=study_name, storage=self.storage)
        except KeyError:
            return None

    def _sampler(self, name: str, seed: int):
        if name == "grid":
            return optuna.samplers.GridSampler({p.name: p.grid_values() for p in self.space}, seed=seed)
        if name == "random":  # seeded by the trials already run, so a resumed study does not repeat them
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def finished(self) -> list:
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))

    def recover(self) -> None:
        """Trials left running by a killed search on this machine are failed and queued again."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
            if host == socket.gethostname() and pid is not None and not pid_alive(pid):
                self.study.tell(trial.number, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                logger.info("trial %d was cut off: it runs again first", trial.number)
                shutil.rmtree(self.output_dir / "trials" / trial_name(trial.number) / "checkpoints", ignore_errors=True)

    def objective(self, trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        params = {p.name: p.suggest(trial) for p in self.space}
        run_dir = self.output_dir / "trials" / trial_name(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = load_config(trial_argv(self.base_argv, self.cadence, params, run_dir, self.output_dir.name))
        os.environ.setdefault("WANDB_RUN_GROUP", self.output_dir.name)
        logger.info("trial %d: %s", trial.number, ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                              for k, v in params.items()))  # fmt: skip
        try:
            _, metrics = train(cfg, callbacks=[ReportToOptuna(trial, self.metric)])
        except (Interrupted, KeyboardInterrupt):
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})  # first in line next time
            raise
        finally:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # only a resume needs them
        value = metrics.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise UserError(f"trial {trial.number} reported no {self.metric}: check --metric_for_best_model")
        return float(value)

    def after_trial(self, study, trial) -> None:
        """Keep the best trial's model only, and refresh the outputs, so an interrupted search loses nothing."""
        best = self.best()
        for other in self.finished():
            if best is None or other.number != best.number:
                for weights in (self.output_dir / "trials" / trial_name(other.number)).glob("*.safetensors"):
                    weights.unlink()
        done = len(self.finished())
        if trial.state.name in ("COMPLETE", "PRUNED"):
            value = f"{self.metric} {trial.value:.4f}" if trial.value is not None else "pruned"
            if trial.state.name == "PRUNED":
                value = f"pruned at step {trial.user_attrs.get('pruned_at_step', '?')}"
            best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
            print(f"trial {trial.number} ({done}/{self.n_trials}): {value} | {best_text}", flush=True)
        self.write_outputs()

    def best(self):
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def run(self, ray: dict | None = None) -> None:
        """Run the remaining trials here, one after another, or on Ray (`ray`: run_with_ray's options)."""
        self.recover()
        done = len(self.finished())
        remaining = self.n_trials - done
        if remaining <= 0:
            print(f"the study already has {done} finished trials: raise --n_trials to add more", flush=True)
        elif ray is not None:
            from trainer.search.ray import run_with_ray

            print(f"study {self.output_dir}: {done} finished, {remaining} to run on Ray", flush=True)
            run_with_ray(self, remaining, **ray)
        else:
            print(f"study {self.output_dir}: {done} finished, {remaining} to run ({self.sampler} sampler)", flush=True)
            out_of_memory = (MemoryError, torch.OutOfMemoryError)  # a too-large batch size fails its trial only
            self.study.optimize(self.objective, n_trials=remaining, callbacks=[self.after_trial], catch=out_of_memory)
        self.write_outputs()
        if not self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise UserError("no trial completed: see the errors above (with very few trials, try --pruner none)")

    def write_outputs(self) -> None:
        self.write_trials_csv()
        self.write_plots()
        if self.best() is not None:
            self.write_best_yaml()

    def write_trials_csv(self) -> None:
        frame = self.study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
        if frame.empty:
            return
        frame = frame.rename(columns={"number": "trial", "value": self.metric, "user_attrs_run_dir": "run_dir"})
        frame["seconds"] = frame.pop("duration").dt.total_seconds().round(1)
        frame = frame.rename(columns=lambda c: c.removeprefix("params_"))
        keep = ["trial", "state", self.metric, "seconds", *[p.name for p in self.space], "run_dir"]
        if "user_attrs_preset" in frame:
            frame["preset"] = frame["user_attrs_preset"].fillna(False).astype(bool)
            keep.append("preset")
        if "user_attrs_pruned_at_step" in frame:
            frame["pruned_at_step"] = frame["user_attrs_pruned_at_step"]
            keep.append("pruned_at_step")
        files.write_text(self.output_dir / "trials.csv", frame[[c for c in keep if c in frame]].to_csv(index=False))

    def write_plots(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

        plots = self.output_dir / "plots"
        plots.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            importance = functools.partial(  # fANOVA: meaningful from a handful of trials (the default needs many)
                plot_param_importances, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
            for name, draw in (("hpo_history.png", plot_optimization_history), ("hpo_importance.png", importance)):
                try:
                    axes = draw(self.study)
                except (ValueError, RuntimeError) as err:  # importance needs two complete trials that differ
                    logger.info("%s not drawn yet: %s", name, str(err).splitlines()[0])
                    continue
                figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                figure.set_size_inches(7, 4.5)
                figure.tight_layout()
                files.save_figure(figure, plots / name, dpi=110)
                plt.close(figure)

    def write_best_yaml(self) -> None:
        best = self.best()
        argv = drop_flags(self.base_argv, TRIAL_ONLY_FLAGS)
        cfg = load_config([*argv, *as_flags(best.params), "--output_dir", str(self.output_dir / "best")])
        shortened = [a for a in self.base_argv if a not in argv]
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        header = [
            f"# make train CONFIG={self.output_dir}/best.yaml",
            f"# Best of {len(self.finished())} trials in {self.output_dir}/study.db ({self.sampler} sampler): "
            f"trial {best.number}, {self.metric} {best.value:.4f}",
            f"# Found: {params}",
        ]
        if shortened:
            header.append(f"# The trials were shortened with {' '.join(shortened)}; this preset trains in full.")
        text = "\n".join(header) + "\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        files.write_text(self.output_dir / "best.yaml", text)


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


def trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
