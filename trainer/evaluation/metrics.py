"""The one metrics path: `point_metrics` scores class probabilities for the Trainer hook and the final report alike.

Library functions compute every metric they can (scikit-learn, scipy); only the ECE, which no installed library
computes, is written here, on the same confidence bins as the reliability diagram. What each metric is called, which
way is better and how it is shown lives in `trainer/metric_catalogue.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import islice

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    hamming_loss,
    log_loss,
    matthews_corrcoef,
    mean_absolute_error,
    precision_recall_fscore_support,
    roc_auc_score,
)

from trainer.inference import probabilities
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


def point_metrics(labels, probs, names: list[str], label_set: LabelSet | None = None,
                  thresholds=None) -> dict[str, float]:  # fmt: skip
    """Every metric of predicted class probabilities (rows of `probs`) against label ids, as plain floats: accuracy,
    the per-class families, each of `SCORERS`, and for ordered labels (`label_set`, by default read from the names)
    the ordinal figures of `ordinal_metrics`. Labels as an (n, k) 0/1 matrix are a multi-label model's, scored at
    `thresholds` by `multilabel_metrics`."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    if labels.ndim == 2:
        return multilabel_metrics(labels, probs, names, thresholds)
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


def decisions(probs: np.ndarray, thresholds=None) -> np.ndarray:
    """A multi-label model's decisions: each label whose probability reaches its threshold (0.5 when None), the rule
    of `Classifier.decide` (tested to agree)."""
    return probs >= (0.5 if thresholds is None else np.asarray(thresholds, dtype=float))


