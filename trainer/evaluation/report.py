"""`error_analysis.md`: a readable report that links every analysis file and plot."""

from __future__ import annotations

import math

import pandas as pd

from model_card.markdown import figure, pct, quote
from trainer.metric_catalogue import record

MULTI_LABEL_NOTE = (
    "Every figure at the model's per-label decision thresholds; subset accuracy counts a text right when all its "
    "labels are; log loss, Brier score and ECE are over every label's probability."
)


def render_report(metrics: dict, error_counts: dict, slices: pd.DataFrame, wrong: pd.DataFrame, behaviour: dict,
                  summary: dict | None, pairs: pd.DataFrame | None = None) -> str:  # fmt: skip
    """The report as Markdown (pure: all numbers come from the arguments; the metrics' names, order and formats from
    the catalogue `metrics` recorded)."""
    catalogue = metrics.get("metric_catalogue") or record(bool(metrics.get("multi_label")))
    multi = bool(metrics.get("multi_label"))
    lines = [
        *_overview(metrics, len(wrong)),
        *_metrics(metrics["metrics"], catalogue, multi),
        *(_per_label(metrics) if multi else _per_class(metrics["metrics"], metrics.get("labels") or [])),
        *_ordinal(metrics["metrics"], metrics.get("label_set") or {}, catalogue),
        *(_several_labels(metrics, pairs) if multi else []),
        *_calibration(metrics.get("calibration")),
        *_not_sure(metrics.get("risk_coverage")),
        *_error_types(error_counts),
        *([] if multi else _confused(pairs)),
        *_slices(slices),
        *_behaviour(behaviour),
        *_mistakes(wrong),
        "", "## Embeddings", "", "![embeddings](plots/embeddings_pca.png)", "",
        *(["![embeddings, UMAP](plots/embeddings_umap.png)", ""] if metrics.get("umap") else []),
        "Mean-pooled last hidden states in `embeddings.parquet`, with their PCA projection.",
        *_training(summary),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _overview(metrics: dict, n_wrong: int) -> list[str]:
    n, boot = metrics["n"], metrics["bootstrap"]
    lines = [
        f"# Error analysis: {metrics['model']} on {metrics['data']}",
        "",
        f"{n} labelled examples; {n_wrong} wrong ({n_wrong / n:.2%}"
        f"{': a label missed or extra' if metrics.get('multi_label') else ''}). Intervals are bootstrap 95% "
        f"({boot['resamples']} resamples, seed {boot['seed']}).",
    ]
    if metrics.get("out_of_domain"):
        lines += [
            "",
            f"**Out-of-domain evaluation**: the model was trained on `{metrics['trained_on']}` and is evaluated "
            f"here on `{metrics['data']}`; expect lower scores than on its own validation data.",
        ]
    return lines


def _row(metric: dict, score: dict) -> str:
    """A metric's table cells: its key, value and interval, formatted as its catalogue entry says."""
    interval = f"{figure(score['ci_low'], metric)} – {figure(score['ci_high'], metric)}"
    return f"| {metric['key']} | {figure(score['value'], metric)} | {interval} |"


def _metrics(scores: dict, catalogue: list[dict], multi: bool = False) -> list[str]:
    lines = ["", "## Metrics", "", "| metric | value | 95% CI |", "|---|---|---|"]
    lines += [_row(m, scores[m["key"]]) for m in catalogue if m.get("headline") and not m.get("ordinal")
              and m["key"] in scores]  # fmt: skip
    if multi:
        lines += ["", MULTI_LABEL_NOTE]
    # each figure links to the full-size image: a 28-label confusion matrix is only readable at its own size
    shown = ("per-label F1", "per_label_f1") if multi else ("confusion matrix", "confusion_matrix")
    return lines + [
        "",
        f"[![{shown[0]}](plots/{shown[1]}.png)](plots/{shown[1]}.png)",
        "![reliability diagram](plots/reliability_diagram.png)",
        "![confidence histogram](plots/confidence_histogram.png)",
    ]


def _interval(score: dict) -> str:
    return f"{pct(score['value'], 1)} ({pct(score['ci_low'], 1)}–{pct(score['ci_high'], 1)})"


def _per_class(scores: dict, names: list[str]) -> list[str]:
    """Precision, recall and F1 of every class with their bootstrap intervals."""
    rows = [name for name in names if f"recall_{name}" in scores]
    if not rows:
        return []
    lines = ["", "## Per class", "", "Value (bootstrap 95% CI); also in `classification_report.txt`.", "",
             "| class | precision | recall | F1 |", "|---|---|---|---|"]  # fmt: skip
    for name in rows:
        cells = [_interval(scores[f"{metric}_{name}"]) for metric in ("precision", "recall", "f1")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _per_label(metrics: dict) -> list[str]:
    """A multi-label model's figures per label with their bootstrap intervals, its threshold and support."""
    scores, names = metrics["metrics"], metrics.get("labels") or []
    thresholds = (metrics.get("thresholds") or {}).get("per_label") or {}
    lines = ["", "## Per label", "", "Value (bootstrap 95% CI) at the label's decision threshold; ROC-AUC and PR-AUC "
             "(average precision) rank the texts by the label's probability. Also in `classification_report.txt`.",
             "", "| label | threshold | support | precision | recall | F1 | ROC-AUC | PR-AUC |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in [n for n in names if f"f1_{n}" in scores]:
        cells = [_interval(scores[f"{m}_{name}"]) if f"{m}_{name}" in scores else "n/a"
                 for m in ("precision", "recall", "f1")]  # fmt: skip
        cells += [f"{scores[f'{m}_{name}']['value']:.3f}" if f"{m}_{name}" in scores else "n/a"
                  for m in ("roc_auc", "pr_auc")]  # fmt: skip
        threshold = f"{thresholds[name]:.2f}" if name in thresholds else "n/a"
        support = int(scores[f"support_{name}"]["value"])
        lines.append(f"| {name} | {threshold} | {support} | " + " | ".join(cells) + " |")
    return lines


def _several_labels(metrics: dict, pairs: pd.DataFrame | None) -> list[str]:
    """Labels per text, the labels missed and chosen in excess, and the confusions that come together."""
    scores, counts = metrics["metrics"], metrics.get("label_mistakes") or {}
    per_text = [f"{scores[k]['value']:.2f} ({scores[k]['ci_low']:.2f}–{scores[k]['ci_high']:.2f})"
                for k in ("labels_per_text", "labels_per_text_true")]  # fmt: skip
    lines = ["", "## Several labels per text", "", f"Labels per text: {per_text[0]} predicted against {per_text[1]} "
             "true (bootstrap 95% CI).", ""]  # fmt: skip
    if counts:
        lines += ["| mistake | texts | labels |", "|---|---|---|",
                  f"| missed (a true label not chosen) | {counts['texts_missed']} | {counts['labels_missed']} |",
                  f"| extra (a label chosen that is not true) | {counts['texts_extra']} | {counts['labels_extra']} |",
                  ""]  # fmt: skip
    lines += ["![label co-occurrence](plots/label_cooccurrence.png)"]
    if pairs is not None and not pairs.empty:
        lines += ["", "Confusions that come together: a label missed on a text while another was chosen instead "
                  "(`incorrect_predictions.csv` lists both for every text).", "",
                  "| missed | chosen instead | texts | share of wrong texts |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r.missed} | {r.extra} | {r.texts} | {pct(r.share_of_mistakes, 1)} |" for r in pairs.itertuples()]
    return lines


def _calibration(calibration: dict | None) -> list[str]:
    """ECE before and after the temperature folded into the model, on this data."""
    if not calibration or calibration.get("method") != "temperature" or "ece" not in calibration:
        return []
    t = calibration.get("temperature")
    shown = f"T = {t:.3f}" if isinstance(t, (int, float)) else f"one T per label, {min(t.values()):.2f} to " \
        f"{max(t.values()):.2f}"  # fmt: skip
    ece = calibration["ece"]
    return ["", "## Calibration", "", "Temperature scaling fitted on validation and folded into the model's last "
            f"layer ({shown}): ECE on this data {ece['before']:.4f} before, {ece['after']:.4f} after (the reliability "
            "diagram draws both)."]  # fmt: skip


def _floor(confidence: float) -> str:
    """A confidence cut-off to three decimals, rounded down: answering at or above it still covers its share."""
    return f"{math.floor(confidence * 1000) / 1000:.3f}"


def _not_sure(coverage: dict | None) -> list[str]:
    """The risk-coverage table: how accurate the model is when it answers only the texts it is surest of."""
    if not coverage or not coverage.get("points"):
        return []
    measure = coverage.get("accuracy_measure", "accuracy").replace("_", " ")
    lines = ["", "## Not sure: accuracy on the texts the model is surest of", ""]
    at_90 = next((p for p in coverage["points"] if p["coverage"] == 0.9), None)
    if at_90:
        cut = _floor(at_90["min_confidence"])
        lines += [f"At 90% coverage: {pct(at_90['accuracy'], 1)} accurate ({measure} on the 90% of texts with the "
                  f"highest confidence; answering only those means `--min_confidence {cut}`).", ""]  # fmt: skip
    lines += [f"| coverage | texts answered | {measure} | min confidence |", "|---|---|---|---|"]
    lines += [f"| {pct(p['coverage'], 0)} | {p.get('n', '')} | {pct(p['accuracy'], 1)} | "
              f"{_floor(p['min_confidence'])} |" for p in coverage["points"]]  # fmt: skip
    return lines + ["", f"Area under the risk-coverage curve (AURC, lower is better): {coverage['aurc']:.4f}.", "",
                    "![risk-coverage](plots/risk_coverage.png)"]  # fmt: skip


def _ordinal(scores: dict, label_set: dict, catalogue: list[dict]) -> list[str]:
    """The ordinal figures, for labels on a scale."""
    if not label_set.get("ordinal"):
        return []
    scale = " < ".join(label_set.get("scale") or [])
    lines = ["", "## Ordered labels", "", f"The labels form a scale ({scale}), so a near miss differs from a far one:",
             "", "| metric | value | 95% CI | meaning |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"{_row(m, scores[m['key']])} {m.get('meaning', '')} |" for m in catalogue if m.get("ordinal")
              and m["key"] in scores]  # fmt: skip
    return lines


def _confused(pairs: pd.DataFrame | None) -> list[str]:
    """The label pairs mixed up most (only worth a table with more than two labels)."""
    if pairs is None or pairs.empty or pairs[["true_label", "predicted_label"]].stack().nunique() <= 2:
        return []
    lines = ["", "## Most confused pairs", "", "| true | predicted | mistakes | share of mistakes |"]
    lines.append("|---|---|---|---|")
    lines += [f"| {r.true_label} | {r.predicted_label} | {r.mistakes} | {pct(r.share_of_mistakes, 1)} |"
              for r in pairs.itertuples()]  # fmt: skip
    return lines


def _error_types(error_counts: dict) -> list[str]:
    return [
        "",
        "## Error types",
        "",
        "Rule-based tags on the wrong predictions (`incorrect_predictions.csv`; a mistake can carry several):",
        "",
        "| error type | mistakes |",
        "|---|---|",
        *[f"| {tag} | {count} |" for tag, count in sorted(error_counts.items(), key=lambda kv: -kv[1])],
    ]


def _slices(slices: pd.DataFrame) -> list[str]:
    lines = ["", "## Slices", "", "| slice | n | accuracy | 95% CI |", "|---|---|---|---|"]
    for row in slices.itertuples():
        if row.n:
            ci = f"{pct(row.ci_low, 2)} – {pct(row.ci_high, 2)}"
            lines.append(f"| {row.slice} | {row.n} | {pct(row.accuracy, 2)} | {ci} |")
    return lines + ["", "![slice accuracy](plots/slice_accuracy.png)"]


def _behaviour(behaviour: dict) -> list[str]:
    lines = ["", "## Behavioural tests", ""]
    if positive := behaviour.get("positive_labels"):
        negative = ", ".join(behaviour.get("negative_labels") or [])
        lines += [f"Positive side: {', '.join(positive)}; negative side: {negative}.", ""]
    if behaviour.get("tests"):
        lines += ["| test | type | cases | failure rate |", "|---|---|---|---|"]
        lines += [f"| {t['name']} | {t['type']} | {t['n']} | {pct(t['failure_rate'], 2)} |"
                  for t in behaviour["tests"]]  # fmt: skip
        lines += ["", "Failing examples: `behavioral_tests.json`."]
    skipped = behaviour.get("skipped") or []
    if skipped:
        names = ", ".join(t["name"] for t in skipped)
        lines += ["", f"Skipped: {names}, because {skipped[0]['reason']}."]
    return lines


def _mistakes(wrong: pd.DataFrame) -> list[str]:
    lines = ["", "## Sample predictions", "", "![sample predictions](plots/sample_predictions.png)", "",
             "## The ten most confident mistakes", ""]  # fmt: skip
    if "missed" in wrong:
        lines += ["| text | true | predicted | missed | extra | confidence | error types |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in wrong.head(10).itertuples():
            true, predicted = r.true_labels or "(none)", r.predicted_labels or "(none)"
            lines.append(f"| {quote(r.text, 200)} | {true} | {predicted} | {r.missed} | {r.extra} | "
                         f"{r.confidence:.3f} | {r.error_types.replace(';', ', ')} |")  # fmt: skip
        return lines
    lines += ["| text | true | predicted | confidence | error types |", "|---|---|---|---|---|"]
    for row in wrong.head(10).itertuples():
        lines.append(
            f"| {quote(row.text, 220)} | {row.true_label} | {row.predicted_label} | {row.confidence:.3f} | "
            f"{row.error_types.replace(';', ', ')} |"
        )
    return lines


def _training(summary: dict | None) -> list[str]:
    if not summary:
        return []
    lines = ["", "## Training", "", "![training curves](plots/training_curves.png)", ""]
    if "lowest_loss" in summary:
        low = summary["lowest_loss"]
        lines.append(f"- lowest training loss {low['loss']:.4f} at step {low['step']} (epoch {low['epoch']})")
    if "best_eval" in summary:
        best = summary["best_eval"]
        if "accuracy" in best:
            lines.append(f"- best validation accuracy {best['accuracy']:.2%} at step {best['step']}")
        else:
            lines.append(f"- best validation micro F1 {best['f1_micro']:.4f} at step {best['step']}")
    if "grad_norm" in summary:
        g = summary["grad_norm"]
        steps = ", ".join(str(s["step"]) for s in g["spikes"][:10]) or "none"
        lines.append(f"- grad-norm spikes above {g['spike_threshold']:.2f} (median + 3 MAD): {steps}")
    return lines
