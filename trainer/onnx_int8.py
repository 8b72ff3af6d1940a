"""The CPU fast path: the classifier exported to ONNX, its MatMul weights quantized to int8 per channel.

Measured on SST-2 dev with the default preset's model (`make bench`): 6-7x the throughput of `pipeline()`, within
0.5 points of fp32 accuracy. Quantizing only the MatMuls (embeddings, pooler and classifier stay fp32) was both
faster and more accurate than quantizing every supported op. Activations are quantized per batch, so batches are
length-sorted (little padding) and of 64 (128 was 10% slower and no more accurate). The export is cached next to
the weights (or in the user cache) and reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)
RECIPE = "int8-matmul-perchannel"  # in the cache file name: a new recipe never reuses an old export


def cache_path(model: str) -> Path:
    """`<model>/onnx/model.int8.onnx` for a writable model folder, else a user-cache file keyed by the weights."""
    folder = Path(model)
    weights = folder / "model.safetensors"
    stamp = f"{weights.resolve()}:{weights.stat().st_mtime_ns}" if weights.is_file() else model
    if weights.is_file() and os.access(folder, os.W_OK):
        return folder / "onnx" / f"model.{RECIPE}.onnx"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiment-trainer" / "onnx"
    return cache / f"{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.{RECIPE}.onnx"


def export_int8(model, tokenizer, target: Path) -> Path:
    """Export `model` to ONNX (dynamic batch and length) and quantize its weights to int8; written atomically."""
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


class OnnxInt8Session:
    """Logits for tokenized batches from the cached int8 model (exported on first use)."""

    def __init__(self, model, tokenizer, name_or_path: str, threads: int | None = None):
        import onnxruntime as ort

        path = cache_path(name_or_path)
        if not path.is_file():
            export_int8(model, tokenizer, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(self, batch) -> np.ndarray:
        feeds = {key: np.asarray(batch[key]) for key in ("input_ids", "attention_mask")}
        return self.session.run(["logits"], feeds)[0]


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
