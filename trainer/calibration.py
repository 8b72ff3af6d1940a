"""Calibrated scores and decisions: temperature scaling fitted on validation and folded into the model's last layer,
and the per-label decision thresholds of a multi-label model.

Folding keeps every client exact: a linear layer whose weights and bias are divided by T gives logits / T, so
`pipeline()`, both ONNX files and transformers.js return calibrated probabilities with no code of their own, and a
softmax's argmax (or a sigmoid's side of 0.5) does not move. The model's config.json records what was done
(`calibration`) and the thresholds (`decision_thresholds`), which `trainer/inference.py` reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, log_softmax
from sklearn.metrics import f1_score

from trainer.evaluation.metrics import expected_calibration_error
from trainer.files import write_text
from trainer.inference import probabilities
from trainer.run_folder import METRICS, PREDICTIONS

logger = logging.getLogger(__name__)

LOG_T_RANGE = (-3.0, 3.0)  # T from 0.05 to 20: far beyond what a fine-tuned model needs either way
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # candidate decision thresholds


def _best_log_t(loss) -> float:
    found = minimize_scalar(loss, bounds=LOG_T_RANGE, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the validation log loss of softmax(logits / T) (Guo et al., 2017)."""
    logits, rows = np.asarray(logits, dtype=np.float64), np.arange(len(labels))

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[rows, labels].mean()

    return _best_log_t(nll)


def fit_label_temperatures(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One T per label, each minimising that label's binary cross-entropy of sigmoid(logit / T) on validation."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)

    def bce(z: np.ndarray, y: np.ndarray):
        return lambda log_t: -(y * log_expit(z / np.exp(log_t)) + (1 - y) * log_expit(-z / np.exp(log_t))).mean()

    return np.array([_best_log_t(bce(logits[:, j], targets[:, j])) for j in range(logits.shape[1])])


def fit(logits: np.ndarray, labels: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per-label temperatures (one T repeated for a single-label model)."""
    if multi_label:
        return fit_label_temperatures(logits, labels)
    return np.full(logits.shape[1], fit_temperature(logits, labels))


def last_linear(model):
    """The classifier's output layer: the last nn.Linear with one output per label."""
    import torch

    found = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels]
    if not found:
        raise ValueError(f"no linear output layer with {model.config.num_labels} outputs in {type(model).__name__}")
    return found[-1]


def fold_temperature(model, temperature: np.ndarray) -> None:
    """Divide the output layer's weights and bias by each label's T, in place: the model's logits become logits / T."""
    import torch

    layer = last_linear(model)
    scale = torch.as_tensor(1.0 / np.asarray(temperature, dtype=np.float64), dtype=layer.weight.dtype)
    with torch.no_grad():
        layer.weight.mul_(scale.to(layer.weight.device)[:, None])
        if layer.bias is not None:
            layer.bias.mul_(scale.to(layer.bias.device))


def calibration_record(temperature: np.ndarray, names: list[str], multi_label: bool) -> dict:
    """config.json's `calibration`: what was folded into the last layer (T, or T per label)."""
    value = ({n: round(float(t), 6) for n, t in zip(names, temperature)} if multi_label
             else round(float(temperature[0]), 6))  # fmt: skip
    return {"method": "temperature", "temperature": value, "fitted_on": "validation"}


def ece_of(logits: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    """ECE of a model's probabilities: of the top class, or over every label probability of a multi-label model."""
    probs = probabilities(logits, multi_label)
    if multi_label:
        return expected_calibration_error(probs.ravel(), np.asarray(labels).ravel())
    return expected_calibration_error(probs.max(1), probs.argmax(1) == labels)


def tune_thresholds(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-label thresholds, each maximising that label's F1 on validation (0.5 for a label without positives), and
    the one global threshold that maximises macro F1; ties go to the threshold nearest 0.5."""
    probs, targets = np.asarray(probs), np.asarray(targets).astype(bool)
    order = np.argsort(np.abs(THRESHOLD_GRID - 0.5), kind="stable")  # nearest 0.5 first, so argmax breaks ties there
    grid = THRESHOLD_GRID[order]
    chosen = probs[None, :, :] >= grid[:, None, None]  # (thresholds, n, k)
    tp = (chosen & targets).sum(1)
    fp = (chosen & ~targets).sum(1)
    fn = (~chosen & targets).sum(1)
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)  # (thresholds, k)
    per_label = np.where(targets.any(0), grid[f1.argmax(0)], 0.5)
    return per_label, float(grid[f1.mean(1).argmax()])


def threshold_results(probs: np.ndarray, targets: np.ndarray, per_label: np.ndarray, global_t: float) -> dict:
    """Macro and micro F1 of the three decision rules on one split: per-label thresholds, the global one, and 0.5."""
    out = {}
    for rule, cut in (("per_label", per_label), ("global", global_t), ("0.5", 0.5)):
        chosen = np.asarray(probs) >= cut
        out[rule] = {avg: round(float(f1_score(targets, chosen, average=avg, zero_division=0)), 6)
                     for avg in ("macro", "micro")}  # fmt: skip
        out[rule] = {f"f1_{avg}": value for avg, value in out[rule].items()}
    return out


def answered(analysis_dir: Path, min_confidence: float) -> dict:
    """How many texts of an analysis are answered at `min_confidence` (the rest are 'uncertain'), and how many of
    those are right (exact match for a multi-label model); recorded in its metrics.json as `min_confidence`."""
    frame = pd.read_parquet(analysis_dir / PREDICTIONS, columns=["confidence", "correct"])
    sure = frame["confidence"].to_numpy() >= min_confidence
    found = {
        "min_confidence": min_confidence,
        "n": len(frame),
        "answered": int(sure.sum()),
        "coverage": float(sure.mean()),
        "accuracy": float(frame["correct"][sure].mean()) if sure.any() else 0.0,
    }
    metrics_file = analysis_dir / METRICS
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        write_text(metrics_file, json.dumps({**metrics, "min_confidence": found}, indent=2) + "\n")
    return found
