"""The one metrics path: `point_metrics` scores class probabilities for the Trainer hook and the final report alike.

Library functions compute every metric they can (scikit-learn, scipy); only the ECE, which no installed library
computes, is written here, on the same confidence bins as the reliability diagram. What each metric is called, which
way is better and how it is shown lives in `trainer/metric_catalogue.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.special import softmax
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    log_loss,
    matthews_corrcoef,
    mean_absolute_error,
    precision_recall_fscore_support,
    roc_auc_score,
)

from trainer.labels import LabelSet

CALIBRATION_BINS = 10  # equal-width confidence bins of the ECE and of the reliability diagram


@dataclass(frozen=True)
class Scored:
    """What every metric is computed from: label ids, class probabilities (rows) and the predicted ids."""

    labels: np.ndarray
    probs: np.ndarray
    preds: np.ndarray

    @property
    def classes(self) -> np.ndarray:
        return np.arange(self.probs.shape[1])


def _roc_auc(s: Scored) -> float | None:
    """One-vs-rest for k classes, p(label 1) for two; None (left out) when a class has no example."""
    if len(np.unique(s.labels)) < len(s.classes):
        return None
    if len(s.classes) == 2:
        return roc_auc_score(s.labels, s.probs[:, 1])
    return roc_auc_score(s.labels, s.probs, multi_class="ovr")


# One function per single-figure metric, in metrics.json's order (None: undefined on this data, left out). Its key
# needs an entry in trainer/metric_catalogue.py, which says how every reader names and shows it.
SCORERS: dict[str, Callable[[Scored], float | None]] = {
    "mcc": lambda s: matthews_corrcoef(s.labels, s.preds) if len(np.unique(s.labels)) > 1 else 0.0,  # sklearn: 0 too
    "roc_auc": _roc_auc,
    "log_loss": lambda s: log_loss(s.labels, s.probs, labels=s.classes),
    # scale_by_half="auto": binary = mean squared error of the positive-class probability; k classes: summed
    "brier": lambda s: brier_score_loss(s.labels, s.probs, labels=s.classes),
    "ece": lambda s: expected_calibration_error(s.probs.max(1), s.preds == s.labels),
}


def point_metrics(labels, probs, names: list[str], label_set: LabelSet | None = None) -> dict[str, float]:
    """Every metric of predicted class probabilities (rows of `probs`) against label ids, as plain floats: accuracy,
    the per-class families, each of `SCORERS`, and for ordered labels (`label_set`, by default read from the names)
    the ordinal figures of `ordinal_metrics`."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    label_set = label_set or LabelSet.of(names)
    scored = Scored(labels, probs, probs.argmax(1))
    out = {"accuracy": accuracy_score(labels, scored.preds), **per_class_metrics(labels, scored.preds, names)}
    if len(scored.classes) == 2:  # GLUE's "f1": the F1 of label id 1 (so --metric_for_best_model f1 works as elsewhere)
        out["f1"] = out[f"f1_{names[1]}"]
    for key, scorer in SCORERS.items():
        if (value := scorer(scored)) is not None:
            out[key] = value
    if label_set.ordinal:
        out.update(ordinal_metrics(labels, scored.preds, label_set))
    return {key: float(value) for key, value in out.items()}


def ordinal_metrics(labels: np.ndarray, preds: np.ndarray, label_set: LabelSet) -> dict[str, float]:
    """For labels on a scale: mean absolute error in classes, within-one-class accuracy, the share of rows predicted
    exactly one class off, quadratic-weighted kappa, and (when the ends carry polarity) the share of rows whose
    prediction lands on the other side of neutral (very negative -> positive)."""
    rank = np.asarray(label_set.rank)
    true, pred = rank[labels], rank[preds]
    distance = np.abs(true - pred)
    out = {
        "mae": mean_absolute_error(true, pred),
        "within_one": float(np.mean(distance <= 1)),
        "off_by_one": float(np.mean(distance == 1)),
        # nan when every row is one class and so is every prediction: sklearn divides 0 by 0
        "qwk": cohen_kappa_score(true, pred, weights="quadratic", labels=np.arange(label_set.k))
        if len(np.unique(np.concatenate([true, pred]))) > 1
        else 0.0,
    }
    if label_set.has_polarity:
        sign = np.asarray(label_set.sign)
        out["polarity_flips"] = float(np.mean(sign[labels] * sign[preds] < 0))
    return out


