"""What a run folder holds: every artifact's name, what makes a run finished, and the small readers.

One table for every module that reads or writes a run folder (training, the analysis, the card, push, the Space,
the tests), and the one answer to "which model": `locate_model` turns a run folder, a model folder, a packaged id or a
Hub id into a local folder, and `locate_run` a name into a finished run folder, each failure one line (`NoModel`) that
every command and the Space print as it is. It imports nothing from this repository (PyYAML where a train config is
read, huggingface_hub where a Hub repo is downloaded), so the Space ships it as it is: `space/run_folder.py` is a link
to this file and `trainer.push_space` uploads its content.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

# --- the model, as `from_pretrained` and `pipeline()` read it ---
WEIGHTS = "model.safetensors"
MODEL_CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either one makes the tokenizer loadable
TOKENIZER_CONFIG = "tokenizer_config.json"  # the tokenizer's settings, its model_max_length among them
TOKENIZER_EXTRAS = (TOKENIZER_CONFIG, "special_tokens_map.json", "added_tokens.json")

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
CHECKPOINTS = "checkpoints"  # checkpoints/checkpoint-<step>/, what --resume continues from (never published)

# --- the model as ONNX (for ONNX Runtime, optimum and transformers.js) ---
ONNX_DIR = "onnx"
# transformers.js loads these with dtype "fp32", "q8" and "fp16"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx", "fp16": "model_fp16.onnx"}
ONNX_STAMP = "export.json"  # the weights' sha256 and the recipe an export was made from
INT8_CHECK = "int8_check.json"  # how far the int8 file strays from fp32 on the validation texts
DATA_CHECKS = "data_checks.json"  # duplicates, overlap, conflicts, balance, cut texts of the data (trainer.check_data)
DATA_CHECKS_PLOT = f"{PLOTS}/data_checks.png"  # label balance and token length per split

# Every file a finished run folder publishes (globs relative to the folder); the ONNX files come with them unless
# the push skips them. Checkpoints, optimizer state, pickles and wandb folders are never published.
RUN_FILES = (
    WEIGHTS, MODEL_CONFIG, *TOKENIZER_FILES, *TOKENIZER_EXTRAS, TRAIN_CONFIG, TRAINING_ARGS, METRICS, LOG_HISTORY,
    CLASSIFICATION_REPORT, INCORRECT, SLICES, BEHAVIOURAL, ERROR_ANALYSIS, TRAINING_SUMMARY, PREDICTIONS, EMBEDDINGS,
    DATA_CHECKS, f"{PLOTS}/*.png", f"{EVALUATIONS}/*/{METRICS}",
)  # fmt: skip
REQUIRED_FILES = (MODEL_CONFIG, WEIGHTS, METRICS, TRAIN_CONFIG)  # a finished run: the model and what it recorded


def missing_files(folder: str | Path) -> list[str]:
    """The files a finished run needs that `folder` lacks (empty for a finished run): REQUIRED_FILES and a tokenizer."""
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    return missing + ([] if any((folder / name).is_file() for name in TOKENIZER_FILES) else [TOKENIZER_FILES[0]])


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


# --- which model: a run folder, a model folder, a packaged id or a Hub id ---
CHOICES = "pass a run folder, a model folder or a Hub id"
RUNS = "runs"  # where training writes run folders: runs/<name>, and runs/latest for the newest
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")  # 'owner/name', or a bare legacy id
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# What a Hub model repo is downloaded with: a pushed run's files and card, and the sharded weights and BPE or
# SentencePiece vocabularies of models trained elsewhere. Never pickles or code.
HUB_FILES = (  # the int8 file and its check come too: the Space's JSON API scores with it on a CPU
    *RUN_FILES, CARD, "model-*-of-*.safetensors", "model.safetensors.index.json", "vocab.json", "merges.txt", "*.model",
    f"{ONNX_DIR}/{ONNX_FILES['int8']}", f"{ONNX_DIR}/{INT8_CHECK}",
)  # fmt: skip


class NoModel(ValueError):
    """No usable model where the user pointed: the message is one line naming the place and the fix."""


def looks_like_path(name: str) -> bool:
    """A name meant as a folder on this machine, never sent to the Hub: ./x, /x, ~/x, a/b/c, a\\b, anything in runs/,
    or owner/name where a folder `owner` exists here."""
    first, _, rest = name.partition("/")
    return (
        name.startswith((".", "/", "~")) or "\\" in name or "/" in rest or first == RUNS
        or bool(rest) and Path(first).is_dir()
    )  # fmt: skip


def is_hub_id(name: str | None) -> bool:
    """'owner/name', or a bare legacy id such as 'bert-base-uncased', that is not a path on this machine."""
    return (
        bool(name and HUB_ID.fullmatch(name))
        and ".." not in name
        and not looks_like_path(name)
        and not Path(name).exists()
    )


def no_model(name: str) -> NoModel:
    """The one line for a name that points at nothing: the same from every command and the Space."""
    return NoModel(f"no model at {name}: train one with `make train`, or {CHOICES}")


def locate_model(name: str, packaged: dict[str, str] | None = None, download: bool = True) -> str:
    """The local folder of the model `name` names, checked: a run or model folder here; a packaged id's folder
    (`packaged` maps an id to the Python package that embeds it, when installed); or a Hub repo's files (HUB_FILES) in
    the local cache, downloaded when missing. With `download` False a Hub id comes back as it is, for
    `from_pretrained` to fetch. A name that looks like a path is never sent to the Hub. Raises NoModel."""
    if Path(name).expanduser().exists():
        return str(check_model_folder(Path(name).expanduser(), name))
    if not is_hub_id(name):
        raise no_model(name)
    if packaged and name in packaged and (folder := packaged_folder(packaged[name])):
        return str(folder)
    return str(download_model(name)) if download else name


def packaged_folder(package: str) -> Path | None:
    """The model folder a Python package embeds (`<package>/model`), or None when it is not installed."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        logger.info("%s is not installed; the model comes from the Hub", package)
        return None
    return Path(module.__file__).parent / "model"


