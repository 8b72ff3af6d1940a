"""Ray Tune as the executor of `trainer.hpo` (`--backend ray`): trials spread over a Ray cluster.

Optuna stays the searcher and the record (Ray's OptunaSearch on the study's own storage), so trials.csv, the
plots and best.yaml come out exactly as with the default backend; Ray only decides where each trial runs. Trials
run to their end: with Ray's median stopping rule, a cluster started with `ray start` ran every trial twice (the
rule's stop restarted it), so there is no early stopping on this backend. Needs the extra: `pip install -e ".[ray]"`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import TrainerCallback

from trainer import UserError
from trainer.config import load_config
from trainer.search.flags import trial_config
from trainer.training.loop import train

if TYPE_CHECKING:
    from trainer.search.study import Study

logger = logging.getLogger(__name__)


class ReportToRay(TrainerCallback):
    """Each evaluation's metric becomes one Ray Tune result (its training_iteration is the evaluation count)."""

    def __init__(self, metric: str):
        self.metric = metric

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        from ray import tune

        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is not None:
            tune.report({self.metric: value, "step": state.global_step})


class SuggestSpace:
    """The search space as OptunaSearch's define-by-run function (a class: Ray pickles its searcher)."""

    def __init__(self, space: list):
        self.space = space

    def __call__(self, trial) -> dict:
        trial.set_user_attr("pid", os.getpid())  # the driver: a killed search's trials are recovered on rerun
        trial.set_user_attr("host", socket.gethostname())
        return {p.name: p.suggest(trial) for p in self.space}


def ray_trial(params: dict, *, base_argv: list[str], cadence: dict, output_dir: str, metric: str) -> None:
    """One trial inside a Ray worker: an ordinary training run; only its metrics and logs are kept."""
    from ray import tune

    run_dir = Path(output_dir) / "trials" / f"ray-{tune.get_context().get_trial_id()}"
    # The worker is a process of its own: the base config is read from the command line here, at that edge.
    # Ray may run a trial again (a lost worker, a restarted node): the new attempt replaces the old one's folder.
    cfg = trial_config(load_config(base_argv), cadence, params, run_dir, Path(output_dir).name,
                       overwrite_output_dir=True)  # fmt: skip
    try:
        _, metrics = train(cfg, callbacks=[ReportToRay(metric)])
    finally:  # checkpoints and weights stay behind only with the default backend (where trials share a disk)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        for weights in run_dir.glob("*.safetensors"):
            weights.unlink()
    tune.report({metric: metrics[metric], "step": metrics["global_step"]})


def run_with_ray(
    study: Study, remaining: int, address: str | None, cpus_per_trial: float, gpus_per_trial: float
) -> None:
    """Run `remaining` trials of the study as a Ray Tune experiment in `<output_dir>/ray/`."""
    try:
        import optuna
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise UserError('--backend ray needs Ray Tune: pip install -e ".[ray]" (or use the default backend)') from None

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials read the same relative paths as the driver
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, logging_level=logging.WARNING)

    mode = "max" if study.study.direction == optuna.study.StudyDirection.MAXIMIZE else "min"
    searcher = OptunaSearch(
        space=SuggestSpace(study.space),
        metric=study.metric,
        mode=mode,
        sampler=study.study.sampler,
        storage=optuna.storages.RDBStorage(study.storage),
        study_name=study.study.study_name,
    )
    trainable = tune.with_parameters(
        ray_trial,
        base_argv=study.base_argv,
        cadence=study.cadence,
        output_dir=str(study.output_dir.resolve()),
        metric=study.metric,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric=study.metric,
            mode=mode,
            num_samples=remaining,
        ),
        run_config=tune.RunConfig(name="ray", storage_path=str(study.output_dir.resolve()), verbose=1),
    )
    tuner.fit()
