"""Every metric the project reports, in one table: its key, name, direction, format and where it is shown.

`trainer/evaluation/metrics.py` computes the values; the report, the card, the Space and the training config read
this table. metrics.json records it (`metric_catalogue`), so the card and the Space, which cannot import this
module, show what the run recorded. It imports nothing of this repository. Adding a metric is an entry here and its
function in `metrics.SCORERS` (a multi-label figure: `task="multi"`, computed in `metrics.multilabel_metrics` and,
for its interval, `metrics.multilabel_resamples`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FORMATS = ("number", "percent", "count")  # a decimal at `digits` places; a share as a percentage; a whole number
TASKS = ("single", "multi", "both")  # computed for single-label models (one class per text), multi-label, or both


@dataclass(frozen=True)
class Metric:
    """One metric: its key in metrics.json, its name in the card, and how every reader shows it."""

    key: str  # in metrics.json, and as eval_<key> in the Trainer's logs and --metric_for_best_model
    name: str  # in the model card's results table
    better: str = "higher"  # or "lower": picks the best checkpoint the right way round
    format: str = "number"
    digits: int = 4  # decimals (the Space's compact table shows at most three)
    headline: bool = False  # a row of the tables in error_analysis.md, the card and (first) the Space's report
    ordinal: bool = False  # only for labels on a scale: the report's "Ordered labels" table, the card's model-index
    meaning: str = ""  # one line for the report's "Ordered labels" table
    hub: dict | None = None  # the card's model-index entry: {"type": Hub metric id, "name"?, "args"?}
    task: str = "single"  # which models it is computed for (TASKS); a run records the entries of its own kind

    def __post_init__(self):
        if self.better not in ("higher", "lower") or self.format not in FORMATS or self.task not in TASKS:
            raise ValueError(f"metric {self.key}: better is higher or lower, format one of {', '.join(FORMATS)}, "
                             f"task one of {', '.join(TASKS)}")  # fmt: skip


def _averaged(metric: str, name: str, average: str = "macro", task: str = "both") -> Metric:
    hub = {"type": metric, "name": f"{name} ({average})", "args": {"average": average}}
    if average == "macro":  # the model-index entry single-label runs have always recorded
        hub.pop("name")
    return Metric(f"{metric}_{average}", f"{name} ({average})", headline=True, hub=hub, task=task)


def _multi(key: str, name: str, better: str = "higher", headline: bool = True, **fields) -> Metric:
    return Metric(key, name, better, headline=headline, task="multi", **fields)


def _ordinal(key: str, name: str, meaning: str, better: str = "higher", hub: dict | None = None) -> Metric:
    return Metric(key, name, better, headline=True, ordinal=True, meaning=meaning, hub=hub)


# Headline metrics in the order every table lists them; the rest only in the Space's full table and metrics.json.
# A multi-label model's figures are at its decision thresholds; its log loss, Brier score and ECE are over every
# label's own probability.
CATALOGUE: list[Metric] = [
    Metric("accuracy", "Accuracy", headline=True, hub={"type": "accuracy"}),
    _averaged("f1", "F1", "micro", "multi"), _averaged("f1", "F1"),
    _averaged("precision", "Precision", "micro", "multi"), _averaged("recall", "Recall", "micro", "multi"),
    _averaged("precision", "Precision"), _averaged("recall", "Recall"),
    _multi("subset_accuracy", "Subset accuracy (exact match)", hub={"type": "exact_match"}),
    _multi("hamming_loss", "Hamming loss", "lower"),
    Metric("mcc", "Matthews correlation", headline=True),
    Metric("roc_auc", "ROC AUC", headline=True, task="both"),  # multi-label: the macro mean over labels
    _multi("pr_auc", "PR AUC (macro average precision)"),
    Metric("log_loss", "Log loss", "lower", headline=True, task="both"),
    Metric("brier", "Brier score", "lower", headline=True, task="both"),
    Metric("ece", "Expected calibration error", "lower", headline=True, task="both"),
    _ordinal("mae", "Mean absolute error (classes)",
             "mean absolute error, in classes (0 = always right; 1 = one class off on average)", "lower",
             {"type": "mae"}),
    _ordinal("within_one", "Accuracy within one class", "accuracy counting a prediction one class off as right",
             hub={"type": "within_one"}),
    _ordinal("off_by_one", "Predicted one class off (share)", "share of examples predicted exactly one class off",
             "lower"),
    _ordinal("polarity_flips", "Polarity flips (share)",
             "share of examples predicted on the other side of neutral (e.g. very negative -> positive)", "lower",
             {"type": "polarity_flips", "name": "Polarity flips (other side of neutral)"}),
    _ordinal("qwk", "Quadratic weighted kappa",
             "quadratic-weighted Cohen's kappa (agreement beyond chance, far misses weigh more)",
             hub={"type": "cohen_kappa", "args": {"weights": "quadratic"}}),
    _multi("labels_per_text", "Labels per text (predicted)", headline=False),
    _multi("labels_per_text_true", "Labels per text (true)", headline=False),
    Metric("precision_weighted", "Precision (weighted)", task="both"),
    Metric("recall_weighted", "Recall (weighted)", task="both"),
    Metric("f1_weighted", "F1 (weighted)", task="both"),
    Metric("f1", "F1 (label id 1)"),  # binary only, GLUE's f1
    Metric("loss", "Loss", "lower", task="both"),  # the Trainer's eval_loss: listed for its direction, never in a table
]  # fmt: skip
PER_CLASS = ("precision", "recall", "f1")  # each also computed per class, as <metric>_<class name>
PER_LABEL = (*PER_CLASS, "support", "roc_auc", "pr_auc")  # a multi-label model's, per label: <metric>_<label name>


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of the metric `key` (eval_ prefix allowed) is the better one; unknown keys: no."""
    key = key.removeprefix("eval_")
    return any(metric.key == key and metric.better == "lower" for metric in CATALOGUE)


def record(multi_label: bool = False) -> list[dict]:
    """The catalogue as metrics.json records it (`metric_catalogue`), for the readers that cannot import it: the
    entries computed for a run of this kind (single- or multi-label, as its `multi_label` says), in catalogue order.
    The `task` field is left out, so a single-label run records what it always has."""
    kind = "multi" if multi_label else "single"
    return [{k: v for k, v in asdict(metric).items() if v is not None and k != "task"} for metric in CATALOGUE
            if metric.task in (kind, "both")]  # fmt: skip
