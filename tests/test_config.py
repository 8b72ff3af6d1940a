import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from trainer import UserError
from trainer.config import derive, load_config, read_yaml

PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def test_all_presets_present():
    names = {p.stem for p in PRESETS}
    for model in ("minilm", "bert-base"):
        for data in ("sst2", "imdb", "rotten-tomatoes"):
            assert f"{data}-{model}" in names
    assert "quick" in names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_shows_its_command(preset):
    first_line = preset.read_text().splitlines()[0]
    assert first_line.startswith("# make train") and ("CONFIG=" in first_line or preset.stem == "sst2-minilm")
    cfg = load_config(["--config", str(preset)])
    assert cfg.preset == preset.stem
    # SST-5 and GoEmotions take their names from the data's ClassLabel feature; the binary presets name theirs
    from_data = preset.stem.startswith(("sst5", "go-emotions"))
    assert cfg.data.label_names == (None if from_data else ["negative", "positive"])
    # multi-label: no accuracy; macro F1 at 0.5 picks the checkpoint
    best = "f1_macro" if preset.stem.startswith("go-emotions") else "accuracy"
    assert cfg.training.metric_for_best_model == best


def test_bert_base_preset_is_the_tutorial_recipe():
    cfg = load_config(["--config", str(ROOT / "configs/sst2-bert-base.yaml")])
    assert cfg.model.model_name_or_path == "bert-base-uncased"
    assert (cfg.training.learning_rate, cfg.training.num_train_epochs, cfg.training.weight_decay) == (2e-5, 3, 0.01)


def test_flags_override_yaml():
    cfg = load_config(
        ["--config", str(ROOT / "configs/quick.yaml"), "--learning_rate", "3e-5", "--num_train_epochs", "2"]
        + ["--label_names", "neg", "pos", "--max_train_samples", "10", "--output_dir", "somewhere"]
    )
    assert cfg.training.learning_rate == 3e-5
    assert cfg.training.num_train_epochs == 2
    assert cfg.data.label_names == ["neg", "pos"]
    assert cfg.training.label_names is None  # Trainer's own label_names stays at its default ("labels")
    assert cfg.data.max_train_samples == 10
    assert cfg.run.output_dir == "somewhere"


def test_unknown_yaml_key_names_the_nearest_valid_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learnig_rate: 1e-4\n")
    with pytest.raises(UserError, match="unknown option 'learnig_rate'.*did you mean 'learning_rate'"):
        read_yaml(bad)


