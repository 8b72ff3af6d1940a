"""What a search leaves in its folder, rewritten from the Optuna study after every trial: trials.csv,
plots/hpo_history.png, plots/hpo_importance.png and best.yaml (a preset for `make train CONFIG=.../best.yaml`); at
the end, comparison/: the best trial against the preset's, on the same validation texts (`trainer.compare`)."""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from trainer import files
from trainer.config import TrainConfig, derive, load_config
from trainer.data import load_splits, multi_hot
from trainer.evaluation.compare import compare, summary_line
from trainer.evaluation.compare_inputs import scored_frame
from trainer.evaluation.compare_report import write_comparison
from trainer.run_folder import WEIGHTS
from trainer.search.flags import TRIAL_ONLY_FLAGS, drop_flags

logger = logging.getLogger(__name__)

COMPARISON_DIR = "comparison"


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def preset_trial(study: optuna.Study) -> FrozenTrial | None:
    """The finished trial of the preset's own values (queued first), if the study has one."""
    return next((t for t in finished_trials(study) if t.user_attrs.get("preset")), None)


def kept_trials(study: optuna.Study) -> set[int]:
    """The trials whose weights stay: the best, and the preset's (the baseline the best is compared with)."""
    return {t.number for t in (best_trial(study), preset_trial(study)) if t is not None}


def compare_with_preset(study: optuna.Study, output_dir: Path, base: TrainConfig) -> str:
    """The best trial against the preset's, both scored on the search's validation texts (the rows the trials were
    evaluated on) by `trainer.compare`: written to OUTPUT_DIR/comparison/; returns the line to print."""
    best, preset = best_trial(study), preset_trial(study)
    if preset is None:
        return "no preset trial to compare the best with (its values lie outside the space, or the grid sampler)"
    if preset.state != TrialState.COMPLETE:
        return f"the preset (trial {preset.number}) was pruned: no baseline to compare the best trial with"
    if best.number == preset.number:
        return f"the preset (trial {preset.number}) is the best trial: the search found nothing better"
    runs = [Path(t.user_attrs.get("run_dir", "")) for t in (preset, best)]
    if not all((run / WEIGHTS).is_file() for run in runs):
        return "the trials' weights were not kept (Ray workers drop them): compare two full runs with trainer.compare"
    splits = load_splits(base.data, seed=base.training.seed)
    texts, labels = splits.validation["text"].tolist(), splits.validation["label"]
    names, multi = splits.label_names, splits.multi_label
    labels = multi_hot(labels, len(names)) if multi else labels.to_numpy()
    a, b = (scored_frame(str(run), texts, labels, names, multi, base.training.per_device_eval_batch_size)
            for run in runs)  # fmt: skip
    found = compare(a, b, multi, base.run.n_bootstrap, base.training.seed)
    sources = {side: {"model": str(run), "trial": t.number, "texts": f"the search's validation data ({len(texts)} "
                      "texts)"} for side, run, t in zip("ab", runs, (preset, best))}  # fmt: skip
    write_comparison(output_dir / COMPARISON_DIR, found, sources)
    return f"best (trial {best.number}) against the preset (trial {preset.number}), {summary_line(found.summary)}"


def write_outputs(study: optuna.Study, output_dir: Path, *, metric: str, params: list[str], base_argv: list[str],
                  sampler: str) -> None:  # fmt: skip
    """Write trials.csv and the plots, and best.yaml once a trial has completed.

    Args:
        study: the Optuna study.
        output_dir: the search's folder.
        metric: the optimised metric, without `eval_` (a column of trials.csv).
        params: the searched option names, in the order of their columns.
        base_argv: the training flags every trial started from.
        sampler: the sampler's name, for best.yaml's header.
    """
    write_trials_csv(study, output_dir / "trials.csv", metric, params)
    write_plots(study, output_dir / "plots")
    if best_trial(study) is not None:
        write_best_yaml(study, output_dir / "best.yaml", metric, base_argv, sampler)


def write_trials_csv(study: optuna.Study, path: Path, metric: str, params: list[str]) -> None:
    """One row per trial: number, state, metric, seconds, the searched values, run folder (and preset, pruning)."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    if frame.empty:
        return
    frame = frame.rename(columns={"number": "trial", "value": metric, "user_attrs_run_dir": "run_dir"})
    frame["seconds"] = frame.pop("duration").dt.total_seconds().round(1)
    frame = frame.rename(columns=lambda c: c.removeprefix("params_"))
    keep = ["trial", "state", metric, "seconds", *params, "run_dir"]
    if "user_attrs_preset" in frame:
        frame["preset"] = frame["user_attrs_preset"].fillna(False).astype(bool)
        keep.append("preset")
    if "user_attrs_pruned_at_step" in frame:
        frame["pruned_at_step"] = frame["user_attrs_pruned_at_step"]
        keep.append("pruned_at_step")
    files.write_text(path, frame[[c for c in keep if c in frame]].to_csv(index=False))


def write_plots(study: optuna.Study, folder: Path) -> None:
    """hpo_history.png (the metric trial by trial) and hpo_importance.png (fANOVA), each once it can be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    folder.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        importance = functools.partial(  # fANOVA: meaningful from a handful of trials (the default needs many)
            plot_param_importances, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
        for name, draw in (("hpo_history.png", plot_optimization_history), ("hpo_importance.png", importance)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as err:  # importance needs two complete trials that differ
                logger.info("%s not drawn yet: %s", name, str(err).splitlines()[0])
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(7, 4.5)
            figure.tight_layout()
            files.save_figure(figure, folder / name, dpi=110)
            plt.close(figure)


def write_best_yaml(study: optuna.Study, path: Path, metric: str, base_argv: list[str], sampler: str) -> None:
    """The best trial's values as a full-length training preset, its header saying where they come from."""
    best, output_dir = study.best_trial, path.parent
    argv = drop_flags(base_argv, TRIAL_ONLY_FLAGS)
    cfg = derive(load_config([*argv, "--output_dir", str(output_dir / "best")]), **best.params)
    shortened = [a for a in base_argv if a not in argv]
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    header = [
        f"# make train CONFIG={output_dir}/best.yaml",
        f"# Best of {len(finished_trials(study))} trials in {output_dir}/study.db ({sampler} sampler): "
        f"trial {best.number}, {metric} {best.value:.4f}",
        f"# Found: {params}",
    ]
    if shortened:
        header.append(f"# The trials were shortened with {' '.join(shortened)}; this preset trains in full.")
    text = "\n".join(header) + "\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    files.write_text(path, text)
