"""Every metric the project reports, in one table: its key, name, direction, format and where it is shown.

`trainer/evaluation/metrics.py` computes the values; the report, the card, the Space and the training config read
this table. metrics.json records it (`metric_catalogue`), so the card and the Space, which cannot import this
module, show what the run recorded. It imports nothing of this repository. Adding a metric is an entry here and its
function in `metrics.SCORERS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FORMATS = ("number", "percent", "count")  # a decimal at `digits` places; a share as a percentage; a whole number


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

    def __post_init__(self):
        if self.better not in ("higher", "lower") or self.format not in FORMATS:
            raise ValueError(f"metric {self.key}: better is higher or lower, format one of {', '.join(FORMATS)}")


def _macro(metric: str, name: str) -> Metric:
    return Metric(
        f"{metric}_macro", f"{name} (macro)", headline=True, hub={"type": metric, "args": {"average": "macro"}}
    )


def _ordinal(key: str, name: str, meaning: str, better: str = "higher", hub: dict | None = None) -> Metric:
    return Metric(key, name, better, headline=True, ordinal=True, meaning=meaning, hub=hub)


# Headline metrics in the order every table lists them; the rest only in the Space's full table and metrics.json.
CATALOGUE: list[Metric] = [
    Metric("accuracy", "Accuracy", headline=True, hub={"type": "accuracy"}),
    _macro("f1", "F1"), _macro("precision", "Precision"), _macro("recall", "Recall"),
    Metric("mcc", "Matthews correlation", headline=True),
    Metric("roc_auc", "ROC AUC", headline=True),
    Metric("log_loss", "Log loss", "lower", headline=True),
    Metric("brier", "Brier score", "lower", headline=True),
    Metric("ece", "Expected calibration error", "lower", headline=True),
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
    Metric("precision_weighted", "Precision (weighted)"),
    Metric("recall_weighted", "Recall (weighted)"),
    Metric("f1_weighted", "F1 (weighted)"),
    Metric("f1", "F1 (label id 1)"),  # binary only, GLUE's f1
    Metric("loss", "Loss", "lower"),  # the Trainer's eval_loss: listed for its direction, never in a table
]  # fmt: skip
PER_CLASS = ("precision", "recall", "f1")  # each also computed per class, as <metric>_<class name>


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of the metric `key` (eval_ prefix allowed) is the better one; unknown keys: no."""
    key = key.removeprefix("eval_")
    return any(metric.key == key and metric.better == "lower" for metric in CATALOGUE)


def record() -> list[dict]:
    """The catalogue as metrics.json records it (`metric_catalogue`), for the readers that cannot import it."""
    return [{k: v for k, v in asdict(metric).items() if v is not None} for metric in CATALOGUE]
