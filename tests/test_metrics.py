import math

import numpy as np
import pytest
from transformers import EvalPrediction

from trainer.evaluation.metrics import classification_metrics, compute_metrics

LABELS = [1, 0, 1, 1, 0, 0]
PREDS = [1, 0, 0, 1, 1, 0]  # tp=2 tn=2 fp=1 fn=1


def test_metrics_equal_hand_computed_values():
    m = classification_metrics(LABELS, PREDS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx(2 / 3)
    assert m["recall_macro"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 3 / 9
    assert m["mcc"] == pytest.approx(3 / math.sqrt(3**4))


def test_compute_metrics_takes_argmax_of_logits():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [2.0, 1.0]])
    m = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array(LABELS)))
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_multiclass_has_no_binary_f1():
    m = classification_metrics([0, 1, 2, 2], [0, 2, 2, 2])
    assert "f1" not in m
    assert m["accuracy"] == pytest.approx(0.75)
