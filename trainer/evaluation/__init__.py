"""Scoring a model: metrics with intervals, error analysis, behavioural tests, plots and the report."""