def per_class_metrics(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, float]:
    """Precision, recall and F1 of each class (keys suffixed with its name), then their macro and weighted means."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=np.arange(len(names)), zero_division=0
    )
    out = {}
    for i, name in enumerate(names):
        out.update({f"precision_{name}": precision[i], f"recall_{name}": recall[i], f"f1_{name}": f1[i]})
    # Equal to average="macro" / "weighted" over every class (tested), from one sklearn call instead of three.
    for avg, weights in (("macro", None), ("weighted", support)):
        out.update({f"{metric}_{avg}": np.average(values, weights=weights)
                    for metric, values in (("precision", precision), ("recall", recall), ("f1", f1))})  # fmt: skip
    return out


def compute_metrics(eval_pred, names: list[str], label_set: LabelSet | None = None) -> dict[str, float]:
    """Trainer hook: logits -> softmax probabilities -> `point_metrics` (Trainer prefixes the keys with eval_)."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return point_metrics(eval_pred.label_ids, softmax(np.asarray(logits, dtype=float), axis=-1), names, label_set)


def compute_metrics_for(names: list[str], order: str = "auto"):
    """The Trainer's `compute_metrics` for a model whose label ids name `names` (a partial, so it pickles)."""
    return partial(compute_metrics, names=list(names), label_set=LabelSet.of(names, order))


def confusion(labels, preds, k: int) -> np.ndarray:
    """Counts with true labels as rows and predictions as columns, every class present."""
    return confusion_matrix(labels, preds, labels=np.arange(k))


def calibration_bin_ids(confidence: np.ndarray, bins: int = CALIBRATION_BINS) -> np.ndarray:
    """Each confidence's equal-width bin, right-closed ((0.9, 1.0] is the last) exactly as calibration_curve bins."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence)


def expected_calibration_error(confidence, correct, bins: int = CALIBRATION_BINS) -> float:
    """Weighted mean |accuracy - confidence| over the confidence bins: sum over bins of |#correct - sum(conf)| / n."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    ids = calibration_bin_ids(confidence, bins)
    gaps = np.bincount(ids, weights=correct, minlength=bins) - np.bincount(ids, weights=confidence, minlength=bins)
    return float(np.abs(gaps).sum() / len(confidence))


def reliability_bins(confidence, correct, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Per non-empty confidence bin: mean confidence, accuracy (sklearn's calibration_curve) and count."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, pos_label=1, n_bins=bins, strategy="uniform")
    counts = np.bincount(calibration_bin_ids(confidence, bins), minlength=bins)  # calibration_curve returns no counts
    filled = np.flatnonzero(counts)
    frame = pd.DataFrame({"confidence": mean_confidence, "accuracy": accuracy, "n": counts[filled]}, index=filled)
    return frame.rename_axis("bin")


def metrics_with_ci(labels, probs, names: list[str], n_boot: int = 1000, seed: int = 0,
                    label_set: LabelSet | None = None) -> dict[str, dict]:  # fmt: skip
    """Every metric as {value, ci_low, ci_high}: a percentile bootstrap 95% interval over resampled rows."""
    # Hand loop, not scipy.stats.bootstrap: as fast (both call point_metrics per resample), and a resample missing a
    # class (no ROC-AUC) is skipped here, where scipy needs a fixed-length vector and one nan voids the interval.
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    point = point_metrics(labels, probs, names, label_set)
    rng = np.random.default_rng(seed)
    samples = {key: [] for key in point}
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        for key, value in point_metrics(labels[idx], probs[idx], names, label_set).items():
            samples[key].append(value)
    out = {}
    for key, value in point.items():
        low, high = np.percentile(samples[key], [2.5, 97.5]) if samples[key] else (np.nan, np.nan)
        out[key] = {"value": value, "ci_low": float(low), "ci_high": float(high)}
    return out


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (well-behaved for small slices), from scipy; nan for an empty slice."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
