"""The ONNX files a pushed repo ships (`onnx/model.onnx`, `onnx/model_quantized.onnx`), and how far int8 strays.

The check scores the run's own validation texts (`predictions.parquet`, written by the analysis with the fp32
model) with the int8 file, one text at a time as a transformers.js or Space user sends them, and records label
agreement and probability gaps in `onnx/int8_check.json`, stamped like the export, so the card can state them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.files import write_text
from trainer.inference import ONNX_FILES, ONNX_STAMP, onnx_export

logger = logging.getLogger(__name__)
CHECK_FILE = "int8_check.json"


def onnx_uploads(run: Path) -> list[tuple[str, Path]]:
    """(path in the repo, local file) of the ONNX files and their int8 check, exported and checked unless fresh."""
    paths = onnx_export(run)
    folder = paths["fp32"].parent
    check = folder / CHECK_FILE
    stamp = json.loads((folder / ONNX_STAMP).read_text())
    if not check.is_file() or json.loads(check.read_text()).get("export") != stamp:
        write_text(check, json.dumps({"export": stamp, **int8_check(run)}, indent=2) + "\n")
    return [(f"onnx/{ONNX_FILES[kind]}", path) for kind, path in paths.items()] + [(f"onnx/{CHECK_FILE}", check)]


def int8_check(run: Path) -> dict:
    """The int8 file against the fp32 model on the run's validation texts, through the inference core's int8 path
    one text at a time: label agreement, probability gaps, both accuracies (empty when there is no
    predictions.parquet)."""
    predictions = run / "predictions.parquet"
    if not predictions.is_file():
        return {}
    from trainer.inference import Classifier, no_loading_bar

    frame = pd.read_parquet(predictions)
    names = [column.removeprefix("p_") for column in frame.columns if column.startswith("p_")]
    fp32 = frame[[f"p_{name}" for name in names]].to_numpy()
    with no_loading_bar():
        classifier = Classifier(run, device="cpu", backend="onnx-int8")  # the fresh export onnx_uploads just made
    int8 = classifier.predict_proba(frame["text"].tolist(), batch_size=1)
    labels = frame["label"].map({name: i for i, name in enumerate(names)}).to_numpy()
    gap = np.abs(int8 - fp32).max(1)
    return {
        "texts": len(frame),
        "scored": "one text at a time, as the validation set of the analysis",
        "label_agreement": round(float((int8.argmax(1) == fp32.argmax(1)).mean()), 5),
        "labels_changed": int((int8.argmax(1) != fp32.argmax(1)).sum()),
        "prob_gap_mean": round(float(gap.mean()), 5),
        "prob_gap_p95": round(float(np.percentile(gap, 95)), 5),
        "prob_gap_max": round(float(gap.max()), 5),
        "accuracy_fp32": round(float((fp32.argmax(1) == labels).mean()), 5),
        "accuracy_int8": round(float((int8.argmax(1) == labels).mean()), 5),
    }
