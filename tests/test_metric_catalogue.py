"""The metric catalogue: every computed metric has one entry, and a new entry with its function reaches every reader."""

import json
import shutil
import sys

import numpy as np
import pytest

import trainer.evaluation.metrics as metrics_module
import trainer.metric_catalogue as catalogue
from model_card.render import render_card
from tests.conftest import FIVE_LABELS, ROOT, make_tiny_data, tiny_args
from trainer.evaluation.metrics import point_metrics
from trainer.labels import LabelSet
from trainer.metric_catalogue import CATALOGUE, Metric, lower_is_better, record

sys.path.insert(0, str(ROOT / "space"))
import backend  # noqa: E402


def computed_keys(names: list[str], order: str = "auto") -> set[str]:
    """The keys point_metrics gives for random predictions over `names`, without the per-class ones."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % len(names)  # every class present, so ROC-AUC is defined
    probs = rng.dirichlet(np.ones(len(names)), size=60)
    keys = set(point_metrics(labels, probs, names, LabelSet.of(names, order)))
    return keys - {f"{metric}_{name}" for metric in catalogue.PER_CLASS for name in names}


def multilabel_keys(names: list[str]) -> set[str]:
    """The keys point_metrics gives a multi-label model (labels an (n, k) 0/1 matrix), without the per-label ones."""
    rng = np.random.default_rng(0)
    labels = (rng.random((60, len(names))) < 0.3).astype(int)
    keys = set(point_metrics(labels, rng.random((60, len(names))), names, thresholds=np.full(len(names), 0.4)))
    return keys - {f"{metric}_{name}" for metric in catalogue.PER_LABEL for name in names}


def test_every_computed_metric_has_one_entry_and_every_entry_is_computed_somewhere():
    single = computed_keys(["negative", "positive"]) | computed_keys(["a", "b", "c"]) | computed_keys(FIVE_LABELS)
    multi = multilabel_keys(["joy", "anger", "fear", "neutral"])
    keys = [metric.key for metric in CATALOGUE]
    assert len(keys) == len(set(keys))
    assert single | multi == set(keys) - {"loss"}  # loss: the Trainer's own eval_loss, listed for its direction
    assert computed_keys(["a", "b", "c"]) == {m.key for m in CATALOGUE if not m.ordinal and m.task != "multi"} - {
        "f1", "loss"}  # fmt: skip
    # each entry's task says which models compute it: the readers show a run the rows of its own kind
    assert single == {m.key for m in CATALOGUE if m.task in ("single", "both")} - {"loss"}
    assert multi == {m.key for m in CATALOGUE if m.task in ("multi", "both")} - {"loss"}


def test_a_run_records_the_entries_of_its_kind_and_a_single_label_run_what_it_always_has():
    single, multi = [m["key"] for m in record()], [m["key"] for m in record(multi_label=True)]
    assert single[:5] == ["accuracy", "f1_macro", "precision_macro", "recall_macro", "mcc"]  # as before this issue
    assert "subset_accuracy" not in single and "task" not in record()[0]
    headline = [m["key"] for m in record(multi_label=True) if m.get("headline")]
    assert headline == ["f1_micro", "f1_macro", "precision_micro", "recall_micro", "precision_macro", "recall_macro",
                        "subset_accuracy", "hamming_loss", "roc_auc", "pr_auc", "log_loss", "brier", "ece"]  # fmt: skip
    assert "accuracy" not in multi and "mcc" not in multi and "labels_per_text" in multi
    assert lower_is_better("eval_hamming_loss") and not lower_is_better("pr_auc")
    with pytest.raises(ValueError, match="task one of single, multi, both"):
        Metric("x", "X", task="several")


def test_direction_and_record():
    assert [m.key for m in CATALOGUE if m.better == "lower"] == [
        "hamming_loss", "log_loss", "brier", "ece", "mae", "off_by_one", "polarity_flips", "loss",
    ]  # fmt: skip
    assert lower_is_better("eval_log_loss") and lower_is_better("loss") and not lower_is_better("f1_macro")
    assert not lower_is_better("a_metric_nobody_defined")
    recorded = json.loads(json.dumps(record()))  # survives metrics.json as it is
    assert recorded[0] == {"key": "accuracy", "name": "Accuracy", "better": "higher", "format": "number",
                           "digits": 4, "headline": True, "ordinal": False, "meaning": "",
                           "hub": {"type": "accuracy"}}  # fmt: skip
    with pytest.raises(ValueError, match="better is higher or lower"):
        Metric("x", "X", better="up")


def test_a_new_metric_is_one_entry_and_one_function(tiny_model_dir, tmp_path, monkeypatch):
    from trainer.config import load_config
    from trainer.training.loop import train

    made_up = Metric("negative_share", "Share predicted negative", better="lower", format="percent", digits=1,
                     headline=True, hub={"type": "negative_share"})  # fmt: skip
    monkeypatch.setattr(catalogue, "CATALOGUE", [*CATALOGUE, made_up])
    monkeypatch.setitem(metrics_module.SCORERS, "negative_share", lambda s: float(np.mean(s.preds == 0)))
    args = tiny_args(tiny_model_dir, make_tiny_data(tmp_path), tmp_path / "run", "--metric_for_best_model",
                     "negative_share")  # fmt: skip
    cfg = load_config(args)
    assert cfg.training.greater_is_better is False  # the direction, from the entry
    run, _ = train(cfg)

    metrics = json.loads((run / "metrics.json").read_text())
    score = metrics["evaluation"]["negative_share"]
    assert {m["key"]: m for m in metrics["metric_catalogue"]}["negative_share"]["better"] == "lower"
    assert any("eval_negative_share" in entry for entry in json.loads((run / "log_history.json").read_text()))
    value, low, high = (f"{score[k]:.1%}" for k in ("value", "ci_low", "ci_high"))
    report = (run / "error_analysis.md").read_text().split("## Metrics")[1].split("##")[0]
    assert f"| negative_share | {value} | {low} – {high} |" in report
    assert report.index("| ece |") < report.index("| negative_share |")  # after the others, in catalogue order
    card = render_card(run)
    assert f"| Share predicted negative | {value} | {low}-{high} |" in card
    assert "- type: negative_share" in card and f"value: {round(score['value'], 4)}" in card  # the model-index
    space = backend.metrics_markdown(metrics, str(run))
    assert f"| negative_share | {value} | {low}–{high} |" in space


def test_without_the_entry_the_readers_show_the_figure_as_a_plain_number(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["evaluation"]["unlisted"] = {"value": 0.123456, "ci_low": 0.1, "ci_high": 0.2}
    (run / "metrics.json").write_text(json.dumps(metrics))
    # the Space lists every figure a run recorded; the card only the catalogue's headline ones
    assert "| unlisted | 0.123 | 0.100–0.200 |" in backend.metrics_markdown(metrics, str(run))
    assert "unlisted" not in render_card(run)