def test_unknown_flag_names_the_nearest_valid_flag():
    with pytest.raises(UserError, match="did you mean --max_train_samples"):
        load_config(["--config", str(ROOT / "configs/quick.yaml"), "--max_train_sampels", "5"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        read_yaml(bad)
    with pytest.raises(UserError, match="not found"):
        read_yaml(tmp_path / "missing.yaml")


def test_saved_config_reloads_into_the_same_run(tmp_path):
    cfg = load_config(["--config", str(ROOT / "configs/sst2-minilm.yaml"), "--learning_rate", "7e-5", "--seed", "3"])
    saved = tmp_path / "train_config.yaml"
    saved.write_text(yaml.safe_dump(cfg.to_dict()))
    again = load_config(["--config", str(saved)])
    assert again.to_dict() == cfg.to_dict()
    assert again.training.learning_rate == 7e-5 and again.training.seed == 3
    assert "hub_token" not in saved.read_text() and "output_dir" not in yaml.safe_load(saved.read_text())


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="label_names"):
        load_config(["--config", str(ROOT / "configs/quick.yaml"), "--label_names", "only"])
    with pytest.raises(UserError, match="layerwise_lr_decay"):
        load_config(["--config", str(ROOT / "configs/quick.yaml"), "--layerwise_lr_decay", "1.5"])


def test_default_config_is_the_minilm_preset(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config([])
    assert cfg.preset == "sst2-minilm"
    assert Path(cfg.run.config) == Path("configs/sst2-minilm.yaml")


def test_cpu_bf16_is_automatic_unless_chosen_and_never_saved(monkeypatch):
    import trainer.config as config

    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    quick = ["--config", str(ROOT / "configs/quick.yaml")]
    cfg = load_config(quick)
    assert cfg.training.bf16 and cfg.training.use_cpu
    assert "bf16" not in cfg.to_dict() and "use_cpu" not in cfg.to_dict()  # a rerun elsewhere detects again
    assert not load_config([*quick, "--bf16", "false"]).training.bf16
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: False)
    assert not load_config(quick).training.bf16


@pytest.mark.parametrize(
    ("flags", "greater"),
    [
        (["--metric_for_best_model", "brier"], False),
        (["--metric_for_best_model", "eval_ece"], False),
        (["--metric_for_best_model", "log_loss"], False),
        (["--metric_for_best_model", "f1_macro"], True),
        (["--metric_for_best_model", "brier", "--greater_is_better", "true"], True),
    ],
)
def test_best_checkpoint_direction_follows_the_metric(flags, greater):
    cfg = load_config(["--config", "configs/quick.yaml", *flags])
    assert cfg.training.greater_is_better is greater


def test_seed_checkpoint_flags_are_aligned_with_the_preset_not_refused(caplog):
    """The notebook's `--logging_steps 10 --save_steps 10` on a preset that evaluates every 500 steps."""
    cfg = load_config(["--config", str(ROOT / "configs/imdb-minilm.yaml"), "--logging_steps", "10",
                       "--save_steps", "10"])  # fmt: skip
    args = cfg.training
    assert (args.save_steps, args.eval_steps, args.logging_steps, args.load_best_model_at_end) == (10, 10, 10, True)
    assert "eval_steps=10" in caplog.text
    # on an epoch preset, --save_steps means saving (and so evaluating) by steps
    cfg = load_config(["--config", str(ROOT / "configs/rotten-tomatoes-minilm.yaml"), "--save_steps", "40"])
    assert (cfg.training.save_strategy, cfg.training.eval_strategy, cfg.training.eval_steps) == ("steps", "steps", 40)
    # --eval_steps alone: saving follows it
    cfg = load_config(["--config", str(ROOT / "configs/sst2-minilm.yaml"), "--eval_steps", "300"])
    assert (cfg.training.eval_steps, cfg.training.save_steps) == (300, 300)


def test_two_checkpoint_flags_that_disagree_name_the_flags_that_work():
    with pytest.raises(
        UserError,
        match="--save_steps 10 is not a multiple of --eval_steps 25.*: pass --eval_steps 10, or --save_steps 25",
    ):
        load_config(["--config", str(ROOT / "configs/quick.yaml"), "--save_steps", "10", "--eval_steps", "25"])
    cfg = load_config(["--config", str(ROOT / "configs/quick.yaml"), "--save_steps", "50", "--eval_steps", "25"])
    assert (cfg.training.save_steps, cfg.training.eval_steps) == (50, 25)  # a multiple: kept as given


def test_derive_applies_the_overrides_as_their_flags_would_and_leaves_the_base():
    base = load_config(["--config", str(ROOT / "configs/quick.yaml"), "--output_dir", "runs/a"])
    before = copy.deepcopy(base)
    overrides = {"seed": 7, "learning_rate": 1e-4, "num_train_epochs": 2, "max_length": 64, "teacher_folds": 3,
                 "metric_for_best_model": "log_loss", "output_dir": "runs/b"}  # fmt: skip
    derived = derive(base, **overrides)
    assert base == before
    assert (derived.training.seed, derived.training.learning_rate, derived.model.max_length) == (7, 1e-4, 64)
    assert derived.model.teacher_folds == 3 and derived.run.output_dir == derived.training.output_dir == "runs/b"
    assert derived.training.greater_is_better is False  # follows the new metric, as with the flag
    flags = [item for key, value in overrides.items() for item in (f"--{key}", str(value))]
    from_flags = load_config(["--config", str(ROOT / "configs/quick.yaml"), "--output_dir", "runs/a", *flags])
    assert derived.to_dict() == from_flags.to_dict() and derived.run == from_flags.run
    assert derived.training.to_dict() == from_flags.training.to_dict()  # 2 epochs read as 2.0, like the flag


def test_derive_recomputes_what_training_arguments_fill_in(tmp_path):
    """eval_steps unset follows logging_steps; a save interval alone is aligned with evaluation, as with flags."""
    preset = tmp_path / "steps.yaml"
    preset.write_text("eval_strategy: steps\nlogging_steps: 10\nsave_strategy: 'no'\n")
    base = load_config(["--config", str(preset)])
    assert base.training.eval_steps == 10 and derive(base, logging_steps=5).training.eval_steps == 5
    seeded = load_config(["--config", str(ROOT / "configs/sst2-minilm.yaml")])
    aligned = derive(seeded, save_steps=100)
    assert (aligned.training.save_steps, aligned.training.eval_steps) == (100, 100)


def test_derive_refuses_unknown_options_and_bad_values_in_one_line():
    base = load_config(["--config", str(ROOT / "configs/quick.yaml")])
    with pytest.raises(UserError, match=r"^unknown option 'lerning_rate': did you mean 'learning_rate'\?$"):
        derive(base, lerning_rate=1e-4)
    with pytest.raises(UserError, match="max_length=4 is too small"):
        derive(base, max_length=4)