def multilabel_metrics(labels, probs, names: list[str], thresholds=None) -> dict[str, float]:
    """Every metric of a multi-label model, as plain floats: labels and decisions (`decisions` at `thresholds`) are
    (n, k) indicator matrices scored by scikit-learn (micro, macro and weighted F1, precision and recall; subset
    accuracy, i.e. exact match; Hamming loss); log loss (mean binary cross-entropy), Brier score and ECE are over all
    n * k label probabilities; ROC-AUC and PR-AUC (average precision) are macro means over the labels with both
    classes here; then labels per text, predicted and true, and each label's own figures (`_per_label`)."""
    y, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    chosen = decisions(probs, thresholds).astype(int)
    out = {}
    for avg in ("micro", "macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(y, chosen, average=avg, zero_division=0)
        out.update({f"f1_{avg}": f1, f"precision_{avg}": precision, f"recall_{avg}": recall})
    out["subset_accuracy"] = accuracy_score(y, chosen)
    out["hamming_loss"] = hamming_loss(y, chosen)
    per_label = _per_label(y, probs, chosen, names)
    for key in ("roc_auc", "pr_auc"):
        values = [per_label[f"{key}_{name}"] for name in names if f"{key}_{name}" in per_label]
        if values:
            out[key] = np.mean(values)
    flat_y, flat_p = y.ravel(), probs.ravel()
    out["log_loss"] = log_loss(flat_y, flat_p, labels=[0, 1])
    out["brier"] = brier_score_loss(flat_y, flat_p, labels=[0, 1])
    out["ece"] = expected_calibration_error(flat_p, flat_y)
    out["labels_per_text"] = chosen.sum(1).mean()
    out["labels_per_text_true"] = y.sum(1).mean()
    return {key: float(value) for key, value in {**out, **per_label}.items()}


def _per_label(y: np.ndarray, probs: np.ndarray, chosen: np.ndarray, names: list[str]) -> dict[str, float]:
    """Each label's precision, recall, F1 and support at its threshold, and (when it has both classes here) its
    ROC-AUC and average precision, keys suffixed with its name."""
    precision, recall, f1, support = precision_recall_fscore_support(y, chosen, average=None, zero_division=0)
    out = {}
    for j, name in enumerate(names):
        out.update({f"precision_{name}": precision[j], f"recall_{name}": recall[j], f"f1_{name}": f1[j],
                    f"support_{name}": support[j]})  # fmt: skip
        if 0 < y[:, j].sum() < len(y):
            out[f"roc_auc_{name}"] = roc_auc_score(y[:, j], probs[:, j])
            out[f"pr_auc_{name}"] = average_precision_score(y[:, j], probs[:, j])
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


def compute_metrics(eval_pred, names: list[str], label_set: LabelSet | None = None, multi_label: bool = False,
                    thresholds=None) -> dict[str, float]:  # fmt: skip
    """Trainer hook: logits -> probabilities (softmax; a sigmoid per label for a multi-label model, whose label_ids
    are its (n, k) 0/1 rows) -> `point_metrics` (Trainer prefixes the keys with eval_)."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return point_metrics(eval_pred.label_ids, probabilities(logits, multi_label), names, label_set, thresholds)


def compute_metrics_for(names: list[str], order: str = "auto", multi_label: bool = False, thresholds=None):
    """The Trainer's `compute_metrics` for a model whose label ids name `names` (a partial, so it pickles); a
    multi-label model's decisions are taken at `thresholds` (0.5 for every label when None)."""
    return partial(compute_metrics, names=list(names), label_set=LabelSet.of(names, order), multi_label=multi_label,
                   thresholds=thresholds)  # fmt: skip


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


COVERAGES = tuple(round(0.1 * i, 1) for i in range(1, 11))  # the risk-coverage table's shares of texts answered


def risk_coverage(confidence, correct, measure: str = "accuracy") -> dict:
    """How accurate the model is on the texts it is most sure of, answering only those.

    For each coverage c in COVERAGES: the accuracy on the ceil(c * n) most confident texts (`n` of them) and the
    confidence of the least confident among them (`min_confidence`: answering every text at or above it covers at
    least c). `aurc`: the area under the risk (1 - accuracy) against coverage curve over every cut-off, the mean risk
    of the m most confident texts for m = 1 ... n (lower is better; ties in confidence keep their order in the data).
    `correct` is the exact match of all labels for a multi-label model (`measure` says which).
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    n = len(confidence)
    order = np.argsort(-confidence, kind="stable")
    accuracy = np.cumsum(correct[order]) / np.arange(1, n + 1)
    points = []
    for coverage in COVERAGES if n else ():
        top = max(1, int(np.ceil(round(coverage * n, 9))))  # round: 0.3 * 10 is 3.0000000000000004
        points.append({"coverage": coverage, "accuracy": float(accuracy[top - 1]),
                       "min_confidence": float(confidence[order[top - 1]]), "n": top})  # fmt: skip
    return {"points": points, "aurc": float(np.mean(1 - accuracy)) if n else float("nan"), "accuracy_measure": measure}


def metrics_with_ci(labels, probs, names: list[str], n_boot: int = 1000, seed: int = 0,
                    label_set: LabelSet | None = None, thresholds=None) -> dict[str, dict]:  # fmt: skip
    """Every metric as {value, ci_low, ci_high}: a percentile bootstrap 95% interval over resampled rows (for a
    multi-label model, `labels` (n, k), all resamples at once by `multilabel_resamples`)."""
    # Hand loop, not scipy.stats.bootstrap: as fast (both call point_metrics per resample), and a resample missing a
    # class (no ROC-AUC) is skipped here, where scipy needs a fixed-length vector and one nan voids the interval.
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    point = point_metrics(labels, probs, names, label_set, thresholds)
    rng = np.random.default_rng(seed)
    draws = (rng.integers(0, len(labels), len(labels)) for _ in range(n_boot))
    if labels.ndim == 2:
        samples = multilabel_resamples(labels, probs, names, thresholds, draws)
    else:
        samples = {key: [] for key in point}
        for idx in draws:
            for key, value in point_metrics(labels[idx], probs[idx], names, label_set).items():
                samples[key].append(value)
    out = {}
    for key, value in point.items():
        drawn = np.asarray(samples.get(key, []), dtype=float)
        drawn = drawn[~np.isnan(drawn)]  # a resample where the figure is undefined (a label left with one class)
        low, high = np.percentile(drawn, [2.5, 97.5]) if len(drawn) else (np.nan, np.nan)
        out[key] = {"value": value, "ci_low": float(low), "ci_high": float(high)}
    return out


RESAMPLE_CELLS = 2_000_000  # resamples x rows of weights scored per matrix product: 16 MB, at most 250 resamples


def multilabel_resamples(labels, probs, names: list[str], thresholds, draws) -> dict[str, np.ndarray]:
    """Every `multilabel_metrics` figure on each resample of rows (`draws`: arrays of row indices), nan where it is
    undefined on one; equal to `multilabel_metrics` of the resampled rows (tested).

    A resample is a count per row, so all are scored at once: each count-based figure (F1 and its family, subset
    accuracy, Hamming loss, log loss, Brier, ECE, labels per text) is a ratio of weighted sums, counts @ per-row
    tallies, and ROC-AUC and average precision are weighted curves over each label's distinct scores. Calling
    `multilabel_metrics` per resample instead takes minutes for GoEmotions' 5,427 texts and 28 labels.
    """
    y, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    n, k = y.shape
    tallies = _row_tallies(y, probs, decisions(probs, thresholds))
    blocks = [rows.reshape(n, -1) for rows in tallies.values()]
    stacked, splits = np.hstack(blocks), np.cumsum([block.shape[1] for block in blocks])[:-1]  # one product for all
    curves = [_curve_groups(y[:, j], probs[:, j]) for j in range(k)]
    chunks = []
    while batch := list(islice(draws, max(1, min(250, RESAMPLE_CELLS // n)))):
        weights = np.array([np.bincount(idx, minlength=n) for idx in batch], dtype=float)  # each row's draws
        parts = np.split(weights @ stacked, splits, axis=1)
        sums = {key: part if tallies[key].ndim == 2 else part[:, 0] for key, part in zip(tallies, parts)}
        chunks.append({**_count_figures(sums, n, k, names), **_ranking_figures(curves, weights, names)})
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]} if chunks else {}


def _row_tallies(y: np.ndarray, probs: np.ndarray, chosen: np.ndarray) -> dict[str, np.ndarray]:
    """What each row adds to the count-based figures: per label its hit, false alarm, miss and positive; per row
    whether it is an exact match, its wrong decisions, binary cross-entropy and squared error summed over labels, its
    labels chosen and true; per calibration bin its labels' outcomes and probabilities."""
    eps = np.finfo(float).eps  # sklearn's log_loss clips each probability into [eps, 1 - eps]
    bce = -(y * np.log(np.clip(probs, eps, 1 - eps)) + (1 - y) * np.log(np.clip(1 - probs, eps, 1 - eps)))
    n = len(y)
    slot = (np.arange(n)[:, None] * CALIBRATION_BINS + calibration_bin_ids(probs)).ravel()
    per_bin = lambda values: np.bincount(slot, weights=values.ravel(), minlength=n * CALIBRATION_BINS)  # noqa: E731
    return {
        "tp": (y & chosen).astype(float), "fp": (~y.astype(bool) & chosen).astype(float),
        "fn": (y & ~chosen).astype(float), "support": y.astype(float),
        "exact": (y == chosen).all(1).astype(float), "wrong": (y != chosen).sum(1).astype(float),
        "bce": bce.sum(1), "squared": ((probs - y) ** 2).sum(1),
        "chosen": chosen.sum(1).astype(float), "true": y.sum(1).astype(float),
        "bin_hits": per_bin(y.astype(float)).reshape(n, -1), "bin_probs": per_bin(probs).reshape(n, -1),
    }  # fmt: skip


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _count_figures(sums: dict[str, np.ndarray], n: int, k: int, names: list[str]) -> dict[str, np.ndarray]:
    """The count-based figures of every resample (n rows each) from its weighted tallies (`_row_tallies`)."""
    tp, fp, fn, support = sums["tp"], sums["fp"], sums["fn"], sums["support"]
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    per_label = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": f1}
    out = {}
    for metric, values in per_label.items():
        out[f"{metric}_macro"] = values.mean(1)
        out[f"{metric}_weighted"] = _ratio((values * support).sum(1), support.sum(1))
        out.update({f"{metric}_{name}": values[:, j] for j, name in enumerate(names)})
    tp, fp, fn = tp.sum(1), fp.sum(1), fn.sum(1)
    out.update(precision_micro=_ratio(tp, tp + fp), recall_micro=_ratio(tp, tp + fn),
               f1_micro=_ratio(2 * tp, 2 * tp + fp + fn))  # fmt: skip
    out.update({f"support_{name}": support[:, j] for j, name in enumerate(names)})
    cells = n * k
    out.update(subset_accuracy=sums["exact"] / n, hamming_loss=sums["wrong"] / cells, log_loss=sums["bce"] / cells,
               brier=sums["squared"] / cells, ece=np.abs(sums["bin_hits"] - sums["bin_probs"]).sum(1) / cells,
               labels_per_text=sums["chosen"] / n, labels_per_text_true=sums["true"] / n)  # fmt: skip
    return out


def _curve_groups(y: np.ndarray, scores: np.ndarray) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """One label's rows gathered into groups numbered from the lowest score up, as (groups, rows) 0/1 matrices of its
    positive and of its negative rows. Rows of equal score share a group, as each step of scikit-learn's curves is one
    distinct score, and so do the runs of negative-only scores between two scores held by a positive, which moves
    neither curve's area (the positives' groups stay apart): a few groups per positive instead of one per row."""
    _, distinct = np.unique(scores, return_inverse=True)
    held = np.zeros(distinct.max() + 1, dtype=int)
    held[distinct[y == 1]] = 1
    passed = np.cumsum(held)  # positive-held scores up to and including each distinct score
    group, rows = (2 * passed - held)[distinct], np.arange(len(y))
    shape = (int(group.max()) + 1, len(y))
    return tuple(sparse.csr_matrix(((y == side).astype(float), (group, rows)), shape=shape) for side in (1, 0))


def _ranking_figures(curves, weights: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each label's ROC-AUC and average precision on every resample (rows of `weights`; `curves`: each label's
    `_curve_groups`), and their macro means over the labels with both classes in that resample; nan where a label
    has one class."""
    out, columns = {}, np.ascontiguousarray(weights.T)  # (rows, resamples): what a sparse product reads without copying
    for (positives, negatives), name in zip(curves, names):
        pos, neg = positives @ columns, negatives @ columns  # (groups, resamples): each group's weight in each
        total_pos, total_neg = pos.sum(0), neg.sum(0)
        defined = (total_pos > 0) & (total_neg > 0)
        below = np.cumsum(neg, 0) - 0.5 * neg  # negatives scored lower, ties counted half
        auc = _ratio((pos * below).sum(0), total_pos * total_neg)
        hits, alarms = np.cumsum(pos[::-1], 0), np.cumsum(neg[::-1], 0)  # from the highest score down
        ap = _ratio((pos[::-1] * _ratio(hits, hits + alarms)).sum(0), total_pos)
        out[f"roc_auc_{name}"], out[f"pr_auc_{name}"] = np.where(defined, auc, np.nan), np.where(defined, ap, np.nan)
    for key in ("roc_auc", "pr_auc"):
        stacked = np.stack([out[f"{key}_{name}"] for name in names], 1)
        counted = (~np.isnan(stacked)).sum(1)
        out[key] = np.where(counted > 0, _ratio(np.nansum(stacked, 1), counted), np.nan)
    return out


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (well-behaved for small slices), from scipy; nan for an empty slice."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
