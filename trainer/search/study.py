"""The Optuna study behind `python -m trainer.hpo`: its trials as training runs, resumable from its folder.

Every trial is a normal training run (in OUTPUT_DIR/trials/trial-NNN), its config derived from the base with the
searched values (as their flags would set them; metrics.json records those flags); intermediate evaluations feed
Optuna's median pruner. The study lives in OUTPUT_DIR/study.db (SQLite), so the same command continues an
interrupted study, and a larger --n_trials adds trials to a finished one. After every trial the folder's outputs
are rewritten (see `trainer.search.outputs`). `Study.open` checks the search and creates the folder and the study;
the trials then run here (`Study.optimize`) or on Ray (`trainer.search.ray`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from transformers import TrainerCallback

from trainer import UserError
from trainer.config import TrainConfig, load_config
from trainer.search import outputs
from trainer.search.flags import trial_config
from trainer.search.params import Param
from trainer.training.callbacks import Interrupted
from trainer.training.loop import train

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid")
PRUNE_FROM_EVALUATION = 3  # reports are numbered by evaluation (1, 2, ...): optuna prunes from step n_warmup_steps


class ReportToOptuna(TrainerCallback):
    """Each evaluation's metric goes to the trial; a trial below the median of earlier ones at the same point stops."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.evaluations = trial, metric, 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self.evaluations += 1  # evaluations are aligned on examples seen (see trial_overrides), so compare by count
        self.trial.report(value, self.evaluations)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", state.global_step)
            raise optuna.TrialPruned(f"{self.metric} {value:.4f} at step {state.global_step} is below the median")


