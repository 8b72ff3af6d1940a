"""How far the int8 and fp16 ONNX files stray from the fp32 model, recorded in `onnx/int8_check.json` for the card.

The check scores the run's own validation texts (`predictions.parquet`, written by the analysis with the fp32
model) with the int8 file, one text at a time as a transformers.js or Space user sends them and in length-sorted
batches as `trainer.predict` and the Space's batching API send them, and the fp16 file in batches; it records label
agreement (for a multi-label model, of every label decision at its threshold) and probability gaps, stamped like
the export it checked, so it is made again only for a new export. The int8 recipe chose its mixed precision on the
same texts (`trainer/export/int8.py`), so its agreement here is what that choice reached, not a held-out figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.export.int8 import BATCH
from trainer.export.onnx import no_loading_bar, same_export
from trainer.files import write_text
from trainer.inference import Classifier
from trainer.run_folder import INT8_CHECK, ONNX_FILES, ONNX_STAMP, PREDICTIONS, WEIGHTS


def is_checked(out: Path, stamp: dict) -> bool:
    """Whether the export folder `out` holds a check of the export stamped `stamp`."""
    check = out / INT8_CHECK
    return check.is_file() and same_export(json.loads(check.read_text()).get("export") or {}, stamp)


def ensure_int8_check(run: Path, int8_file: Path) -> Path:
    """The check file beside `int8_file` (a fresh export of `run`), written now unless it checked this export."""
    out = int8_file.parent
    stamp = json.loads((out / ONNX_STAMP).read_text())  # with the int8 recipe's choices, which the check records
    if not is_checked(out, stamp):
        write_text(out / INT8_CHECK, json.dumps({"export": stamp, **int8_check(run, int8_file)}, indent=2) + "\n")
    return out / INT8_CHECK


def int8_check(run: Path, int8_file: Path) -> dict:
    """The int8 file against the fp32 model on the run's validation texts, through the inference core's int8 path
    one text at a time and in batches of BATCH, and the fp16 file beside it in batches: label agreement,
    probability gaps, both accuracies (empty when there is no predictions.parquet)."""
    predictions = run / PREDICTIONS
    if not predictions.is_file():
        return {}
    frame = pd.read_parquet(predictions)
    names = [column.removeprefix("p_") for column in frame.columns if column.startswith("p_")]
    fp32 = frame[[f"p_{name}" for name in names]].to_numpy()
    texts = frame["text"].tolist()
    with no_loading_bar():
        classifier = Classifier(run, device="cpu", backend="onnx-int8", int8_file=int8_file)
        int8 = classifier.predict_proba(texts, batch_size=1)
        batched = classifier.predict_proba(texts, batch_size=BATCH)
        fp16_file = int8_file.parent / ONNX_FILES["fp16"]  # same inputs and outputs: the int8 path runs it as is
        fp16 = Classifier(run, device="cpu", backend="onnx-int8", int8_file=fp16_file).predict_proba(texts, BATCH)
    gap = np.abs(int8 - fp32).max(1)
    common = {
        "texts": len(frame),
        "scored": f"one text at a time, as the validation set of the analysis; and in batches of {BATCH}",
        "prob_gap_mean": round(float(gap.mean()), 5),
        "prob_gap_p95": round(float(np.percentile(gap, 95)), 5),
        "prob_gap_max": round(float(gap.max()), 5),
        "batched": agreement_summary(classifier, fp32, batched),
        "fp16": agreement_summary(classifier, fp32, fp16),
        "files": file_sizes(run, int8_file.parent),
    }
    if classifier.multi_label:
        return {**common, **decision_agreement(classifier, fp32, int8, frame["label"], names)}
    labels = frame["label"].map({name: i for i, name in enumerate(names)}).to_numpy()
    return {
        **common,
        "label_agreement": round(float((int8.argmax(1) == fp32.argmax(1)).mean()), 5),
        "labels_changed": int((int8.argmax(1) != fp32.argmax(1)).sum()),
        "accuracy_fp32": round(float((fp32.argmax(1) == labels).mean()), 5),
        "accuracy_int8": round(float((int8.argmax(1) == labels).mean()), 5),
    }


def file_sizes(run: Path, out: Path) -> dict[str, float]:
    """MB of the weights a pipeline() user downloads and of each ONNX file: what the card's choice of file shows."""
    sizes = {"safetensors": (run / WEIGHTS).stat().st_size} | {
        kind: (out / name).stat().st_size for kind, name in ONNX_FILES.items()}  # fmt: skip
    return {kind: round(size / 1e6, 1) for kind, size in sizes.items()}


def agreement_summary(classifier: Classifier, fp32: np.ndarray, other: np.ndarray) -> dict:
    """Another scoring of the texts against fp32: texts given the same labels (label sets, for a multi-label
    model), how many changed, and the probability gaps."""
    same = (classifier.decide(fp32) == classifier.decide(other)).all(1)
    gap = np.abs(other - fp32).max(1)
    return {
        "label_agreement": round(float(same.mean()), 5),
        "labels_changed": int((~same).sum()),
        "prob_gap_p95": round(float(np.percentile(gap, 95)), 5),
        "prob_gap_max": round(float(gap.max()), 5),
    }


def decision_agreement(classifier: Classifier, fp32: np.ndarray, int8: np.ndarray, true: pd.Series,
                       names: list[str]) -> dict:  # fmt: skip
    """A multi-label model's int8 file against fp32, decision by decision at the model's thresholds: the share of
    (text, label) decisions that agree, per label, the texts whose label set changed, and both micro F1s."""
    from sklearn.metrics import f1_score

    a, b = classifier.decide(fp32), classifier.decide(int8)
    truth = np.array([[name in set(row.split(";")) for name in names] for row in true.fillna("")])
    return {
        "decision_agreement": round(float((a == b).mean()), 5),
        "decision_agreement_per_label": {n: round(float(v), 5) for n, v in zip(names, (a == b).mean(0))},
        "label_agreement": round(float((a == b).all(1).mean()), 5),  # texts given the same label set
        "labels_changed": int((a != b).any(1).sum()),
        "accuracy_fp32": round(float((a == truth).all(1).mean()), 5),  # exact match: every label decision right
        "accuracy_int8": round(float((b == truth).all(1).mean()), 5),
        "f1_micro_fp32": round(float(f1_score(truth, a, average="micro", zero_division=0)), 5),
        "f1_micro_int8": round(float(f1_score(truth, b, average="micro", zero_division=0)), 5),
    }
