"""Pure error analysis: rule-based error types, per-example predictions, slices, training summary.

The metrics themselves (point values, bootstrap and Wilson intervals, calibration) are in `metrics.py`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from trainer.evaluation.metrics import wilson_interval
from trainer.labels import LabelSet

NEGATION = re.compile(r"\b(?:not|no|never|nothing|none|nobody|neither|nor|without|hardly|barely|cannot)\b|n't\b", re.I)
CONTRAST = re.compile(r"\b(?:but|although|though|yet|however|while|whereas|despite|nevertheless|still)\b", re.I)
INTENSIFIER_HEDGE = re.compile(
    r"\b(?:very|really|extremely|so|too|quite|rather|somewhat|pretty|fairly|slightly|totally|utterly|incredibly"
    r"|absolutely|almost|mostly|perhaps|maybe|kind of|sort of|a bit|a little)\b",
    re.I,
)
QUOTES = re.compile(r"``|''|\"|(?:^|\s)'\w")
# Small polarity lexicons for the sarcasm cue: an exclamation or quotation next to words of the other polarity.
POSITIVE_WORDS = set(
    "good great best brilliant wonderful fantastic amazing excellent fun funny love loved lovely beautiful perfect "
    "masterpiece clever charming delightful enjoyable superb terrific genius remarkable impressive".split()
)
NEGATIVE_WORDS = set(
    "bad worst awful terrible boring dull stupid mess poor horrible dreadful lame tedious waste pointless "
    "annoying ugly painful disaster fails failed bland mediocre unfunny".split()
)
RULES = ["negation", "contrast", "intensifier_hedge", "sarcasm_cue", "very_short", "long"]
NOISE_SURE = 0.9  # how sure a multi-label model must be that a given label is wrong (or a missing one right)


def rule_features(texts: pd.Series, labels: np.ndarray, label_set: LabelSet) -> pd.DataFrame:
    """Per text: which rule-based cues it shows (independent of the model's prediction). The sarcasm cue needs a
    label with a side: a positive text with negative words or the reverse; neutral texts never show it."""
    words = texts.str.lower().str.findall(r"[a-z']+")
    n_tokens = texts.str.split().str.len()
    long_cut = np.percentile(n_tokens, 90)
    pos_words = words.map(lambda ws: any(w in POSITIVE_WORDS for w in ws)).to_numpy(bool)
    neg_words = words.map(lambda ws: any(w in NEGATIVE_WORDS for w in ws)).to_numpy(bool)
    side = text_sides(np.asarray(labels), label_set)
    opposite = ((side > 0) & neg_words) | ((side < 0) & pos_words)
    emphatic = texts.str.contains("!", regex=False) | texts.str.contains(QUOTES)
    return pd.DataFrame(
        {
            "negation": texts.str.contains(NEGATION),
            "contrast": texts.str.contains(CONTRAST),
            "intensifier_hedge": texts.str.contains(INTENSIFIER_HEDGE),
            "sarcasm_cue": emphatic & opposite,
            "very_short": n_tokens <= 4,
            "long": n_tokens > long_cut,
        },
        index=texts.index,
    )


def text_sides(labels: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Each text's side (-1, 0, +1) from its label id, or from its row of 0/1 labels (a multi-label text): the side
    its labels share, 0 when they hold both sides, only neutral ones, or none."""
    sign = np.asarray(label_set.sign or [0] * label_set.k)
    if labels.ndim == 1:
        return sign[labels]
    positive, negative = (labels[:, sign > 0] > 0).any(1), (labels[:, sign < 0] > 0).any(1)
    return positive.astype(int) - negative.astype(int)


def label_noise_mask(labels: np.ndarray, probs: np.ndarray, least: float = 0.5) -> np.ndarray:
    """Confident learning: the given label's probability is below its class's average self-confidence, and another
    class's probability reaches that class's own threshold and at least `least` (so plain low-confidence mistakes,
    and with k classes the many unsure near misses between neighbours, are not flagged)."""
    k = probs.shape[1]
    given = probs[np.arange(len(labels)), labels]
    thresholds = np.array([probs[labels == c, c].mean() if (labels == c).any() else 1.0 for c in range(k)])
    other = probs >= np.maximum(thresholds, least)
    other[np.arange(len(labels)), labels] = False
    return (given < thresholds[labels]) & other.any(1)


def predictions_frame(texts, labels, probs, names: list[str], label_set: LabelSet | None = None) -> pd.DataFrame:
    """One row per example: text, label, predicted, probabilities, confidence, correct, length, loss, rule cues,
    and the error types that the label set gives meaning to (`mistake_types`)."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    label_set = label_set or LabelSet.of(names)
    texts = pd.Series(list(texts), dtype=str)
    preds = probs.argmax(1)
    frame = pd.DataFrame(
        {
            "text": texts,
            "label": [names[i] for i in labels],
            "predicted": [names[i] for i in preds],
            **{f"p_{name}": probs[:, i] for i, name in enumerate(names)},
            "confidence": probs.max(1),
            "correct": preds == labels,
            "length": texts.str.split().str.len(),
            # clipped as sklearn's log_loss clips, so the mean of this column is metrics.json's log_loss
            "loss": -np.log(np.clip(probs[np.arange(len(labels)), labels], np.finfo(float).eps, 1)),
        }
    )
    if label_set.ordinal:
        rank = np.asarray(label_set.rank)
        frame["class_distance"] = np.abs(rank[labels] - rank[preds])
    cues = rule_features(texts, labels, label_set)
    frame = frame.join(cues)
    frame["likely_label_noise"] = label_noise_mask(labels, probs)
    frame["high_confidence_error"] = ~frame["correct"] & (frame["confidence"] >= 0.9)
    for tag, mask in mistake_types(labels, preds, label_set).items():
        frame[tag] = mask
    return frame


def mistake_types(labels: np.ndarray, preds: np.ndarray, label_set: LabelSet) -> dict[str, np.ndarray]:
    """The kinds of mistake a label set gives meaning to, one mask each (all False on correct rows).

    Two classes: false positive / false negative (against the positive class). Ordered labels: off by one class,
    a polarity flip (the prediction on the other side of neutral), or off by more without a flip. Polarity without
    an order: polarity flips, and mistakes into or out of a neutral class. No polarity or order: none (the confusion
    matrix and the most-confused pairs say which classes are mixed up).
    """
    wrong = labels != preds
    if label_set.k == 2:
        positive = label_set.positive_class
        return {"false_positive": (preds == positive) & (labels != positive),
                "false_negative": (preds != positive) & (labels == positive)}  # fmt: skip
    out = {}
    sign = np.asarray(label_set.sign) if label_set.has_polarity else None
    flip = wrong & (sign[labels] * sign[preds] < 0) if sign is not None else np.zeros_like(wrong)
    if label_set.ordinal:
        rank = np.asarray(label_set.rank)
        distance = np.abs(rank[labels] - rank[preds])
        out["off_by_one"] = distance == 1
        if sign is not None:
            out["polarity_flip"] = flip
        out["off_by_more"] = (distance > 1) & ~flip
    elif sign is not None:
        out["polarity_flip"] = flip
        out["neutral_confusion"] = wrong & ((sign[labels] == 0) | (sign[preds] == 0))
    return out


def joined(rows: np.ndarray, names: list[str]) -> list[str]:
    """Each row of 0/1 flags as the names it flags, joined by ';' in label order ("" for none)."""
    return [";".join(name for name, on in zip(names, row) if on) for row in rows]


def multilabel_frame(texts, labels, probs, chosen, confidence, names: list[str],
                     label_set: LabelSet | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per text of a multi-label model: text, true and predicted labels (joined by ';'), probabilities, the
    classifier's confidence, correct (every label right), the labels missed and extra (and how many), length, loss
    (mean binary cross-entropy of the row, clipped as log_loss is), rule cues, the error tags, and top_label.

    `chosen` and `confidence` are `Classifier.decide` and `Classifier.confidence` of `probs`."""
    y, probs, chosen = np.asarray(labels).astype(bool), np.asarray(probs, dtype=float), np.asarray(chosen, bool)
    label_set = label_set or LabelSet.of(names, "nominal")
    texts = pd.Series(list(texts), dtype=str)
    missed, extra = y & ~chosen, chosen & ~y
    eps = np.finfo(float).eps
    bce = -np.where(y, np.log(np.clip(probs, eps, 1 - eps)), np.log(np.clip(1 - probs, eps, 1 - eps)))
    frame = pd.DataFrame(
        {
            "text": texts,
            "label": joined(y, names),
            "predicted": joined(chosen, names),
            **{f"p_{name}": probs[:, i] for i, name in enumerate(names)},
            "confidence": np.asarray(confidence, dtype=float),
            "correct": ~(missed | extra).any(1),
            "missed": joined(missed, names),
            "extra": joined(extra, names),
            "n_missed": missed.sum(1),
            "n_extra": extra.sum(1),
            "length": texts.str.split().str.len(),
            "loss": bce.mean(1),
        }
    )
    frame = frame.join(rule_features(texts, y.astype(int), label_set))
    frame["high_confidence_error"] = ~frame["correct"] & (frame["confidence"] >= 0.9)
    frame["missed_label"], frame["extra_label"] = frame["n_missed"] > 0, frame["n_extra"] > 0
    if label_set.has_polarity:  # a label of one side missed while one of the other side was chosen instead
        sign = np.asarray(label_set.sign)
        frame["polarity_flip"] = ((missed[:, sign > 0].any(1) & extra[:, sign < 0].any(1))
                                  | (missed[:, sign < 0].any(1) & extra[:, sign > 0].any(1)))  # fmt: skip
    frame["likely_label_noise"] = multilabel_noise_mask(y, probs)
    frame["top_label"] = np.asarray(names)[probs.argmax(1)]
    return frame


def label_mistakes(frame: pd.DataFrame) -> dict[str, int]:
    """A multi-label frame's mistakes counted: texts with a label missed, and labels missed; the same for extra."""
    return {"texts_missed": int((frame["n_missed"] > 0).sum()), "labels_missed": int(frame["n_missed"].sum()),
            "texts_extra": int((frame["n_extra"] > 0).sum()), "labels_extra": int(frame["n_extra"].sum())}  # fmt: skip


def multilabel_noise_mask(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Texts with a label the model is very sure is wrong: `label_noise_mask` on each label as a two-class problem
    (given or not), so a label given where the model is surer it is absent than the label's average absent text is,
    or the reverse, and at least NOISE_SURE sure (a text has k chances to be flagged, so the bar is higher)."""
    flagged = np.zeros(len(labels), dtype=bool)
    for j in range(labels.shape[1]):
        flagged |= label_noise_mask(labels[:, j].astype(int), np.stack([1 - probs[:, j], probs[:, j]], 1), NOISE_SURE)
    return flagged


# Every error tag in the order the CSV and the reports list them; a frame carries those its label set has.
ERROR_TAGS = [*RULES, "high_confidence_error", "missed_label", "extra_label", "false_positive", "false_negative",
              "off_by_one", "polarity_flip", "off_by_more", "neutral_confusion", "likely_label_noise"]  # fmt: skip


def error_tags(frame: pd.DataFrame) -> list[str]:
    """The error tags this predictions frame carries."""
    return [tag for tag in ERROR_TAGS if tag in frame.columns]


def incorrect_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """Wrong predictions, most confident first, with their error-type tags joined by ';' (and, for ordered labels,
    how many classes off each one is; for a multi-label model, the labels missed and extra)."""
    wrong = frame[~frame["correct"]].sort_values("confidence", ascending=False)
    tagged = error_tags(frame)
    tags = wrong[tagged].apply(lambda row: ";".join(t for t in tagged if row[t]), axis=1)
    if "missed" in frame:
        return pd.DataFrame(
            {"text": wrong["text"], "true_labels": wrong["label"], "predicted_labels": wrong["predicted"],
             "missed": wrong["missed"], "extra": wrong["extra"], "confidence": wrong["confidence"].round(4),
             "error_types": tags if len(wrong) else pd.Series(dtype=str)}
        ).reset_index(drop=True)  # fmt: skip
    return pd.DataFrame(
        {
            "text": wrong["text"],
            "true_label": wrong["label"],
            "predicted_label": wrong["predicted"],
            "confidence": wrong["confidence"].round(4),
            "error_types": tags if len(wrong) else pd.Series(dtype=str),
            **({"class_distance": wrong["class_distance"]} if "class_distance" in wrong else {}),
        }
    ).reset_index(drop=True)


def confused_pairs(frame: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The (true, predicted) pairs the model mixes up most, with their count and share of all mistakes (for a
    multi-label model, `cooccurring_confusions`)."""
    if "missed" in frame:
        return cooccurring_confusions(frame, top)
    wrong = frame[~frame["correct"]]
    pairs = wrong.groupby(["label", "predicted"], sort=False).size().rename("mistakes").reset_index()
    pairs = pairs.sort_values(["mistakes", "label", "predicted"], ascending=[False, True, True], kind="stable")
    pairs["share_of_mistakes"] = pairs["mistakes"] / max(len(wrong), 1)
    return (
        pairs.head(top).rename(columns={"label": "true_label", "predicted": "predicted_label"}).reset_index(drop=True)
    )


def cooccurring_confusions(frame: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """A multi-label model's confusions: each label missed on a text paired with each label chosen instead on the
    same text; the pairs on most texts, with that count and its share of the wrong texts."""
    wrong = frame[~frame["correct"]]
    pairs = [(m, e) for missed, extra in zip(wrong["missed"], wrong["extra"])
             for m in filter(None, missed.split(";")) for e in filter(None, extra.split(";"))]  # fmt: skip
    table = pd.DataFrame(pairs, columns=["missed", "extra"]).groupby(["missed", "extra"]).size().rename("texts")
    table = table.reset_index().sort_values(["texts", "missed", "extra"], ascending=[False, True, True], kind="stable")
    table["share_of_mistakes"] = table["texts"] / max(len(wrong), 1)
    return table.head(top).reset_index(drop=True)


def slice_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy with a Wilson 95% CI and count per slice: length bins, each cue present/absent, each label."""
    rows = []
    for name, mask in slice_masks(frame).items():
        n, correct = int(mask.sum()), int(frame.loc[mask, "correct"].sum())
        low, high = wilson_interval(correct, n)
        rows.append({"slice": name, "n": n, "accuracy": correct / n if n else np.nan, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def slice_masks(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Each slice's rows of a predictions frame, by name: length bins, each cue present/absent, label noise, each
    label (a multi-label text is in the slice of each label it holds)."""
    bins = pd.cut(
        frame["length"], [0, 10, 20, 30, np.inf], labels=["1-10 words", "11-20 words", "21-30 words", ">30 words"]
    )
    masks = {f"length {b}": bins == b for b in bins.cat.categories}
    for rule in RULES:
        masks[f"{rule}: yes"] = frame[rule]
        masks[f"{rule}: no"] = ~frame[rule]
    masks["likely_label_noise: yes"] = frame["likely_label_noise"]
    names = [column.removeprefix("p_") for column in frame.columns if column.startswith("p_")]  # id order
    if "missed" in frame:  # multi-label: a text is in the slice of each label it holds; accuracy is exact match
        held = frame["label"].str.split(";").map(set)
        masks.update({f"label {label}": held.map(lambda given, label=label: label in given) for label in names})
    else:
        for label in [name for name in names if name in set(frame["label"])] or sorted(frame["label"].unique()):
            masks[f"label {label}"] = frame["label"] == label
    return masks


def training_summary(log_history: list[dict]) -> dict:
    """Lowest training loss, grad-norm spikes (above median + 3 MAD), learning-rate schedule and best eval step (by
    accuracy; a multi-label model's by micro F1)."""
    train = [r for r in log_history if "loss" in r and "step" in r]
    measure = "accuracy" if any("eval_accuracy" in r for r in log_history) else "f1_micro"
    evals = [r for r in log_history if f"eval_{measure}" in r]
    out: dict = {"logged_steps": len(train)}
    if train:
        low = min(train, key=lambda r: r["loss"])
        out["lowest_loss"] = {"loss": low["loss"], "step": low["step"], "epoch": low.get("epoch")}
        out["learning_rate"] = [{"step": r["step"], "lr": r["learning_rate"]} for r in train if "learning_rate" in r]
    norms = np.array([r["grad_norm"] for r in train if "grad_norm" in r], dtype=float)
    if len(norms):
        median = float(np.median(norms))
        mad = float(np.median(np.abs(norms - median)))
        cut = median + 3 * mad
        spikes = [{"step": r["step"], "grad_norm": r["grad_norm"]} for r in train if r.get("grad_norm", 0) > cut]
        out["grad_norm"] = {"median": median, "mad": mad, "spike_threshold": cut, "spikes": spikes}
    if evals:
        best = max(evals, key=lambda r: r[f"eval_{measure}"])
        out["best_eval"] = {"step": best["step"], measure: best[f"eval_{measure}"], "epoch": best.get("epoch")}
    return out
