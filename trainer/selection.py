"""What to label next: unlabelled texts ranked by how unsure the model is, spread over the embedding space.

Uncertainty alone picks near-copies (twenty rephrasings of one borderline sentence); so the most uncertain texts are
clustered on the model's own embeddings (k-means, one cluster per text wanted) and each cluster gives its most
uncertain text (Zhdanov 2019, "Diverse mini-batch active learning").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

STRATEGIES = ("margin", "entropy")
POOL_FACTOR = 5  # the k-means runs on the n x POOL_FACTOR most uncertain texts


def uncertainty(probs: np.ndarray, strategy: str, multi_label: bool = False, thresholds=None) -> np.ndarray:
    """How unsure the model is of each row, in [0, 1] (1 = a coin toss). margin: 1 - (top - second) probability, or
    for a multi-label model 1 - twice the distance of the label nearest its threshold; entropy: normalised by its
    maximum (over the labels for a multi-label model, each label's own binary entropy, averaged)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    if multi_label:
        if strategy == "margin":
            cut = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
            distance = np.abs(probs - cut) / np.where(probs >= cut, 1 - cut, cut)  # 0 at the threshold, 1 at 0 or 1
            return 1 - distance.min(1)
        return (-(probs * np.log2(probs) + (1 - probs) * np.log2(1 - probs))).mean(1)
    if strategy == "margin":
        top2 = np.sort(probs, axis=1)[:, -2:]
        return 1 - (top2[:, 1] - top2[:, 0])
    return -(probs * np.log(probs)).sum(1) / np.log(probs.shape[1])


def pick(scores: np.ndarray, embeddings: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n rows, most uncertain first, at most one per k-means cluster of the most uncertain texts' embeddings:
    (row indices, cluster of each)."""
    n = min(n, len(scores))
    pool = np.argsort(-scores, kind="stable")[: max(n, min(len(scores), n * POOL_FACTOR))]
    if n == len(pool):
        return pool, np.arange(n)
    clusters = KMeans(n_clusters=n, n_init=1, random_state=seed).fit_predict(embeddings[pool])
    best: dict[int, int] = {}
    for row, cluster in zip(pool, clusters):  # pool is in uncertainty order: the first of a cluster is its best
        best.setdefault(int(cluster), int(row))
    rows = np.array(sorted(best.values(), key=lambda r: -scores[r]))
    return rows, np.array([int(clusters[np.flatnonzero(pool == r)[0]]) for r in rows])


def sheet(texts: list[str], probs: np.ndarray, labels: list[str], chosen: list[str], scores: np.ndarray,
          rows: np.ndarray, clusters: np.ndarray, strategy: str) -> pd.DataFrame:  # fmt: skip
    """The list for an annotator: text, the model's answer, every label's score, and why the text was chosen; an
    empty `label` column to fill in (the annotation tool's, or a spreadsheet's)."""
    top2 = np.argsort(-probs[rows], axis=1)[:, :2]
    why = [f"{strategy} uncertainty {scores[r]:.3f}; the most uncertain text of its cluster "
           f"({clusters[i] + 1} of {len(rows)}); top labels {labels[a]} {probs[r, a]:.2f}, "
           f"{labels[b]} {probs[r, b]:.2f}"
           for i, (r, (a, b)) in enumerate(zip(rows, top2))]  # fmt: skip
    frame = pd.DataFrame({"text": [texts[r] for r in rows], "predicted": [chosen[r] for r in rows],
                          "uncertainty": scores[rows].round(4), "cluster": clusters + 1, "why": why})  # fmt: skip
    for j, name in enumerate(labels):
        frame[f"p_{name}"] = probs[rows, j].round(4)
    frame["label"] = ""
    return frame


def relabel_sheet(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows an analysis flagged as likely label noise, most confident first, as a relabelling sheet: `label` holds
    the label as given, for the annotator to keep or correct (`train --corrections` reads it back)."""
    noisy = predictions[predictions["likely_label_noise"]].sort_values("confidence", ascending=False)
    names = [c for c in predictions.columns if c.startswith("p_")]
    why = [f"likely label noise: labelled {given!r}, the model says {said!r} with confidence {sure:.2f}"
           for given, said, sure in zip(noisy["label"], noisy["predicted"], noisy["confidence"])]  # fmt: skip
    frame = pd.DataFrame({"text": noisy["text"], "given": noisy["label"], "predicted": noisy["predicted"],
                          "confidence": noisy["confidence"].round(4), "why": why})  # fmt: skip
    for column in names:
        frame[column] = noisy[column].round(4)
    frame["label"] = noisy["label"]
    return frame.reset_index(drop=True)
