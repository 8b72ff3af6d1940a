"""The model as ONNX: `onnx/model.onnx` (fp32), `onnx/model_quantized.onnx` (int8) and `onnx/model_fp16.onnx`
(fp16), made once per weights.

These are the names transformers.js looks for (its "q8" and "fp16" dtypes load the last two); optimum loads any with
`subfolder="onnx", file_name=...`. The int8 recipe is `trainer/export/int8.py`'s. `trainer.predict` scores with the
same int8 file, so what users download is what was measured. `onnx/export.json` stamps the weights (sha256) and the
recipe, and records the int8 recipe's choices: an export of other weights, or by another recipe, is never reused. The
inference core only loads the int8 file; making it is this module's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from trainer import UserError
from trainer.export.int8 import INT8_RECIPE, MAX_TEXTS, quantize_int8
from trainer.inference import LONGEST, MULTI_LABEL, SAFE_LOADING, decision_thresholds, label_names
from trainer.run_folder import ONNX_DIR, ONNX_FILES, ONNX_STAMP, PREDICTIONS, WEIGHTS

logger = logging.getLogger(__name__)
OPSET = 17


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
    """{"fp32": path, "int8": path, "fp16": path} of the ONNX files in the export folder `out`."""
    return {kind: out / name for kind, name in ONNX_FILES.items()}


def is_stamped(out: Path, stamp: dict) -> bool:
    """Whether the export folder `out` holds every file, made from the weights and by the recipe `stamp` names."""
    stamp_file = out / ONNX_STAMP
    files = [*export_paths(out).values(), stamp_file]
    return all(p.is_file() for p in files) and same_export(json.loads(stamp_file.read_text()), stamp)


def same_export(saved: dict, stamp: dict) -> bool:
    """Whether a saved stamp (which also records the int8 recipe's choices) is the export `stamp` names."""
    return {key: saved.get(key) for key in stamp} == stamp


def ensure_onnx(folder: str | os.PathLike) -> dict[str, Path]:
    """{"fp32": path, "int8": path, "fp16": path} of the ONNX files of the model in `folder` (a run folder or a
    snapshot), in `onnx_folder(folder)`: exported now unless a fresh export is there."""
    folder = Path(folder)
    out, stamp = onnx_folder(folder), export_stamp(folder)
    paths = export_paths(out)
    if is_stamped(out, stamp):
        return paths
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with no_loading_bar():  # the export is one line, not a loading bar as well
        model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOADING)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    logger.info("exporting the model to ONNX (fp32, int8, fp16) in %s", out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = export_paths(Path(tmp))
        export_fp32(model, tokenizer, staged["fp32"])
        choices = quantize_int8(staged["fp32"], staged["int8"], calibration_ids(folder, tokenizer, model.config),
                                *label_decisions(model.config))  # fmt: skip
        logger.info("int8 recipe: %s", choices)
        convert_fp16(staged["fp32"], staged["fp16"])
        (out / ONNX_STAMP).unlink(missing_ok=True)  # the files and their stamp change together: stamp last
        for kind in ONNX_FILES:
            os.replace(staged[kind], paths[kind])
        Path(tmp, ONNX_STAMP).write_text(json.dumps({**stamp, "int8_choices": choices}, indent=2) + "\n")
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


def calibration_ids(folder: Path, tokenizer, config) -> list | None:
    """Token ids of the run's validation texts (predictions.parquet; the first MAX_TEXTS), cut at the run's
    max_length as the inference core cuts them; None for a model folder without them."""
    import numpy as np
    import pandas as pd

    if not (folder / PREDICTIONS).is_file():
        logger.warning("no %s in %s: the int8 file is made without calibration texts", PREDICTIONS, folder)
        return None
    texts = pd.read_parquet(folder / PREDICTIONS, columns=["text"])["text"].head(MAX_TEXTS).tolist()
    limit = min(tokenizer.model_max_length, getattr(config, "max_position_embeddings", LONGEST), LONGEST)
    ids = tokenizer(texts, truncation=True, max_length=limit, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]  # fmt: skip
    return [np.asarray(row, dtype=np.int64) for row in ids]


def label_decisions(config):
    """(decide, margin): the model's labels from logits as the inference core decides them (argmax, or each label's
    sigmoid at its threshold for a multi-label model), and each text's distance from changing them in logits."""
    import numpy as np
    from scipy.special import logit

    if getattr(config, "problem_type", None) == MULTI_LABEL:
        cut = logit(decision_thresholds(config, label_names(config)))
        return lambda logits: logits >= cut, lambda logits: np.abs(logits - cut).min(1)

    def argmax(logits: np.ndarray) -> np.ndarray:
        return np.arange(logits.shape[1]) == logits.argmax(1)[:, None]

    def lead(logits: np.ndarray) -> np.ndarray:  # the top logit over the runner-up
        top = np.sort(logits, axis=1)
        return top[:, -1] - top[:, -2]

    return argmax, lead


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic (transformers.js's "fp16" dtype), inputs and outputs as the fp32 file's."""
    import warnings

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():  # its notes on weights clamped to the fp16 range, one line per tensor
        warnings.simplefilter("ignore")
        onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))
