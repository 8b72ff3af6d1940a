"""Formatting for the Markdown the project writes (the model card and the error-analysis report)."""

from __future__ import annotations

import math


def pct(x, digits: int = 1) -> str:
    """0.9123 -> '91.2%'; 'n/a' for a missing or NaN value."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(x) else f"{x:.{digits}%}"


def figure(value, metric: dict | None = None) -> str:
    """A metric's value as its catalogue entry (metrics.json's `metric_catalogue`) says: a decimal at `digits` places
    (4 by default), a percentage, or a count."""
    metric = metric or {}
    digits, kind = metric.get("digits", 4), metric.get("format", "number")
    if kind == "percent":
        return pct(value, digits)
    return f"{float(value):,.0f}" if kind == "count" else f"{float(value):.{digits}f}"


def cutoff(confidence: float, digits: int = 3) -> str:
    """A min_confidence cut-off rounded down, so that answering at or above it still covers its share of texts."""
    return f"{math.floor(float(confidence) * 10**digits) / 10**digits:.{digits}f}"


def quote(text: str, limit: int = 200) -> str:
    """One line of `text` safe inside a Markdown table cell, cut to `limit` characters."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join_words(items, last: str = "and") -> str:
    """['a', 'b', 'c'] -> 'a, b and c' (or `last`)."""
    items = [str(item) for item in items]
    return f" {last} ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))
