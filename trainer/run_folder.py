"""What a run folder holds: every artifact's name, what makes a run finished, and the small readers.

One table for every module that reads or writes a run folder (training, the analysis, the card, push, the Space,
the tests). It imports nothing from this repository (PyYAML only where a train config is read), so the Space ships
it as it is: `space/run_folder.py` is a link to this file and `trainer.push_space` uploads its content.
"""

from __future__ import annotations

import json
from pathlib import Path

# --- the model, as `from_pretrained` and `pipeline()` read it ---
WEIGHTS = "model.safetensors"
MODEL_CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either one makes the tokenizer loadable
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

# --- what the run recorded ---
METRICS = "metrics.json"  # every figure, the label set (names, colours) and the metric catalogue
TRAIN_CONFIG = "train_config.yaml"  # the resolved config the run trained with
TRAINING_ARGS = "training_args.json"  # every resolved TrainingArguments value
LOG_HISTORY = "log_history.json"
TRAINING_SUMMARY = "training_summary.json"

# --- what the analysis wrote ---
CLASSIFICATION_REPORT = "classification_report.txt"
INCORRECT = "incorrect_predictions.csv"
SLICES = "slices.csv"
BEHAVIOURAL = "behavioral_tests.json"
ERROR_ANALYSIS = "error_analysis.md"
PREDICTIONS = "predictions.parquet"
EMBEDDINGS = "embeddings.parquet"
PLOTS = "plots"  # a folder of PNGs
EVALUATIONS = "evaluations"  # evaluations/<name>/, one folder per extra labelled set scored after training
CARD = "README.md"  # rendered for the target repo at push time, or by `trainer.card`

# --- the model as ONNX (for ONNX Runtime, optimum and transformers.js) ---
ONNX_DIR = "onnx"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx"}  # transformers.js loads the second as "q8"
ONNX_STAMP = "export.json"  # the weights' sha256 and the recipe an export was made from
INT8_CHECK = "int8_check.json"  # how far the int8 file strays from fp32 on the validation texts

# Every file a finished run folder publishes (globs relative to the folder); the ONNX files come with them unless
# the push skips them. Checkpoints, optimizer state, pickles and wandb folders are never published.
RUN_FILES = (
    WEIGHTS, MODEL_CONFIG, *TOKENIZER_FILES, *TOKENIZER_EXTRAS, TRAIN_CONFIG, TRAINING_ARGS, METRICS, LOG_HISTORY,
    CLASSIFICATION_REPORT, INCORRECT, SLICES, BEHAVIOURAL, ERROR_ANALYSIS, TRAINING_SUMMARY, PREDICTIONS, EMBEDDINGS,
    f"{PLOTS}/*.png", f"{EVALUATIONS}/*/{METRICS}",
)  # fmt: skip
REQUIRED_FILES = (MODEL_CONFIG, WEIGHTS, METRICS, TRAIN_CONFIG)  # a finished run: the model and what it recorded


def missing_files(folder: str | Path) -> list[str]:
    """The files a finished run needs that `folder` lacks (empty for a finished run)."""
    folder = Path(folder)
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def is_finished(folder: str | Path) -> bool:
    return Path(folder).is_dir() and not missing_files(folder)


def read_metrics(folder: str | Path) -> dict:
    """The run's metrics.json, or {} when there is none (a model folder that is not a run)."""
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def read_label_set(folder: str | Path) -> dict:
    """The run's label set as recorded (names in id order, colours, scale, ordinal), or {}."""
    return read_metrics(folder).get("label_set") or {}


def read_train_config(folder: str | Path) -> dict:
    """The resolved config the run trained with (train_config.yaml), or {} when there is none."""
    path = Path(folder) / TRAIN_CONFIG
    if not path.is_file():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def onnx_path(folder: str | Path, kind: str) -> Path:
    """`<folder>/onnx/<file>` of the fp32 or int8 export."""
    return Path(folder) / ONNX_DIR / ONNX_FILES[kind]
