"""Hyperparameter search: a real 2-trial Optuna study on the tiny BERT, resuming, pruning, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import ROOT, tiny_args

from trainer import UserError
from trainer.config import load_config
from trainer.hpo import main, parse_args
from trainer.search.flags import as_flags, drop_flags, trial_config, trial_overrides
from trainer.search.params import parse_space, read_space
from trainer.search.study import ReportToOptuna, Study, make_pruner
from trainer.training.loop import train

SPACE = {"learning_rate": {"low": 1.0e-4, "high": 3.0e-3, "log": True}, "per_device_train_batch_size": [4, 8]}


def hpo_flags(model_dir, data, output_dir, space_file, *extra) -> list[str]:
    return [
        "--config", str(ROOT / "configs/quick.yaml"),
        "--model_name_or_path", str(model_dir),
        "--train_file", str(data[0]), "--validation_file", str(data[1]),
        "--output_dir", str(output_dir), "--search_space", str(space_file),
        "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "2",
        "--disable_tqdm", "true", "--sampler", "random", *extra,
    ]  # fmt: skip


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


@pytest.mark.slow
def test_a_study_writes_trials_plots_and_a_trainable_best_yaml(tiny_model_dir, tiny_data, tmp_path, space_file):
    out = tmp_path / "hpo"
    assert main([*hpo_flags(tiny_model_dir, tiny_data, out, space_file), "--n_trials", "2"]) == 0

    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.trial) == [0, 1] and set(trials.state) == {"COMPLETE"}
    columns = {"accuracy", "seconds", "learning_rate", "per_device_train_batch_size", "run_dir"}
    assert columns <= set(trials.columns)
    for row in trials.itertuples():  # each row's accuracy is its own run's final accuracy
        metrics = json.loads(Path(row.run_dir, "metrics.json").read_text())
        assert row.accuracy == pytest.approx(metrics["accuracy"])
        assert 1.0e-4 <= row.learning_rate <= 3.0e-3 and row.per_device_train_batch_size in (4, 8)
        assert not (out / "trials" / f"trial-{row.trial:03d}" / "checkpoints").exists()
    for plot in ("hpo_history.png", "hpo_importance.png"):
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"

    best = trials.sort_values(["accuracy", "trial"], ascending=[False, True]).iloc[0]
    kept = sorted(p.parent.name for p in (out / "trials").glob("*/model.safetensors") if not p.parent.is_symlink())
    assert kept == [f"trial-{best.trial:03d}"]  # only the best trial keeps its weights

    best_yaml = (out / "best.yaml").read_text()
    assert f"make train CONFIG={out}/best.yaml" in best_yaml and "--max_steps 4" in best_yaml
    preset = yaml.safe_load(best_yaml)
    assert preset["learning_rate"] == pytest.approx(best.learning_rate)
    assert preset["per_device_train_batch_size"] == best.per_device_train_batch_size
    assert preset["max_steps"] == 50  # the preset's own length, not the trials' shortened one
    final = ["--config", str(out / "best.yaml"), "--max_steps", "2", "--output_dir", str(tmp_path / "final")]
    run_dir, metrics = train(load_config([*final, "--disable_tqdm", "true"]))
    assert metrics["global_step"] == 2 and (run_dir / "model.safetensors").is_file()

    # The same command with a larger --n_trials adds to the study instead of starting over.
    assert main([*hpo_flags(tiny_model_dir, tiny_data, out, space_file), "--n_trials", "3"]) == 0
    again = pd.read_csv(out / "trials.csv")
    assert list(again.trial) == [0, 1, 2]
    pd.testing.assert_frame_equal(again.head(2)[["learning_rate", "accuracy"]], trials[["learning_rate", "accuracy"]])
    # And with the target reached, it runs nothing.
    assert main([*hpo_flags(tiny_model_dir, tiny_data, out, space_file), "--n_trials", "3"]) == 0
    assert len(pd.read_csv(out / "trials.csv")) == 3


def test_a_trial_cut_off_by_a_kill_runs_again_first(tiny_model_dir, tiny_data, tmp_path, space_file):
    out = tmp_path / "hpo"
    flags = hpo_flags(tiny_model_dir, tiny_data, out, space_file)
    opts, train_flags = parse_args(flags)
    study = Study.open(["--config", opts.config, *train_flags], read_space(opts.search_space), out, opts.sampler, 1)
    killed = study.study.ask()  # what a SIGKILLed search leaves behind: a RUNNING trial of a dead process
    params = {p.name: p.suggest(killed) for p in study.space}
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed.set_user_attr("pid", dead.pid)
    killed.set_user_attr("host", socket.gethostname())

    assert main([*flags, "--n_trials", "1"]) == 0
    trials = optuna.load_study(study_name="hpo", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == params and trials[1].user_attrs["retry_of"] == 0


def test_the_preset_runs_first_as_the_baseline(tmp_path):
    study = Study.open(["--config", str(ROOT / "configs/sst2-minilm.yaml")], read_space(None), tmp_path, "tpe", 6)
    (first,) = study.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    preset = {"learning_rate": 5e-5, "per_device_train_batch_size": 32, "num_train_epochs": 3, "warmup_steps": 0.06}
    assert first.system_attrs["fixed_params"] == {**preset, "weight_decay": 0.01}
    assert first.user_attrs == {"preset": True}
    assert not Study.open(["--config", str(ROOT / "configs/sst2-minilm.yaml")], read_space(None), tmp_path / "grid",
                          "grid", 6).study.trials  # fmt: skip  # grid points only


def test_outputs_are_readable_by_all_under_the_usual_umask(tmp_path):
    out = tmp_path / "hpo"
    mask = os.umask(0o022)
    try:
        study = Study.open(["--config", str(ROOT / "configs/sst2-minilm.yaml")], read_space(None), out, "random", 3)
        for value in (0.7, 0.8, 0.9):  # finished trials without training: all the outputs need
            trial = study.study.ask()
            for param in study.space:
                param.suggest(trial)
            study.study.tell(trial, value)
        study.write_outputs()
    finally:
        os.umask(mask)
    written = ["study.db", "trials.csv", "best.yaml", "plots/hpo_history.png", "plots/hpo_importance.png"]
    assert {name: oct(stat.S_IMODE((out / name).stat().st_mode)) for name in written} == dict.fromkeys(
        written, oct(0o644)
    )


@dataclasses.dataclass
class State:
    global_step: int


def test_median_pruning_stops_a_poor_trial():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"))
    for _ in range(2):
        trial = study.ask()
        for evaluation in (1, 2, 3):
            trial.report(0.9, evaluation)
        study.tell(trial, 0.9)
    trial = study.ask()
    callback = ReportToOptuna(trial, "accuracy")
    callback.on_evaluate(None, State(5), None, metrics={"eval_loss": 0.3})  # no accuracy: not counted
    for step in (5, 10):  # the first two evaluations are never pruned, however poor
        callback.on_evaluate(None, State(step), None, metrics={"eval_accuracy": 0.5})
    with pytest.raises(optuna.TrialPruned, match="accuracy 0.5000 at step 15 is below the median"):
        callback.on_evaluate(None, State(15), None, metrics={"eval_accuracy": 0.5})
    assert trial.user_attrs["pruned_at_step"] == 15


def test_search_space_and_flags():
    params = parse_space(
        {"learning_rate": {"low": 1e-5, "high": 1e-4, "log": True, "grid": [1e-5, 1e-4]},
         "num_train_epochs": {"low": 1, "high": 3}, "per_device_train_batch_size": [16, 32]}, "s"
    )  # fmt: skip
    assert [p.grid_values() for p in params] == [[1e-5, 1e-4], [1, 2, 3], [16, 32]]
    assert [p.is_int for p in params] == [False, True, False]
    assert drop_flags(["--config", "c", "--max_steps", "5", "--max_train_samples=9", "--seed", "1"],
                      {"max_steps", "max_train_samples"}) == ["--config", "c", "--seed", "1"]  # fmt: skip
    assert len(read_space(None)) == 5
    cadence = {"per_device_train_batch_size": 32, "eval_steps": 700, "save_steps": 700}
    params = {"per_device_train_batch_size": 64, "learning_rate": 1e-5}
    overrides = trial_overrides(["--config", "c"], cadence, params, Path("d/trial-001"), "hpo")
    assert as_flags(overrides) == ["--run_analysis", "false", "--per_device_train_batch_size", "64",
                                   "--learning_rate", "1e-05", "--eval_steps", "350", "--save_steps", "350",
                                   "--output_dir", "d/trial-001", "--run_name", "hpo-trial-001"]  # fmt: skip
    same_batch = trial_overrides(["--run_analysis", "true"], cadence, {"weight_decay": 0.1}, Path("t"), "g")
    assert same_batch == {"weight_decay": 0.1, "output_dir": "t", "run_name": "g-t"}


def test_a_trial_config_is_the_config_its_recorded_flags_build(tiny_model_dir, tiny_data, tmp_path):
    """A trial is derived from the base config, not parsed from flags; its record (metrics.json's command) is the
    base's flags then the trial's, and those flags build the same config."""
    base_argv = tiny_args(tiny_model_dir, tiny_data, tmp_path / "base")  # evaluates and saves every 3 steps
    base = load_config(base_argv)
    cadence = {"per_device_train_batch_size": 8, "eval_steps": 3, "save_steps": 3}
    params = {"per_device_train_batch_size": 4, "learning_rate": 1e-4, "num_train_epochs": 2}
    trial = trial_config(base, cadence, params, tmp_path / "trial-000", "hpo")
    assert trial.argv[: len(base_argv)] == base_argv and "--num_train_epochs" in trial.argv
    assert (trial.training.eval_steps, trial.training.save_steps, trial.run.run_analysis) == (6, 6, False)
    assert trial.training.num_train_epochs == 2.0 and isinstance(trial.training.num_train_epochs, float)
    from_flags = load_config(trial.argv)
    assert trial.to_dict() == from_flags.to_dict() and trial.run == from_flags.run
    assert base.training.learning_rate != 1e-4 and base.run.output_dir == str(tmp_path / "base")  # base untouched


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rat": [1e-5]}, "unknown option 'learning_rat': did you mean 'learning_rate'?"),
        ({"learning_rate": {"low": 1e-3, "high": 1e-5}}, "learning_rate needs low < high"),
        ({"learning_rate": {"low": 0.0, "high": 1e-3, "log": True}}, "low > 0 when log: true"),
        ({"learning_rate": {"low": 1e-5}}, "must be a list of choices or {low, high}"),
        ({"weight_decay": {"low": 0.0, "high": 0.1, "grid": [0.5]}}, "grid values must lie between 0.0 and 0.1"),
        ([1, 2], "must map option names"),
    ],
)
def test_bad_search_spaces(space, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_space(space, "space.yaml")


def test_bad_searches_are_one_line(tiny_model_dir, tiny_data, tmp_path, space_file, capsys):
    flags = hpo_flags(tiny_model_dir, tiny_data, tmp_path / "hpo", space_file)
    cases = [
        (["--n_trials", "0"], "--n_trials 0: run at least one trial"),
        (["--n_trials", "1", "--sampler", "grid"], "learning_rate is a float range with no grid"),
        (["--n_trials", "1", "--resume"], "--resume is not a search option"),
        (["--n_trials", "1", "--learning_rat", "1"], "unknown flag --learning_rat: did you mean --learning_rate?"),
    ]
    for extra, message in cases:
        assert main([*flags, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    missing = [
        *flags[: flags.index("--search_space") + 1],
        str(tmp_path / "nope.yaml"),
        *flags[flags.index("--search_space") + 2 :],
    ]
    assert main([*missing, "--n_trials", "1"]) == 2
    assert "search space" in capsys.readouterr().err

    assert main([*flags, "--n_trials", "1"]) == 0  # a study, then the same folder with another space
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"learning_rate": [1e-3, 2e-3]}))
    changed = [*flags[: flags.index("--search_space") + 1], str(other), *flags[flags.index("--search_space") + 2 :]]
    capsys.readouterr()
    assert main([*changed, "--n_trials", "2"]) == 2
    assert "searched a different space" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "hpo" / "trials.csv")) == 1  # nothing in the folder was touched


@pytest.mark.slow
def test_ray_backend_runs_the_trials_into_the_same_study(tiny_model_dir, tiny_data, tmp_path, space_file):
    import ray

    out = tmp_path / "hpo"
    flags = [*hpo_flags(tiny_model_dir, tiny_data, out, space_file), "--backend", "ray", "--cpus_per_trial", "1"]
    try:
        assert main([*flags, "--n_trials", "2"]) == 0
    finally:
        ray.shutdown()
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.state) == ["COMPLETE", "COMPLETE"] and trials.accuracy.between(0, 1).all()
    runs = sorted((out / "trials").glob("ray-*"))
    assert len(runs) == 2 and all((run / "metrics.json").is_file() for run in runs)
    finals = sorted(json.loads((run / "metrics.json").read_text())["accuracy"] for run in runs)
    assert sorted(trials.accuracy) == pytest.approx(finals)  # Optuna recorded each trial's final accuracy
    assert not list((out / "trials").glob("ray-*/*.safetensors")) and (out / "ray").is_dir()
    preset = yaml.safe_load((out / "best.yaml").read_text())
    assert preset["learning_rate"] in set(trials.learning_rate)


def finished(number: int, value: float, run_dir: Path, preset: bool = False, pruned: bool = False):
    distribution = optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
    return optuna.trial.create_trial(
        params={"learning_rate": 1e-3 + number * 1e-4}, distributions={"learning_rate": distribution},
        value=value, state=state, user_attrs={"run_dir": str(run_dir), **({"preset": True} if preset else {})},
    )  # fmt: skip


def test_the_search_compares_its_best_trial_with_the_preset(tiny_model_dir, tiny_run, tiny_data, tmp_path):
    """At the end of a search the best trial and the preset's are scored on the search's validation texts by
    compare: the untrained tiny BERT as the preset, the trained tiny run as the best trial."""
    from trainer.inference import Classifier
    from trainer.search.outputs import compare_with_preset, kept_trials

    base = load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "unused"))
    study = optuna.create_study(direction="maximize")
    study.add_trial(finished(0, 0.5, tiny_model_dir, preset=True))
    study.add_trial(finished(1, 0.9, tiny_run))
    assert kept_trials(study) == {0, 1}

    line = compare_with_preset(study, tmp_path / "hpo", base)
    assert line.startswith("best (trial 1) against the preset (trial 0), B - A on 16 texts: ")
    found = json.loads((tmp_path / "hpo/comparison/comparison.json").read_text())
    dev = pd.read_csv(tiny_data[1], sep="\t")
    for side, model in (("a", tiny_model_dir), ("b", tiny_run)):  # each side's accuracy, scored here directly
        classifier = Classifier(str(model))
        predicted = np.asarray(classifier.labels)[classifier.predict_proba(dev["sentence"].tolist()).argmax(1)]
        right = predicted == dev["label"].map({0: "negative", 1: "positive"}).to_numpy()
        assert found["measures"]["accuracy"][side] == pytest.approx(right.mean())
        assert found[side]["model"] == str(model)
    assert (tmp_path / "hpo/comparison/comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_the_search_says_why_it_has_nothing_to_compare(tiny_model_dir, tiny_run, tiny_data, tmp_path):
    from trainer.search.outputs import compare_with_preset

    base = load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "unused"))
    cases = {
        "is the best trial": [finished(0, 0.9, tiny_run, preset=True), finished(1, 0.5, tiny_model_dir)],
        "was pruned": [finished(0, 0.2, tiny_run, preset=True, pruned=True), finished(1, 0.5, tiny_model_dir)],
        "no preset trial": [finished(0, 0.9, tiny_run), finished(1, 0.5, tiny_model_dir)],
        "weights were not kept": [finished(0, 0.5, tmp_path, preset=True), finished(1, 0.9, tiny_run)],
    }
    for words, trials in cases.items():
        study = optuna.create_study(direction="maximize")
        for trial in trials:
            study.add_trial(trial)
        assert words in compare_with_preset(study, tmp_path / "hpo", base)
    assert not (tmp_path / "hpo").exists()