def check_model_folder(folder: Path, name: str) -> Path:
    """`folder` when it holds a model `from_pretrained` can load from safetensors, else NoModel naming what is wrong."""
    if not folder.is_dir():
        raise NoModel(f"{name} is a file, not a model folder: {CHOICES}")
    if not (folder / MODEL_CONFIG).is_file():
        fix = (f'finish the run with `make train ARGS="--resume {name}"`' if (folder / CHECKPOINTS).is_dir()
               else f"train one with `make train`, or {CHOICES}")  # fmt: skip
        raise NoModel(f"{name} has no {MODEL_CONFIG}, so it holds no model: {fix}")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern))
        found = f"only pickle weights ({', '.join(pickles)})" if pickles else f"no {WEIGHTS}"
        raise NoModel(f"model folder {name} has {found}: weights load from safetensors only (pickle can run code); "
                      "re-save it with save_pretrained(..., safe_serialization=True) where you trust it")  # fmt: skip
    return folder


def locate_run(name: str) -> Path:
    """The finished run folder `name` names (what the card and a push read), else NoModel naming what is missing."""
    folder = Path(name).expanduser()
    if not folder.exists():
        raise no_model(name)
    if not folder.is_dir():
        raise NoModel(f"{name} is a file, not a run folder: train one with `make train`, or pass a run folder")
    if missing := missing_files(folder):
        fix = (f'finish it with `make train ARGS="--resume {name}"`' if (folder / CHECKPOINTS).is_dir()
               else "train one with `make train`, or pass a finished run folder")  # fmt: skip
        raise NoModel(f"{name} is not a finished run folder (missing {', '.join(missing)}): {fix}")
    return folder


def download_model(repo_id: str) -> Path:
    """A Hub model repo's files in the local cache, fetched when missing. A failure is one line naming the repo and
    the fix; huggingface_hub's own warnings (which name the host and the URL) are held back meanwhile."""
    from huggingface_hub import snapshot_download

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES)))
    except Exception as err:  # noqa: BLE001 - every way a download fails is one line for the user
        raise NoModel(f"cannot download model {repo_id}: {download_problem(err)}") from None
    finally:
        hub_logger.setLevel(level)
    return check_model_folder(folder, repo_id)


def download_problem(err: Exception) -> str:
    """Why a Hub download failed and what to do, without the URL (it names the host)."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(err, GatedRepoError):
        return "the repo is gated: accept its terms on the Hub and log in with `hf auth login`"
    if isinstance(err, RepositoryNotFoundError):
        return f"no such repo on the Hub, or a private one: check the id, log in with `hf auth login`, or {CHOICES}"
    if isinstance(err, LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return ("not in the local cache, and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1): connect and "
                "try again, or pass a run folder or a model folder")  # fmt: skip
    status = getattr(getattr(err, "response", None), "status_code", None)
    return f"{type(err).__name__}{f' (HTTP {status})' if status else ''}: check the id and your connection"
