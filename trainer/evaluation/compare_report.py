"""What a comparison writes: comparison.json, fixed.csv, broken.csv, and comparison.png (B - A with its interval per
class and per slice, and the headline's bootstrap)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from trainer import files  # noqa: E402
from trainer.evaluation.compare import MEASURE_NAMES, Comparison  # noqa: E402

COMPARISON, FIXED, BROKEN, PICTURE = "comparison.json", "fixed.csv", "broken.csv", "comparison.png"


def write_comparison(out: Path, found: Comparison, sources: dict) -> Path:
    """comparison.json (with `sources`: what A and B are, which texts), fixed.csv, broken.csv and comparison.png."""
    out.mkdir(parents=True, exist_ok=True)
    files.write_text(out / COMPARISON, json.dumps({**sources, **found.summary}, indent=2) + "\n")
    files.write_text(out / FIXED, found.fixed.to_csv(index=False))
    files.write_text(out / BROKEN, found.broken.to_csv(index=False))
    plot_comparison(found, out / PICTURE)
    return out


def forest_rows(summary: dict) -> list[tuple[str, dict]]:
    """The rows of the left panel, top to bottom: the headline measures, each class (F1), each slice."""
    named = {**MEASURE_NAMES, "accuracy": "exact match"} if summary["multi_label"] else MEASURE_NAMES
    rows = [(named[key], m) for key, m in summary["measures"].items()]
    rows += [(f"F1 {row['label']} (n={row['support']})", row) for row in summary["per_class"]]
    rows += [(f"{row['slice']} (n={row['n']})", row) for row in summary["slices"] if row["n"]]
    return rows


def plot_comparison(found: Comparison, path: str | Path) -> Path:
    """Left: B - A in points with its paired bootstrap 95% interval per measure, class and slice (blue: B ahead,
    red: A ahead, grey: the interval holds 0). Right: the headline's bootstrap differences."""
    summary, rows = found.summary, forest_rows(found.summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.28 * len(rows) + 1.5)), width_ratios=[1.6, 1])
    for y, (_, row) in enumerate(rows):
        if row["difference"] is None:
            continue
        low, high = row["ci_low"] if row["ci_low"] is not None else row["difference"], row["ci_high"]
        high = high if high is not None else row["difference"]
        colour = "#2166ac" if low > 0 else "#b2182b" if high < 0 else "0.45"
        mid = row["difference"]
        left.errorbar(100 * mid, y, xerr=[[100 * (mid - low)], [100 * (high - mid)]], fmt="o", color=colour,
                      capsize=3, markersize=4)  # fmt: skip
    left.axvline(0, color="black", lw=0.8)
    left.axhline(len(summary["measures"]) - 0.5, color="0.8", lw=0.8)
    left.axhline(len(summary["measures"]) + len(summary["per_class"]) - 0.5, color="0.8", lw=0.8)
    left.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    left.invert_yaxis()
    left.set(
        xlabel="B - A (points), paired bootstrap 95% interval",
        title="Where B differs from A (blue: B ahead, red: A ahead, grey: not proven)",
    )
    left.grid(axis="x", alpha=0.3)
    head = summary["measures"][summary["headline"]]
    draws = 100 * found.draws[np.isfinite(found.draws)]
    values, counts = np.unique(draws.round(6), return_counts=True)
    if len(values) <= 80:  # accuracy moves in steps of one text: a bar per step, not bins that straddle them
        right.bar(values, counts, width=0.8 * np.diff(values).min() if len(values) > 1 else 0.1, color="0.6")
    else:
        right.hist(draws, bins=40, color="0.6")
    right.axvline(100 * head["difference"], color="#2166ac", lw=1.2, label="B - A")
    for value in (head["ci_low"], head["ci_high"]):
        right.axvline(
            100 * value, color="#2166ac", ls="--", lw=1.2, label="95% interval" if value == head["ci_low"] else None
        )
    right.axvline(0, color="black", lw=0.8)
    right.legend(loc="upper left", fontsize=8)
    test = summary["mcnemar"]
    right.set(xlabel=f"B - A, {MEASURE_NAMES[summary['headline']]} (points)", ylabel="resamples",
              title=f"{summary['n_bootstrap']} paired resamples of {summary['n']} texts\n"
              f"McNemar p = {test['p_value']:.3g} ({test['fixed']} fixed, {test['broken']} broken)")  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    files.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
