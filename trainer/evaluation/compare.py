"""Two models compared on the same texts: is B really better than A?

The difference in accuracy (a multi-label model's micro and macro F1) with a paired bootstrap interval (the same
resampled texts for both), McNemar's exact test on the texts one got right and the other wrong, per-class and
per-slice differences, the calibration of both, and those texts themselves (fixed: B right, A wrong; broken: the
reverse). Pure functions over two predictions frames (the analysis's `predictions.parquet`); compare_report.py writes
the files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from trainer import UserError
from trainer.evaluation.analysis import RULES, rule_features, slice_masks
from trainer.evaluation.metrics import expected_calibration_error
from trainer.labels import LabelSet

RESAMPLE_CELLS = 2_000_000  # resamples x texts of counts per matrix product: 16 MB whatever the number of texts
MEASURE_NAMES = {"accuracy": "accuracy", "f1_micro": "micro F1", "f1_macro": "macro F1"}
MODEL_DEPENDENT_SLICES = ("likely_label_noise: yes",)  # a slice must hold the same texts for both models


@dataclass(frozen=True)
class Comparison:
    """What `compare` found: the figures (comparison.json), the discordant texts, and the headline's resampled
    differences (for the picture)."""

    summary: dict
    fixed: pd.DataFrame
    broken: pd.DataFrame
    draws: np.ndarray


def frame_labels(frame: pd.DataFrame) -> list[str]:
    """The label names of a predictions frame, in its column order (p_<label>)."""
    return [column.removeprefix("p_") for column in frame.columns if column.startswith("p_")]


def check_same_labels(names_a: list[str], names_b: list[str], multi_a: bool, multi_b: bool) -> None:
    """Refuse two models that do not answer the same question: other label names, or one multi-label."""
    if multi_a != multi_b:
        kinds = {True: "multi-label", False: "single-label"}
        raise UserError(f"A is {kinds[multi_a]} and B is {kinds[multi_b]}: compare two models of the same kind")
    if sorted(names_a) != sorted(names_b):
        raise UserError(f"the runs have different label sets (A: {', '.join(names_a)}; B: {', '.join(names_b)}): "
                        "compare two models trained on the same labels")  # fmt: skip


def align(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """B's rows in A's order, matched by text (repeats by their order); UserError when the texts or labels differ."""
    keys_a = a["text"] + "\0" + a.groupby("text").cumcount().astype(str)
    keys_b = b["text"] + "\0" + b.groupby("text").cumcount().astype(str)
    if len(a) != len(b) or set(keys_a) != set(keys_b):
        shared = len(set(keys_a) & set(keys_b))
        raise UserError(f"the runs' predictions are on different texts (A: {len(a)}, B: {len(b)}, {shared} shared): "
                        "pass --data FILE to score both models on the same labelled file")  # fmt: skip
    b = b.set_axis(keys_b.to_numpy()).loc[keys_a.to_numpy()].reset_index(drop=True)
    if (differ := int((a["label"].to_numpy() != b["label"].to_numpy()).sum())) > 0:
        raise UserError(f"the runs' predictions give {differ} texts different labels: pass --data FILE to score "
                        "both models against the same labels")  # fmt: skip
    return b


def indicators(column: pd.Series, names: list[str], multi: bool) -> np.ndarray:
    """(n, k) bools: which of `names` each row's label (or ';'-joined labels) holds."""
    held = column.str.split(";").map(set) if multi else column.map(lambda name: {name})
    return np.array([[name in row for name in names] for row in held], dtype=bool).reshape(len(column), len(names))


def with_cues(frame: pd.DataFrame, names: list[str], multi: bool) -> pd.DataFrame:
    """The frame with its length and rule cues (a frame written before they existed gets them from its texts)."""
    if "length" in frame and all(rule in frame for rule in RULES):
        return frame
    labels = indicators(frame["label"], names, True).astype(int) if multi else frame["label"].map(names.index)
    texts = frame["text"].astype(str)
    cues = rule_features(texts, np.asarray(labels), LabelSet.of(names, "nominal" if multi else "auto"))
    return frame.drop(columns=[c for c in [*RULES, "length"] if c in frame]).assign(
        length=texts.str.split().str.len(), **{rule: cues[rule] for rule in RULES})  # fmt: skip


