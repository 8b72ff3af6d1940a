"""The inference core: what a published run folder holds, and how a model in one scores texts.

Used by `trainer.predict`, `trainer.evaluate`, the analysis at the end of training, the bench and the Space. It
imports nothing from this repository (torch, transformers, numpy, scipy; onnxruntime for the int8 path), so the
Space ships this file as it is: `space/inference.py` is a link to it and `trainer.push_space` uploads its content.

Scoring: tokenised at the run's own `max_length` (saved as the tokenizer's `model_max_length`), in length-sorted
batches with dynamic padding under `torch.inference_mode()`; logits, probabilities and the mean-pooled last hidden
state come from one forward pass. `backend="onnx-int8"` scores on the CPU fast path instead: the model exported to
ONNX with its MatMul weights quantized to int8 per channel (embeddings always come from the torch model).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

# torch and transformers are imported where a model is loaded: publishing and the card read RUN_FILES and is_hub_id
# from here without paying for them.
logger = logging.getLogger(__name__)

# Every file a finished run folder publishes (globs relative to the folder). The card, README.md, is rendered for
# the target repo at push time. Checkpoints, optimizer state, pickles and wandb folders are never published.
RUN_FILES = (
    "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "added_tokens.json", "train_config.yaml", "training_args.json", "metrics.json", "log_history.json",
    "classification_report.txt", "incorrect_predictions.csv", "slices.csv", "behavioral_tests.json",
    "error_analysis.md", "training_summary.json", "predictions.parquet", "embeddings.parquet", "plots/*.png",
    "evaluations/*/metrics.json",
)  # fmt: skip
REQUIRED_FILES = ("config.json", "model.safetensors", "metrics.json", "train_config.yaml")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either one makes the tokenizer loadable
# Weights load from safetensors only, and code that comes with a model is never run.
SAFE_LOADING = {"use_safetensors": True, "trust_remote_code": False}
BACKENDS = ("torch", "onnx-int8")
POOLING = "mean of the last hidden state over non-padding tokens"
LONGEST = 512  # cap for models whose tokenizer declares no usable limit


def is_hub_id(name: str | None) -> bool:
    """'owner/name' that is not a path on this machine."""
    return bool(name) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def label_names(config) -> list[str]:
    """A model config's label names in id order (its id2label: human names for a run folder)."""
    return [config.id2label[i] for i in range(config.num_labels)]


@dataclass
class Scores:
    """One row per text, in input order."""

    logits: np.ndarray  # (n, labels)
    embeddings: np.ndarray | None = None  # (n, hidden), the pooling is POOLING

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.logits.astype(np.float64), axis=-1)


class Classifier:
    """A sequence-classification model folder, ready to score texts.

    Args:
        folder: a local folder with config.json, model.safetensors and the tokenizer (a run folder or a snapshot).
        device: "cpu" or "cuda" (default: cuda when available).
        backend: "torch" (fp32, what `pipeline()` users get) or "onnx-int8" (the CPU fast path).
    """

    def __init__(self, folder: str | os.PathLike, device: str | None = None, backend: str = "torch"):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOADING)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        config = self.model.config
        self.labels = label_names(config)
        self.max_length = min(self.tokenizer.model_max_length, getattr(config, "max_position_embeddings", LONGEST),
                              LONGEST)  # fmt: skip
        self.backend, self._int8 = backend, None
        if backend == "onnx-int8":
            if self.device != "cpu":
                raise ValueError("--backend onnx-int8 runs on the CPU: use --backend torch on a GPU")
            self._int8 = Int8Session(self.model, self.tokenizer, self.folder)

    def score(self, texts: list[str], batch_size: int = 64, embeddings: bool = False, progress: bool = False) -> Scores:
        """Logits (and, with `embeddings`, pooled embeddings) for every text, batched by length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Predicting", unit="batch")
        if self._int8 is not None and not embeddings:
            return Scores(self._int8_logits(texts, batches))
        return self._torch_scores(texts, batches, embeddings)

    def _torch_scores(self, texts: list[str], batches, embeddings: bool) -> Scores:
        import torch

        logits = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        pooled = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32) if embeddings else None
        with torch.inference_mode():
            for idx in batches:
                batch = self._tokenize([texts[i] for i in idx], "pt").to(self.device)
                out = self.model(**batch, output_hidden_states=embeddings)
                logits[idx] = out.logits.float().cpu().numpy()
                if embeddings:
                    mask = batch["attention_mask"].unsqueeze(-1).float()
                    pooled[idx] = ((out.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)).cpu().numpy()
        return Scores(logits, pooled)

    def _int8_logits(self, texts: list[str], batches) -> np.ndarray:
        # numpy end to end: a torch op between ONNX Runtime calls costs ~10% (the two thread pools contend)
        logits = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for idx in batches:
            logits[idx] = self._int8.logits(self._tokenize([texts[i] for i in idx], "np"))
        return logits

    def _tokenize(self, texts: list[str], tensors: str):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors=tensors)  # fmt: skip

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, (n, labels)."""
        return self.score(texts, batch_size).probs

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        """[{label, score, probabilities}] per text."""
        return [
            {"label": self.labels[int(row.argmax())], "score": float(row.max()),
             "probabilities": dict(zip(self.labels, map(float, row)))}
            for row in self.predict_proba(texts, batch_size)
        ]  # fmt: skip


# --- The int8 fast path ---
# Measured on SST-2 dev with the default preset's model (`make bench`): 6-7x the throughput of `pipeline()`, within
# 0.5 points of fp32 accuracy. Quantizing only the MatMuls (embeddings, pooler and classifier stay fp32) was both
# faster and more accurate than quantizing every supported op. Activations are quantized per batch, so batches are
# length-sorted (little padding) and of 64 (128 was 10% slower and no more accurate).

INT8_RECIPE = "int8-matmul-perchannel"  # in the cache file name: a new recipe never reuses an old export


def int8_cache_path(folder: Path) -> Path:
    """`<folder>/onnx/model.<recipe>.onnx` for a writable model folder, else a user-cache file keyed by the weights
    (their path and modification time, so re-trained weights get a fresh export)."""
    weights = folder / "model.safetensors"
    if weights.is_file() and os.access(folder, os.W_OK):
        return folder / "onnx" / f"model.{INT8_RECIPE}.onnx"
    stamp = f"{weights.resolve()}:{weights.stat().st_mtime_ns}" if weights.is_file() else str(folder)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiment-trainer" / "onnx"
    return cache / f"{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.{INT8_RECIPE}.onnx"


def export_int8(model, tokenizer, target: Path) -> Path:
    """Export `model` to ONNX (dynamic batch and length) and quantize its MatMul weights; written atomically."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a short one", "and a somewhat longer sentence"], padding=True, return_tensors="pt")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        axes = {0: "batch", 1: "length"}
        torch.onnx.export(
            model.eval(), (sample["input_ids"], sample["attention_mask"]), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
        partial = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])  # fmt: skip
        os.replace(partial, target)
    logger.info("exported the int8 ONNX model to %s", target)
    return target


class Int8Session:
    """Logits for tokenized batches from the cached int8 model (exported on first use)."""

    def __init__(self, model, tokenizer, folder: Path, threads: int | None = None):
        import onnxruntime as ort
        import torch

        path = int8_cache_path(folder)
        if not path.is_file():
            export_int8(model, tokenizer, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(self, batch) -> np.ndarray:
        feeds = {key: np.asarray(batch[key]) for key in ("input_ids", "attention_mask")}
        return self.session.run(["logits"], feeds)[0]


def int8_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
