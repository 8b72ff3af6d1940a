"""Load the base model and tokenizer, and build the optimizer's parameter groups."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from trainer import UserError
from trainer.config import PACKAGED_MODELS, ModelConfig
from trainer.inference import (
    BACKENDS,
    LONG_TEXT,
    MULTI_LABEL,
    SAFE_LOADING,
    Classifier,
    OptionError,
    int8_available,
    label_names,
)
from trainer.run_folder import MODEL_CONFIG, TOKENIZER_CONFIG, NoModel, check_model_folder, locate_model

logger = logging.getLogger(__name__)


def resolve_model_path(name_or_path: str, download: bool = False) -> str:
    """The local folder of a run folder, a model folder or a packaged id; a Hub id downloaded with `download`, else
    unchanged for `from_pretrained` to fetch. `trainer.run_folder.locate_model` with one-line UserErrors, and the
    safety checks on a local folder."""
    try:
        path = locate_model(name_or_path, PACKAGED_MODELS, download)
    except NoModel as err:
        raise UserError(str(err)) from None
    if Path(path).is_dir():
        check_safe_folder(Path(path))
    return path


def check_safe_folder(folder: Path) -> None:
    """Refuse a model folder that could only be loaded by unpickling weights or by running its own code."""
    for name in (MODEL_CONFIG, TOKENIZER_CONFIG):
        try:
            settings = json.loads((folder / name).read_text()) if (folder / name).is_file() else {}
        except ValueError:
            raise UserError(f"{folder / name} is not valid JSON: re-save the model with save_pretrained") from None
        if isinstance(settings, dict) and settings.get("auto_map"):
            raise UserError(
                f"model folder {folder} needs its own code ({name} has auto_map), and remote code is never run here: "
                "use a standard transformers architecture"
            )
    try:
        check_model_folder(folder, str(folder))  # safetensors weights, not pickles
    except NoModel as err:
        raise UserError(str(err)) from None


def load_tokenizer(name_or_path: str):
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(load_error(name_or_path, err)) from None


def load_model(cfg: ModelConfig, label_names: list[str], multi_label: bool = False):
    """Sequence-classification model with human label names, so pipeline() prints them; a multi-label one says so
    in its config (problem_type), so pipeline() applies a sigmoid per label and the model's own loss is BCE."""
    path = resolve_model_path(cfg.model_name_or_path)
    extra = {} if cfg.classifier_dropout is None else {"classifier_dropout": cfg.classifier_dropout}
    if multi_label:
        extra["problem_type"] = MULTI_LABEL
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            attn_implementation=cfg.attn_implementation,
            ignore_mismatched_sizes=True,  # a fine-tuned model with another head can be re-fine-tuned
            **SAFE_LOADING,
            **extra,
        )
    except (OSError, ValueError) as err:
        raise UserError(load_error(cfg.model_name_or_path, err)) from None
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def model_labels(name_or_path: str) -> tuple[list[str], bool]:
    """A model's label names in id order and whether it is multi-label, from its config alone."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name_or_path, download=True), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(load_error(name_or_path, err)) from None
    return label_names(config), getattr(config, "problem_type", None) == MULTI_LABEL


def load_classifier(name_or_path: str, backend: str = "torch", device: str | None = None, long_text: str = "truncate",
                    stride: int | None = None, int8_file: Path | None = None) -> Classifier:  # fmt: skip
    """The inference core for a run folder, model folder or Hub id, with one-line errors; `long_text` and `stride`
    say how texts over the model's max_length are read (Classifier). For backend "onnx-int8", `int8_file` is the int8
    ONNX file `trainer.export.onnx.export_int8` made (default: the folder's own `onnx/model_quantized.onnx`)."""
    check_backend(backend, device)
    if long_text not in LONG_TEXT:
        raise UserError(f"unknown long_text {long_text!r}: use one of {', '.join(LONG_TEXT)}")
    path = resolve_model_path(name_or_path, download=True)
    try:
        return Classifier(path, device=device, backend=backend, long_text=long_text, stride=stride,
                          int8_file=int8_file)  # fmt: skip
    except OptionError as err:
        raise UserError(str(err)) from None
    except (OSError, ValueError) as err:
        raise UserError(load_error(name_or_path, err)) from None


def check_backend(backend: str, device: str | None = None) -> None:
    """A UserError for a backend that cannot run here: unknown, or int8 without onnxruntime or off the CPU."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "onnx-int8" and not int8_available():
        raise UserError("--backend onnx-int8 needs onnxruntime: pip install onnxruntime")
    if backend == "onnx-int8" and (device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cpu":
        raise UserError("--backend onnx-int8 runs on the CPU: use --backend torch on a GPU")


def truncation_note(classifier: Classifier, texts: list[str], counted: int | None = None) -> str | None:
    """The note for texts a truncating classifier cuts at its max_length; None when none is cut or it chunks.
    `counted`: how many texts are over max_length, when already known (the analysis records it)."""
    if classifier.long_text != "truncate":
        return None
    if not (n := classifier.count_long(texts) if counted is None else counted):
        return None
    return (f"note: {n} of {len(texts)} texts are longer than the model's {classifier.max_length} tokens and were cut "
            "there; --long_text chunk reads them whole")  # fmt: skip


def default_backend() -> str:
    """The int8 fast path on a CPU with onnxruntime, else fp32 torch."""
    return "onnx-int8" if int8_available() and not torch.cuda.is_available() else "torch"


def load_error(name: str, err: Exception) -> str:
    """One line for a model that would not load: what, why, and what to pass instead."""
    reason = str(err).splitlines()[0][:160]
    return f"cannot load model '{name}' ({reason}): use a model folder, a run folder, or a Hub id reachable from here"


def layer_index(name: str, num_layers: int) -> int:
    """0 for embeddings, 1..num_layers for encoder layers, num_layers + 1 for pooler and head."""
    if ".embeddings." in f".{name}":
        return 0
    if ".layer." in name:
        return int(name.split(".layer.")[1].split(".")[0]) + 1
    return num_layers + 1


def parameter_groups(model, lr: float, weight_decay: float, layer_decay: float, head_multiplier: float) -> list[dict]:
    """AdamW groups with layer-wise learning-rate decay; no weight decay on biases and LayerNorm."""
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_index(name, num_layers)
        scale = head_multiplier if depth > num_layers else layer_decay ** (num_layers + 1 - depth)
        decay = 0.0 if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else weight_decay
        groups.setdefault((lr * scale, decay), []).append(param)
    return [{"params": params, "lr": group_lr, "weight_decay": decay} for (group_lr, decay), params in groups.items()]
