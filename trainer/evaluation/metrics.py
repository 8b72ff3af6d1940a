"""Classification metrics from scikit-learn, as plain floats."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support


def classification_metrics(labels, predictions) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1 and MCC; F1 of the positive class too when binary."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, average="macro", zero_division=0)
    out = {
        "accuracy": float(accuracy_score(labels, predictions)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }
    if max(labels.max(initial=0), predictions.max(initial=0)) <= 1:
        _, _, f1_pos, _ = precision_recall_fscore_support(
            labels, predictions, average="binary", pos_label=1, zero_division=0
        )
        out["f1"] = float(f1_pos)
    return out


def compute_metrics(eval_pred) -> dict[str, float]:
    """Trainer hook: logits and label ids in, metrics out."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return classification_metrics(labels, np.argmax(logits, axis=-1))