@dataclasses.dataclass
class Study:
    """A resumable Optuna study of `trainer.train` runs under one output folder; `Study.open` makes one."""

    study: optuna.Study
    base_argv: list[str]
    space: list[Param]
    output_dir: Path
    metric: str  # without `eval_`
    cadence: dict  # what trial_overrides needs to keep evaluations aligned (plain values: Ray pickles it)
    sampler: str
    n_trials: int
    storage: str
    base: TrainConfig  # the config of `base_argv`, which each trial derives from

    @classmethod
    def open(cls, base_argv: list[str], space: list[Param], output_dir: Path, sampler: str, n_trials: int,
             pruner: str = "median", storage: str | None = None, study_name: str = "hpo") -> Study:  # fmt: skip
        """Check the search, then create the folder and the study in it, or load the study there to resume it.

        Args:
            base_argv: the training flags every trial starts from (`--config PRESET ...`).
            space: the searched options (`trainer.search.params.read_space`).
            output_dir: the study's folder.
            sampler: one of SAMPLERS (a resumed study must keep its own).
            n_trials: the finished trials to reach.
            pruner: "median" or "none".
            storage: an Optuna storage URL (default: OUTPUT_DIR/study.db).
            study_name: the study's name in the storage.

        Returns:
            The study, with the preset's values queued first when it is new (not for grid).
        """
        if output_dir.exists() and not output_dir.is_dir():
            raise UserError(f"--output_dir {output_dir} is a file: choose a folder")
        base = load_config(base_argv)
        args = base.training
        metric = (args.metric_for_best_model or "accuracy").removeprefix("eval_")
        maximize = args.greater_is_better if args.greater_is_better is not None else not metric.endswith("loss")
        if args.max_steps and args.max_steps > 0 and any(p.name == "num_train_epochs" for p in space):
            logger.warning("num_train_epochs is not searched: --max_steps %d fixes each trial's length", args.max_steps)
            space = [p for p in space if p.name != "num_train_epochs"]
        grid = {p.name: p.grid_values() for p in space} if sampler == "grid" else None
        cadence = {name: getattr(args, name) for name in ("per_device_train_batch_size", "eval_steps", "save_steps")}

        output_dir.mkdir(parents=True, exist_ok=True)
        storage = storage or f"sqlite:///{(output_dir / 'study.db').resolve()}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        described = json.dumps({p.name: dataclasses.asdict(p) for p in space}, sort_keys=True)
        existing = load_existing(study_name, storage)
        if existing is not None:
            check_same_search(existing, described, sampler, output_dir)
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="maximize" if maximize else "minimize",
            load_if_exists=True,
            sampler=make_sampler(sampler, grid, args.seed + len(existing.trials) if existing else args.seed),
            pruner=make_pruner(pruner),
        )
        if existing is None and sampler != "grid" and (values := preset_values(base, space)) is not None:
            study.enqueue_trial(values, user_attrs={"preset": True})
        study.set_user_attr("search_space", described)
        study.set_user_attr("sampler", sampler)
        return cls(study, base_argv, space, output_dir, metric, cadence, sampler, n_trials, storage, base)

    def finished(self) -> list:
        return outputs.finished_trials(self.study)

    def best(self):
        return outputs.best_trial(self.study)

    def recover(self) -> None:
        """Trials left running by a killed search on this machine are failed and queued again."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
            if host == socket.gethostname() and pid is not None and not pid_alive(pid):
                self.study.tell(trial.number, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                logger.info("trial %d was cut off: it runs again first", trial.number)
                shutil.rmtree(self.output_dir / "trials" / trial_name(trial.number) / "checkpoints", ignore_errors=True)

    def optimize(self, n_trials: int) -> None:
        """Run `n_trials` trials here, one after another (the default backend)."""
        out_of_memory = (MemoryError, torch.OutOfMemoryError)  # a too-large batch size fails its trial only
        self.study.optimize(self.objective, n_trials=n_trials, callbacks=[self.after_trial], catch=out_of_memory)

    def objective(self, trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        params = {p.name: p.suggest(trial) for p in self.space}
        run_dir = self.output_dir / "trials" / trial_name(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = trial_config(self.base, self.cadence, params, run_dir, self.output_dir.name)
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
        """Keep the models of the best trial and the preset's only, and refresh the outputs, so an interrupted search
        loses nothing."""
        best, kept = self.best(), outputs.kept_trials(self.study)
        for other in self.finished():
            if other.number not in kept:
                for weights in (self.output_dir / "trials" / trial_name(other.number)).glob("*.safetensors"):
                    weights.unlink()
        if trial.state.name in ("COMPLETE", "PRUNED"):
            value = f"{self.metric} {trial.value:.4f}" if trial.value is not None else "pruned"
            if trial.state.name == "PRUNED":
                value = f"pruned at step {trial.user_attrs.get('pruned_at_step', '?')}"
            best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
            print(f"trial {trial.number} ({len(self.finished())}/{self.n_trials}): {value} | {best_text}", flush=True)
        self.write_outputs()

    def write_outputs(self) -> None:
        outputs.write_outputs(self.study, self.output_dir, metric=self.metric, params=[p.name for p in self.space],
                              base_argv=self.base_argv, sampler=self.sampler)  # fmt: skip


def make_pruner(name: str):
    """Median pruning from a trial's third evaluation on (the first ones mostly measure warm-up: a slow
    starter is not a bad trial), against at least two finished trials that reached the same evaluation
    (one longer schedule alone, still at a high learning rate, would prune every other long trial)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=PRUNE_FROM_EVALUATION, n_min_trials=2)


def make_sampler(name: str, grid: dict | None, seed: int):
    """The named sampler; `grid` maps each option to its values for the grid sampler."""
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "random":  # seeded by the trials already run, so a resumed study does not repeat them
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def preset_values(cfg, space: list[Param]) -> dict | None:
    """The preset's own values of the searched options, or None when one lies outside the space. Queued first,
    they make the trials compare against the preset under the same budget: the study can only improve on it."""
    values = {}
    for p in space:
        value = getattr(cfg.training, p.name, None)
        if value is None:
            value = getattr(cfg.model, p.name, getattr(cfg.data, p.name, None))
        if p.is_int and isinstance(value, float) and value.is_integer():
            value = int(value)  # epochs are floats in TrainingArguments
        if not p.holds(value):
            return None
        values[p.name] = value
    return values


def load_existing(study_name: str, storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


def check_same_search(existing: optuna.Study, described: str, sampler: str, output_dir: Path) -> None:
    """A resumed study must keep its search space and sampler."""
    if existing.user_attrs.get("search_space", described) != described:
        raise UserError(
            f"the study in {output_dir} searched a different space: use the same --search_space, "
            "or another --output_dir for a new study"
        )
    if existing.user_attrs.get("sampler", sampler) != sampler:
        raise UserError(
            f"the study in {output_dir} used --sampler {existing.user_attrs['sampler']}: keep it, "
            "or use another --output_dir for a new study"
        )


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
