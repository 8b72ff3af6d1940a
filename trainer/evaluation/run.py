"""`analyse()`: score a model on labelled data and write every analysis file, plot and the report."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import classification_report

from trainer import files
from trainer.evaluation.analysis import (
    confused_pairs,
    error_tags,
    incorrect_predictions,
    label_mistakes,
    multilabel_frame,
    predictions_frame,
    slice_table,
    training_summary,
)
from trainer.evaluation.behavioral import run_behavioral_tests
from trainer.evaluation.metrics import (
    confusion,
    expected_calibration_error,
    metrics_with_ci,
    reliability_bins,
    risk_coverage,
)
from trainer.evaluation.plots import (
    plot_confidence_histogram,
    plot_confusion_matrix,
    plot_embeddings,
    plot_label_cooccurrence,
    plot_per_label,
    plot_reliability,
    plot_risk_coverage,
    plot_sample_predictions,
    plot_slices,
    plot_training_curves,
)
from trainer.evaluation.report import render_report
from trainer.inference import POOLING, Classifier, Scores, probabilities
from trainer.labels import LabelSet
from trainer.metric_catalogue import record as metric_catalogue
from trainer.palette import class_colours
from trainer.run_folder import (
    BEHAVIOURAL,
    CLASSIFICATION_REPORT,
    EMBEDDINGS,
    ERROR_ANALYSIS,
    INCORRECT,
    LOG_HISTORY,
    METRICS,
    PLOTS,
    PREDICTIONS,
    SLICES,
    TRAINING_SUMMARY,
    read_train_config,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisOptions:
    """What `analyse()` needs besides the model and the data: where it writes, and the facts of the model's run
    (training passes them from its config, `trainer.evaluate` from the run folder's: `AnalysisOptions.of_run`)."""

    output_dir: Path
    data_id: str  # how the data is named: `dataset:split`, or a file
    model: str  # how the model is named; a run folder's training history is read from it
    label_order: str = "auto"  # whether the labels are a scale (ordinal figures): auto, ordinal or nominal
    trained_on: dict | None = None  # the data options the model was trained with (`training_data`); None: unknown
    n_bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 64
    metrics_file: str | None = METRICS  # None: the caller keeps the metrics (training merges them into its own)

    @classmethod
    def of_run(cls, model: str, label_order: str | None = None, **options) -> AnalysisOptions:
        """Options for a model that may be a run folder: its label order (unless given) and training data are read
        from its train_config.yaml (auto and unknown for any other model)."""
        saved = read_train_config(model)
        return cls(model=model, label_order=label_order or saved.get("label_order") or "auto",
                   trained_on=training_data(saved), **options)  # fmt: skip


def training_data(data: dict) -> dict | None:
    """What a model was trained and validated on, from its data options (a run's config); None when there are none."""
    if not data:
        return None
    keys = ("train_file", "validation_file", "dataset_name") if data.get("train_file") else ("dataset_name",)
    return {key: data.get(key) for key in keys}


def is_out_of_domain(trained_on: dict | None, data_id: str) -> bool:
    """Data is in domain when it is the training dataset (any split) or a file beside the training files."""
    if not trained_on:
        return False
    if data_id.partition(":")[0] in trained_on.values():
        return False
    folders = {Path(f).resolve().parent for f in trained_on.values() if f and Path(f).suffix}
    return not (Path(data_id).suffix and Path(data_id).resolve().parent in folders)


def analyse(classifier: Classifier, texts: list[str], labels: np.ndarray, options: AnalysisOptions) -> dict:
    """Predict, score and write every analysis artifact into `options.output_dir`; returns the evaluation metrics."""
    out, n_bootstrap, seed = Path(options.output_dir), options.n_bootstrap, options.seed
    started = time.perf_counter()
    # several labels per text are never a scale, whatever their names
    label_set = LabelSet.of(classifier.labels, "nominal" if classifier.multi_label else options.label_order)
    scores = classifier.score(list(texts), batch_size=options.batch_size, embeddings=True, progress=True)
    inference_seconds = time.perf_counter() - started
    found = Analysis.of(classifier, label_set, texts, labels, scores, n_bootstrap, seed)
    trained_on = options.trained_on
    metrics = {
        "model": options.model,
        "data": options.data_id,
        "trained_on": trained_on and (trained_on.get("train_file") or trained_on.get("dataset_name")),
        "out_of_domain": is_out_of_domain(trained_on, options.data_id),
        "umap": found.umap_xy is not None,
        "long_text": long_text_record(classifier, texts, scores.windows),
        "n": len(texts),
        "labels": classifier.labels,
        "multi_label": classifier.multi_label,
        "label_set": label_set_record(label_set),
        # how the card and the Space name, order and format each metric (the entries of this kind of model)
        "metric_catalogue": metric_catalogue(classifier.multi_label),
        "bootstrap": {"resamples": n_bootstrap, "seed": seed, "interval": "percentile 95%"},
        "metrics": found.scores,
        "risk_coverage": found.coverage,
        "calibration": calibration_record(classifier, found),
        "timing": {"inference_seconds": round(inference_seconds, 2)},
    }
    if classifier.multi_label:  # the thresholds the decisions were taken at (the model's decision_thresholds)
        metrics["thresholds"] = {"per_label": dict(zip(classifier.labels, map(float, classifier.thresholds)))}
        metrics["label_mistakes"] = label_mistakes(found.frame)
    summary = write_analysis(found, out, options.model)
    error_counts = {tag: int(found.frame.loc[~found.frame["correct"], tag].sum()) for tag in error_tags(found.frame)}
    report = render_report(metrics, error_counts, found.slices, found.wrong, found.behaviour, summary,
                           confused_pairs(found.frame))  # fmt: skip
    files.write_text(out / ERROR_ANALYSIS, report)
    metrics["timing"]["total_seconds"] = round(time.perf_counter() - started, 2)
    if options.metrics_file:
        files.write_text(out / options.metrics_file, json.dumps(metrics, indent=2) + "\n")
    return metrics


def label_set_record(label_set: LabelSet) -> dict:
    """The label set as metrics.json records it: names, order, polarity sides, and the colour of each class in the
    plots (the Space's explorer reads them, so a class has one colour everywhere)."""
    colours = class_colours(label_set.ordered_names(), label_set.ordinal)
    return {**label_set.describe(), "colours": {name: colours[name] for name in label_set.names}}


def long_text_record(classifier: Classifier, texts, windows: np.ndarray) -> dict:
    """How texts over max_length were read (cut there, or in overlapping windows) and how many were that long."""
    chunk = classifier.long_text == "chunk"
    return {
        "mode": classifier.long_text,
        "max_length": classifier.max_length,
        "stride": classifier.stride if chunk else None,
        "texts_over_max_length": int((windows > 1).sum()) if chunk else classifier.count_long(list(texts)),
    }


@dataclass
class Analysis:
    """The analysis of one model on one labelled set, computed by pure functions and not yet written."""

    names: list[str]
    label_set: LabelSet
    labels: np.ndarray  # ids; a multi-label model's (n, k) 0/1 rows
    probs: np.ndarray
    chosen: np.ndarray  # (n, k) bools: the labels the classifier decides on (`Classifier.decide`)
    thresholds: np.ndarray | None  # a multi-label model's decision thresholds
    before: np.ndarray | None  # the probabilities before calibration, when the model's temperature is not 1
    pooled: np.ndarray
    scores: dict
    coverage: dict
    frame: pd.DataFrame
    wrong: pd.DataFrame
    slices: pd.DataFrame
    behaviour: dict
    xy: np.ndarray
    umap_xy: np.ndarray | None

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @classmethod
    def of(cls, classifier: Classifier, label_set: LabelSet, texts, labels, scored: Scores, n_bootstrap: int,
           seed: int) -> Analysis:  # fmt: skip
        names, multi, probs, labels = classifier.labels, classifier.multi_label, scored.probs, np.asarray(labels)
        chosen = classifier.decide(probs)
        if multi:
            frame = multilabel_frame(texts, labels, probs, chosen, classifier.confidence(probs), names, label_set)
        else:
            frame = predictions_frame(texts, labels, probs, names, label_set)
        behaviour = run_behavioral_tests(classifier.predict_proba, names, list(texts), seed=seed, label_set=label_set,
                                         decide=classifier.decide if multi else None)  # fmt: skip
        scores = metrics_with_ci(labels, probs, names, n_boot=n_bootstrap, seed=seed, label_set=label_set,
                                 thresholds=classifier.thresholds)  # fmt: skip
        coverage = risk_coverage(frame["confidence"], frame["correct"], "subset_accuracy" if multi else "accuracy")
        # the model's own logits are calibrated (T folded into its last layer); times T they are what it gave before
        uncalibrated = classifier.temperature if not np.allclose(classifier.temperature, 1) else None
        before = None if uncalibrated is None else probabilities(scored.logits * uncalibrated, multi)
        pooled = scored.embeddings
        return cls(
            names, label_set, labels, probs, chosen, classifier.thresholds, before, pooled, scores, coverage, frame,
            incorrect_predictions(frame), slice_table(frame), behaviour,
            PCA(n_components=2, random_state=seed).fit_transform(pooled), umap_projection(pooled, seed),
        )  # fmt: skip

    def ece_before(self) -> float | None:
        """The ECE of the probabilities before calibration (None when the model was not calibrated), on the bins and
        outcomes of the calibrated `ece`."""
        return None if self.before is None else expected_calibration_error(*calibration_points(self, self.before))


def calibration_points(found: Analysis, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What calibration is measured on: each text's top probability and whether it is right; for a multi-label
    model every label's probability and whether the text has the label."""
    if found.multi_label:
        return probs.ravel(), found.labels.ravel()
    return probs.max(1), probs.argmax(1) == found.labels


def calibration_record(classifier: Classifier, found: Analysis) -> dict:
    """The model's calibration as its config.json records it (`{"method": "none"}` when it was not calibrated), and
    the ECE of the analysed data before and after it."""
    saved = getattr(classifier.model.config, "calibration", None) or {}
    if found.before is None and saved.get("method") != "temperature":
        return {"method": "none"}
    after = found.scores["ece"]["value"]
    before = found.ece_before()
    return {**saved, "ece": {"before": after if before is None else before, "after": after}}


def write_analysis(found: Analysis, out: Path, model: str) -> dict | None:
    """Every table and plot of the analysis into `out`; returns the training summary when `model` is a run folder."""
    plots = out / PLOTS
    out.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out / PREDICTIONS) as tmp:
        found.frame.to_parquet(tmp, index=False)
    files.write_text(out / INCORRECT, found.wrong.to_csv(index=False))
    files.write_text(out / SLICES, found.slices.to_csv(index=False))
    files.write_text(out / BEHAVIOURAL, json.dumps(found.behaviour, indent=2) + "\n")
    # scikit-learn's report on label ids, or on the (n, k) indicator rows of a multi-label model
    preds = found.chosen.astype(int) if found.multi_label else found.probs.argmax(1)
    report = classification_report(found.labels, preds, labels=range(len(found.names)), target_names=found.names,
                                   digits=4, zero_division=0)  # fmt: skip
    files.write_text(out / CLASSIFICATION_REPORT, report)
    write_embeddings(out / EMBEDDINGS, found.frame, found.pooled, found.xy, found.umap_xy)
    write_plots(found, plots)
    history_file = Path(model) / LOG_HISTORY
    if not history_file.is_file():
        return None
    history = json.loads(history_file.read_text())
    summary = training_summary(history)
    files.write_text(out / TRAINING_SUMMARY, json.dumps(summary, indent=2) + "\n")
    plot_training_curves(history, plots / "training_curves.png")
    return summary


def write_plots(found: Analysis, plots: Path) -> None:
    """The analysis' figures: the confusion matrix (a multi-label model: per-label F1 and label co-occurrence),
    reliability (before and after calibration when the model was calibrated), risk-coverage, confidence, slices,
    samples and embeddings."""
    multi, k = found.multi_label, len(found.names)
    if multi:
        plot_per_label(found.scores, found.names, plots / "per_label_f1.png")
        plot_label_cooccurrence(found.labels, found.names, plots / "label_cooccurrence.png")
    else:
        preds = found.probs.argmax(1)
        plot_confusion_matrix(confusion(found.labels, preds, k), found.names, plots / "confusion_matrix.png")
    bins = reliability_bins(*calibration_points(found, found.probs))
    before = None if found.before is None else reliability_bins(*calibration_points(found, found.before))
    plot_reliability(bins, found.scores["ece"]["value"], plots / "reliability_diagram.png", k=None if multi else k,
                     before=before, before_ece=found.ece_before())  # fmt: skip
    plot_risk_coverage(found.frame["confidence"], found.frame["correct"], found.coverage, plots / "risk_coverage.png")
    plot_confidence_histogram(found.frame, plots / "confidence_histogram.png", k=None if multi else k)
    plot_slices(found.slices, plots / "slice_accuracy.png")
    order = found.label_set.ordered_names()
    colours = class_colours(order, found.label_set.ordinal)
    thresholds = dict(zip(found.names, found.thresholds)) if found.thresholds is not None else None
    plot_sample_predictions(found.frame, plots / "sample_predictions.png", colours=colours, thresholds=thresholds)
    coloured, groups, ordinal, colour_by = embedding_colours(found)
    for xy, method in ((found.xy, "PCA"), (found.umap_xy, "UMAP")):
        if xy is not None:
            plot_embeddings(xy, coloured, groups, plots / f"embeddings_{method.lower()}.png", method=method,
                            ordinal=ordinal, colour_by=colour_by)  # fmt: skip


def embedding_colours(found: Analysis) -> tuple[pd.DataFrame, list[str], bool, str]:
    """What the embedding plots colour each text by: its true label; for a multi-label model (a text has several)
    the side of its most probable label where the labels carry polarity, else that label itself."""
    if not found.multi_label:
        return found.frame, found.label_set.ordered_names(), found.label_set.ordinal, "true label"
    top = found.frame["top_label"]
    if not found.label_set.has_polarity:
        return found.frame.assign(label=top), found.names, False, "most probable label"
    sides = dict(zip(found.names, found.label_set.sign))
    side_names = {-1: "negative", 0: "neutral", 1: "positive"}
    return (found.frame.assign(label=top.map(lambda name: side_names[sides[name]])), list(side_names.values()), True,
            "side of the most probable label")  # fmt: skip


def umap_projection(pooled: np.ndarray, seed: int) -> np.ndarray | None:
    """A 2-D UMAP projection when umap-learn is installed (it is optional), else None."""
    try:
        import umap
    except ImportError:
        return None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(pooled)


def write_embeddings(path: Path, frame, pooled: np.ndarray, xy: np.ndarray, umap_xy: np.ndarray | None) -> None:
    """Embeddings with their 2-D projection; the pooling is stated in the parquet schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pd.DataFrame(
        {
            "text": frame["text"],
            "label": frame["label"],
            "predicted": frame["predicted"],
            "correct": frame["correct"],
            "pca_x": xy[:, 0],
            "pca_y": xy[:, 1],
            "embedding": list(pooled.astype(np.float32)),
        }
    )
    if umap_xy is not None:
        table["umap_x"], table["umap_y"] = umap_xy[:, 0], umap_xy[:, 1]
    if "top_label" in frame:  # a multi-label text's most probable label: the explorer colours by it
        table.insert(table.columns.get_loc("correct") + 1, "top_label", frame["top_label"])
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {
        b"pooling": POOLING.encode(),
        b"projection": b"PCA" + (b" and UMAP" if umap_xy is not None else b""),
    }
    with files.atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **meta}), tmp)