def row_stats(a: pd.DataFrame, b: pd.DataFrame, names: list[str], multi: bool, masks: dict) -> np.ndarray:
    """Per text, every count the figures are sums of: 1, A right, B right; each model's true positives, false
    positives and false negatives per label; each slice's membership and who got it right there."""
    y = indicators(a["label"], names, multi)
    columns = [np.ones(len(a)), a["correct"].to_numpy(float), b["correct"].to_numpy(float)]
    for frame in (a, b):
        chosen = indicators(frame["predicted"], names, multi)
        columns += [*(y & chosen).T, *(~y & chosen).T, *(y & ~chosen).T]
    for mask in masks.values():
        mask = np.asarray(mask, dtype=float)
        columns += [mask, mask * columns[1], mask * columns[2]]
    return np.stack(columns, 1).astype(float)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2 tp / (2 tp + fp + fn), 0 where a label has none of the three (scikit-learn's zero_division=0)."""
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=float), where=den > 0)


def figures(sums: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every figure of both models from summed row_stats (one row of sums per resample): accuracy (exact match),
    micro and macro F1, F1 per label, accuracy per slice; A's key ends in _a, B's in _b."""
    out = {}
    for side, start in (("a", 3), ("b", 3 + 3 * k)):
        tp, fp, fn = (sums[:, start + i * k : start + (i + 1) * k] for i in range(3))
        out[f"accuracy_{side}"] = sums[:, 1 if side == "a" else 2] / sums[:, 0]
        out[f"f1_micro_{side}"] = _f1(tp.sum(1), fp.sum(1), fn.sum(1))
        out[f"f1_label_{side}"] = _f1(tp, fp, fn)
        out[f"f1_macro_{side}"] = out[f"f1_label_{side}"].mean(1)
    slices = sums[:, 3 + 6 * k :].reshape(len(sums), -1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["slice_a"], out["slice_b"] = slices[:, :, 1] / slices[:, :, 0], slices[:, :, 2] / slices[:, :, 0]
    return out


def resampled_sums(stats: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """row_stats summed over `n_boot` resamples of the texts: one draw of indices serves both models (paired)."""
    rng, n = np.random.default_rng(seed), len(stats)
    per, out = max(1, RESAMPLE_CELLS // n), []
    for start in range(0, n_boot, per):
        m = min(per, n_boot - start)
        draws = rng.integers(0, n, (m, n)) + (np.arange(m) * n)[:, None]
        out.append(np.bincount(draws.ravel(), minlength=m * n).reshape(m, n) @ stats)
    return np.vstack(out)


def difference(point: dict, boot: dict, key: str, index=None) -> dict:
    """A's and B's value of a figure, B - A, and the percentile 95% interval of B - A over the resamples."""
    pick = (lambda v: v[:, index]) if index is not None else (lambda v: v)
    a, b = pick(point[f"{key}_a"])[0], pick(point[f"{key}_b"])[0]
    diffs = pick(boot[f"{key}_b"]) - pick(boot[f"{key}_a"])
    low, high = np.nanpercentile(diffs, [2.5, 97.5]) if np.isfinite(diffs).any() else (np.nan, np.nan)
    values = {"a": a, "b": b, "difference": b - a, "ci_low": low, "ci_high": high}
    return {key: float(value) if np.isfinite(value) else None for key, value in values.items()}  # JSON has no nan


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test: the discordant texts split as a fair coin would split them (two-sided binomial)."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    fixed, broken = int((correct_b & ~correct_a).sum()), int((correct_a & ~correct_b).sum())
    p = binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue if fixed + broken else 1.0
    return {"fixed": fixed, "broken": broken, "both_right": int((correct_a & correct_b).sum()),
            "both_wrong": int((~correct_a & ~correct_b).sum()), "p_value": float(p)}  # fmt: skip


def calibration(frame: pd.DataFrame, names: list[str], multi: bool) -> dict:
    """ECE as the analysis computes it: over the top confidence, or over every label probability (multi-label)."""
    if not multi:
        return {"ece": expected_calibration_error(frame["confidence"], frame["correct"])}
    probs = frame[[f"p_{name}" for name in names]].to_numpy(float)
    return {"ece": expected_calibration_error(probs.ravel(), indicators(frame["label"], names, True).ravel())}


def discordant(a: pd.DataFrame, b: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The texts at `rows` with both models' predictions and confidences (row: the text's place in A's frame)."""
    pick = lambda frame, column: frame[column].to_numpy()[rows]  # noqa: E731
    return pd.DataFrame({"row": rows, "text": pick(a, "text"), "label": pick(a, "label"),
                         "predicted_a": pick(a, "predicted"), "confidence_a": pick(a, "confidence"),
                         "predicted_b": pick(b, "predicted"), "confidence_b": pick(b, "confidence")})  # fmt: skip


def verdict(interval: dict, test: dict, measure: str = "accuracy") -> str:
    """What the headline interval and McNemar's test say together (for a multi-label model they measure different
    things, micro F1 and exact match, and can point different ways)."""
    excludes_zero = interval["ci_low"] > 0 or interval["ci_high"] < 0
    significant, up = test["p_value"] < 0.05, interval["difference"] > 0
    if excludes_zero and significant and up != (test["fixed"] > test["broken"]):
        return (f"the measures disagree: {MEASURE_NAMES[measure]} favours {'B' if up else 'A'}, McNemar's test "
                f"(exact match) favours {'A' if up else 'B'}")  # fmt: skip
    if excludes_zero and significant:
        return f"B is {'better' if up else 'worse'}"
    if excludes_zero or significant:
        return "a borderline difference: the interval and McNemar's test disagree"
    return "not a proven difference"


def compare(a: pd.DataFrame, b: pd.DataFrame, multi: bool, n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Models A and B on the same texts (predictions frames; B aligned to A here). Raises UserError when the label
    sets or the texts differ."""
    names = frame_labels(a)
    check_same_labels(names, frame_labels(b), multi, multi)
    b = align(a, b)
    a = with_cues(a, names, multi)
    masks = {name: mask for name, mask in slice_masks(a).items() if name not in MODEL_DEPENDENT_SLICES}
    stats, k = row_stats(a, b, names, multi, masks), len(names)
    point, boot = figures(stats.sum(0, keepdims=True), k), figures(resampled_sums(stats, n_boot, seed), k)
    measures = ("accuracy", "f1_micro", "f1_macro") if multi else ("accuracy", "f1_macro")
    support = indicators(a["label"], names, multi).sum(0)
    summary = {
        "n": len(a), "multi_label": multi, "labels": names, "n_bootstrap": n_boot, "seed": seed,
        "headline": "f1_micro" if multi else "accuracy",
        "measures": {key: difference(point, boot, key) for key in measures},
        "mcnemar": mcnemar(a["correct"], b["correct"]),
        "per_class": [{"label": name, "measure": "f1", "support": int(support[j]),
                       **difference(point, boot, "f1_label", j)} for j, name in enumerate(names)],
        "slices": [{"slice": name, "n": int(np.asarray(mask).sum()), **difference(point, boot, "slice", i)}
                   for i, (name, mask) in enumerate(masks.items())],
        "calibration": {"a": calibration(a, names, multi), "b": calibration(b, names, multi)},
    }  # fmt: skip
    headline = summary["headline"]
    summary["verdict"] = verdict(summary["measures"][headline], summary["mcnemar"], headline)
    right_a, right_b = a["correct"].to_numpy(bool), b["correct"].to_numpy(bool)
    draws = boot[f"{summary['headline']}_b"] - boot[f"{summary['headline']}_a"]
    return Comparison(summary, discordant(a, b, np.flatnonzero(right_b & ~right_a)),
                      discordant(a, b, np.flatnonzero(right_a & ~right_b)), draws)  # fmt: skip


def points(value: float) -> str:
    return f"{value * 100:+.2f}"


def summary_line(summary: dict) -> str:
    """The printed answer: "B - A: +0.23 points (95% CI -0.9 to +1.4), McNemar p = 1.0 (33 fixed, 32 broken): ..."."""
    shown = ("f1_micro", "f1_macro") if summary["multi_label"] else ("accuracy",)
    parts = []
    for key in shown:
        m = summary["measures"][key]
        name = f"{MEASURE_NAMES[key]} " if summary["multi_label"] else ""
        parts.append(f"{name}{points(m['difference'])} points (95% CI {points(m['ci_low'])} to {points(m['ci_high'])})")
    test = summary["mcnemar"]
    exact = " on exact match" if summary["multi_label"] else ""
    return (f"B - A on {summary['n']} texts: {'; '.join(parts)}, McNemar p{exact} = {test['p_value']:.3g} "
            f"({test['fixed']} fixed, {test['broken']} broken): {summary['verdict']}")  # fmt: skip
