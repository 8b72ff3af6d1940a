"""The model as ONNX: `onnx/model.onnx` (fp32) and `onnx/model_quantized.onnx` (int8), made once per weights.

These are the names transformers.js looks for (its "q8" dtype loads the second); optimum loads either with
`subfolder="onnx", file_name=...`. `trainer.predict` scores with the same int8 file, so what users download is what
was measured. `onnx/export.json` stamps the weights (sha256) and the recipe: an export of other weights, or by another
recipe, is never reused. The inference core only loads the int8 file; making it is this module's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from trainer import UserError
from trainer.inference import SAFE_LOADING
from trainer.run_folder import ONNX_DIR, ONNX_FILES, ONNX_STAMP, WEIGHTS

logger = logging.getLogger(__name__)
OPSET = 17
INT8_RECIPE = "dynamic-matmul-perchannel-ffn-output-fp32"
# The feed-forward output projections (`layer.N/output/dense`) read the GELU activations, whose outliers per-tensor
# uint8 quantization handles worst: kept in fp32 they halve the labels int8 changes on SST-2 dev (12 -> 6-8 of 872)
# and the p95 probability gap (0.10 -> 0.06-0.07) for 13% of throughput (docs/performance.md).
FP32_MATMULS = re.compile(r"layer\.\d+/output/dense/MatMul$")


def weights_sha256(folder: Path) -> str:
    """sha256 of the model's weights file (what makes an export stale)."""
    digest = hashlib.sha256()
    with open(folder / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def export_stamp(folder: Path) -> dict:
    """What an export of the model in `folder` is stamped with: the weights' sha256, the int8 recipe, the opset."""
    return {"weights_sha256": weights_sha256(folder), "int8_recipe": INT8_RECIPE, "opset": OPSET}


def onnx_folder(folder: Path) -> Path:
    """`<folder>/onnx` for a writable model folder, else a user-cache folder keyed by the weights file's path."""
    if os.access(folder, os.W_OK):
        return folder / ONNX_DIR
    key = hashlib.sha256(str((folder / WEIGHTS).resolve()).encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiment-trainer" / "onnx" / key


def export_paths(out: Path) -> dict[str, Path]:
    """{"fp32": path, "int8": path} of the ONNX files in the export folder `out`."""
    return {kind: out / name for kind, name in ONNX_FILES.items()}


def is_stamped(out: Path, stamp: dict) -> bool:
    """Whether the export folder `out` holds both files, made from the weights and by the recipe `stamp` names."""
    stamp_file = out / ONNX_STAMP
    files = [*export_paths(out).values(), stamp_file]
    return all(p.is_file() for p in files) and json.loads(stamp_file.read_text()) == stamp


def ensure_onnx(folder: str | os.PathLike) -> dict[str, Path]:
    """{"fp32": path, "int8": path} of the ONNX files of the model in `folder` (a run folder or a snapshot), in
    `onnx_folder(folder)`: exported now unless a fresh export is there."""
    folder = Path(folder)
    out, stamp = onnx_folder(folder), export_stamp(folder)
    paths = export_paths(out)
    if is_stamped(out, stamp):
        return paths
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with no_loading_bar():  # the export is one line, not a loading bar as well
        model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOADING)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    logger.info("exporting the model to ONNX (fp32 and int8) in %s", out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = export_paths(Path(tmp))
        export_fp32(model, tokenizer, staged["fp32"])
        quantize_int8(staged["fp32"], staged["int8"])
        (out / ONNX_STAMP).unlink(missing_ok=True)  # the files and their stamp change together: stamp last
        for kind in ONNX_FILES:
            os.replace(staged[kind], paths[kind])
        Path(tmp, ONNX_STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        os.replace(Path(tmp, ONNX_STAMP), out / ONNX_STAMP)
    return paths


def export_int8(name_or_path: str, device: str | None = None) -> Path:
    """The int8 ONNX file of a run folder, model folder or Hub id, exported now unless a fresh export of its weights
    is there: the `int8_file` of `load_classifier(..., backend="onnx-int8")`. Problems are one-line UserErrors."""
    from trainer.modeling import check_backend, load_error, resolve_model_path  # torch: only once a model is needed

    check_backend("onnx-int8", device)  # onnxruntime and the CPU, checked before the export
    try:
        return ensure_onnx(resolve_model_path(name_or_path, download=True))["int8"]
    except (OSError, ValueError) as err:  # as load_classifier reports a model that would not load
        raise UserError(load_error(name_or_path, err)) from None


@contextmanager
def no_loading_bar():
    """transformers' "Loading weights" progress bar off while a model loads in the background of another step."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def export_fp32(model, tokenizer, target: Path) -> None:
    """The model as ONNX: inputs input_ids and attention_mask, output logits, dynamic batch and sequence axes."""
    import warnings

    import torch

    sample = tokenizer(["a short one", "and a somewhat longer sentence"], padding=True, return_tensors="pt")
    axes = {0: "batch_size", 1: "sequence_length"}
    with warnings.catch_warnings():  # the tracer's notes on Python control flow are not the user's concern
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.float().eval(), (sample["input_ids"], sample["attention_mask"]), str(target),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch_size"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def quantize_int8(source: Path, target: Path) -> None:
    """int8 weights for the MatMuls, per output channel, but the feed-forward output ones (`FP32_MATMULS`);
    embeddings, LayerNorm, softmax and the head stay fp32. Activations are quantized as they come, per tensor."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [node.name for node in onnx.load(str(source), load_external_data=False).graph.node
            if node.op_type == "MatMul" and FP32_MATMULS.search(node.name)]  # fmt: skip

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # ONNX Runtime's "consider pre-processing" advice, printed on every export
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)  # fmt: skip
    finally:
        logging.disable(previous)
