"""What the card says about acting on a score: the decision thresholds of a multi-label model, the temperature folded
into every calibrated model, and how accurate the model is on the texts it is most sure of (risk-coverage).

All of it is read from the run's metrics.json and config.json (the model's own `decision_thresholds` and `calibration`,
which every client reads); a run recorded before these keys gets None for each, and the card leaves the section out.
"""

from __future__ import annotations

import statistics

COVERAGES = (0.5, 0.8, 0.9, 1.0)  # the rows of the card's coverage table
STRATEGIES = (  # thresholds.results keys -> how the card names them, in the order it lists them
    ("per_label", "per-label thresholds (saved with the model)"),
    ("global", "one global threshold"),
    ("0.5", "0.5 for every label"),
)


def decision_facts(
    metrics: dict, model_config: dict, names: list[str], dataset: dict, risk_coverage: dict | None
) -> dict:
    """The card's thresholds, calibration and coverage facts (each None when the run did not record it), each split
    named as the card names it elsewhere (`dataset`: `dataset_facts`; `risk_coverage`: one curve, or {split: curve})."""
    splits = {"validation": dataset["split"], "eval": dataset["split"], "test": dataset.get("test_split") or "test"}

    def split_name(key: str) -> str:
        return splits.get(key, key)

    return {
        "thresholds": threshold_facts(metrics, model_config, names, split_name),
        "calibration": calibration_facts(metrics, model_config, names, split_name),
        "coverage": coverage_facts(risk_coverage, split_name),
    }


def threshold_facts(metrics: dict, model_config: dict, names: list[str], split_name=str) -> dict | None:
    """Per-label thresholds as config.json holds them (what every client applies), the global one, and the three
    strategies' F1 on each split; None for a single-label model."""
    if not metrics.get("multi_label"):
        return None
    rule = model_config.get("decision_thresholds") or {}
    per_label = [(name, float(rule.get(name, 0.5))) for name in names]  # a label it does not name: 0.5
    recorded = metrics.get("thresholds") or {}
    results = recorded.get("results") or {}
    comparison = [
        (label, [(results[split].get(key) or {}) for split in results])
        for key, label in STRATEGIES
        if any(key in results[split] for split in results)
    ]
    values = [t for _, t in per_label]
    return {
        "per_label": per_label,
        "by_name": dict(per_label),
        "low": min(values),
        "high": max(values),
        "global": recorded.get("global"),
        "tuned_on": split_name(recorded.get("tuned_on", "validation")),
        "objective": recorded.get("objective"),
        "splits": [split_name(split) for split in results],
        "comparison": comparison,  # [(strategy, [{f1_macro, f1_micro} per split])]
    }


def calibration_facts(metrics: dict, model_config: dict, names: list[str], split_name=str) -> dict | None:
    """The temperature folded into the last layer (one, or a summary of one per label) and ECE before and after on
    each split; None for a run recorded before calibration, {"method": "none"} for one trained without it."""
    recorded = metrics.get("calibration") or {}
    folded = model_config.get("calibration") or {}  # config.json: what the published weights hold
    method = folded.get("method") or recorded.get("method")
    if method is None:
        return None
    if method != "temperature":
        return {"method": method}
    temperature = folded.get("temperature", recorded.get("temperature"))
    ece = [
        (split_name(split), values["before"], values["after"]) for split, values in (recorded.get("ece") or {}).items()
    ]
    facts = {"method": method, "fitted_on": split_name(folded.get("fitted_on", "validation")), "ece": ece}
    if isinstance(temperature, dict):
        ordered = sorted((float(temperature[name]), name) for name in names if name in temperature)
        facts["per_label"] = {
            "low": ordered[0], "high": ordered[-1], "median": statistics.median(t for t, _ in ordered),
            "n": len(ordered), "sharpened": sum(t < 1 for t, _ in ordered),
        }  # fmt: skip
    else:
        facts["temperature"] = float(temperature)
    return facts


def coverage_facts(risk_coverage: dict | None, split_name=str) -> dict | None:
    """The card's coverage table and sentences from metrics.json's `risk_coverage`: one curve (the validation data's)
    or one per split ({split: curve})."""
    if not risk_coverage:
        return None
    curves = {"validation": risk_coverage} if "points" in risk_coverage else risk_coverage
    rows, lines = {c: {"coverage": c, "cells": []} for c in COVERAGES}, []
    measure = "accuracy"
    for name, curve in curves.items():
        points = {round(float(p["coverage"]), 2): p for p in curve.get("points", [])}
        for coverage in COVERAGES:
            rows[coverage]["cells"].append(points.get(coverage))
        measure = curve.get("accuracy_measure", measure)
        if 0.9 in points and 1.0 in points:
            lines.append({"split": split_name(name), "at_90": points[0.9], "at_100": points[1.0]})
    return {
        "splits": [split_name(name) for name in curves],
        "rows": [row for row in rows.values() if any(row["cells"])],
        "lines": lines,
        "exact_match": measure == "subset_accuracy",
        "cutoff": lines[0]["at_90"]["min_confidence"] if lines else None,  # the first split's: validation
    }
