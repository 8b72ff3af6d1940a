"""Hyperparameter search with Optuna: `python -m trainer.hpo --config PRESET --n_trials N [training flags]`.

Every trial is a normal `trainer.train` run; see `trainer.search.study` for the study and its folder,
`trainer.search.outputs` for what the search writes there, and `trainer.search.ray` for running the trials on a
Ray cluster (`--backend ray`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from trainer import HelpFormatter, UserError, fail
from trainer.config import DEFAULT_CONFIG
from trainer.search import outputs
from trainer.search.params import read_space
from trainer.search.ray import run_with_ray
from trainer.search.study import SAMPLERS, Study
from trainer.training.callbacks import Interrupted


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.hpo",
        description="Search hyperparameters with Optuna; every other flag is a training flag (see trainer.train).",
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="Preset to start each trial from.")
    parser.add_argument(
        "--n_trials", type=int, default=20, help="Finished trials to reach (a resumed study counts its own)."
    )
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="tpe (default), random or grid.")
    parser.add_argument("--search_space", help="YAML search space (default: lr, batch size, epochs, warm-up, decay).")
    parser.add_argument("--output_dir", help="Study folder (default runs/hpo-<preset>); rerun to resume.")
    parser.add_argument("--pruner", choices=("median", "none"), default="median", help="Stop poor trials early.")
    parser.add_argument(
        "--storage", help="Optuna storage URL shared by several workers (default: SQLite in the folder)."
    )
    parser.add_argument("--study_name", default="hpo", help="Study name inside the storage.")
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna", help="Run trials here or on Ray.")
    parser.add_argument("--ray_address", help="Ray cluster to join (e.g. auto); default: start Ray on this machine.")
    parser.add_argument("--cpus_per_trial", type=float, default=float(os.cpu_count() or 1), help="Ray: CPUs per trial.")
    parser.add_argument("--gpus_per_trial", type=float, default=None, help="Ray: GPUs per trial (default 1 if any).")
    return parser.parse_known_args(argv)


def run_trials(study: Study, opts: argparse.Namespace) -> None:
    """Run what is left of the study (a killed search's trials first), here or on Ray, then write its outputs."""
    study.recover()
    done = len(study.finished())
    remaining = study.n_trials - done
    if remaining <= 0:
        print(f"the study already has {done} finished trials: raise --n_trials to add more", flush=True)
    elif opts.backend == "ray":
        gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else float(torch.cuda.is_available())
        print(f"study {study.output_dir}: {done} finished, {remaining} to run on Ray", flush=True)
        run_with_ray(study, remaining, opts.ray_address, opts.cpus_per_trial, gpus)
    else:
        print(f"study {study.output_dir}: {done} finished, {remaining} to run ({study.sampler} sampler)", flush=True)
        study.optimize(remaining)
    study.write_outputs()
    if study.best() is None:
        raise UserError("no trial completed: see the errors above (with very few trials, try --pruner none)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else list(argv)
    opts, train_flags = parse_args(argv)
    try:
        if opts.n_trials < 1:
            raise UserError(f"--n_trials {opts.n_trials}: run at least one trial")
        if any(a.startswith("--resume") for a in train_flags):
            raise UserError("--resume is not a search option: rerun the same trainer.hpo command to resume the study")
        output_dir = Path(opts.output_dir or f"runs/hpo-{Path(opts.config).stem}")
        study = Study.open(["--config", opts.config, *train_flags], read_space(opts.search_space), output_dir,
                           opts.sampler, opts.n_trials, opts.pruner, opts.storage, opts.study_name)  # fmt: skip
        run_trials(study, opts)
    except (UserError, OSError) as err:
        return fail(err)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to continue the study", file=sys.stderr)
        return 130
    except Interrupted:  # the first Ctrl-C: the trial saved a checkpoint and stopped
        print("stopped: rerun the same command to continue the study (the cut trial runs again)", file=sys.stderr)
        return 130
    best = study.best()
    try:
        print(outputs.compare_with_preset(study.study, output_dir, study.base), flush=True)
    except (UserError, OSError) as err:  # the search itself is done: its outputs stand
        print(f"no comparison with the preset: {err}", file=sys.stderr)
    print(f"\nbest {study.metric} {best.value:.4f} (trial {best.number}): {output_dir}/best.yaml")
    print(f"train it: make train CONFIG={output_dir}/best.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
