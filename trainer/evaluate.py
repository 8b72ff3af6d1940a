"""Evaluate a model on labelled data and write the error analysis:
`python -m trainer.evaluate --model runs/latest --data ../shared/data/sst2/dev.tsv --output_dir eval/`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.decomposition import PCA
from sklearn.metrics import classification_report
from transformers import AutoConfig

from trainer import UserError, fail, files
from trainer.analysis import (
    ERROR_TAGS,
    confusion,
    incorrect_predictions,
    metrics_with_ci,
    predictions_frame,
    reliability_bins,
    slice_table,
    training_summary,
)
from trainer.behavioral import run_behavioral_tests
from trainer.config import DataConfig
from trainer.data import READERS, encode_labels, load_split, read_table
from trainer.modeling import load_error, resolve_model_path
from trainer.plots import (
    plot_confidence_histogram,
    plot_confusion_matrix,
    plot_embeddings,
    plot_reliability,
    plot_slices,
    plot_training_curves,
)
from trainer.predict import Predictor
from trainer.report import write_report

logger = logging.getLogger(__name__)


def load_labelled(spec: str, text_column: str, label_column: str, label_names: list[str]) -> pd.DataFrame:
    """`spec` is a local file, or a Hub dataset `name[:split]` (default split: validation); returns text/label ids."""
    if Path(spec).suffix.lower() in READERS:
        frame = read_table(spec)
    else:
        name, _, split = spec.partition(":")
        frame = load_split(name, None, split or "validation")
    if label_column not in frame.columns:
        found = ", ".join(map(str, frame.columns))
        raise UserError(
            f"{spec}: no label column '{label_column}' (columns: {found}): pass --label_column, "
            "or use `python -m trainer.predict --file` for unlabelled data"
        )
    cfg = DataConfig(text_column=text_column, label_column=label_column, label_names=label_names)
    return encode_labels(frame, cfg, spec)


def label_names_of(model: str) -> list[str]:
    """The model's label names in id order, from its config alone."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(load_error(model, err)) from None
    return [config.id2label[i] for i in range(config.num_labels)]


def training_data_of(model: str) -> dict | None:
    """What a run folder was trained and validated on, from its train_config.yaml (None for other models)."""
    path = Path(model) / "train_config.yaml"
    if not path.is_file():
        return None
    saved = yaml.safe_load(path.read_text()) or {}
    keys = ("train_file", "validation_file", "dataset_name") if saved.get("train_file") else ("dataset_name",)
    return {key: saved.get(key) for key in keys}


def is_out_of_domain(trained_on: dict | None, data_id: str) -> bool:
    """Data is in domain when it is the training dataset (any split) or a file beside the training files."""
    if not trained_on:
        return False
    if data_id.partition(":")[0] in trained_on.values():
        return False
    folders = {Path(f).resolve().parent for f in trained_on.values() if f and Path(f).suffix}
    return not (Path(data_id).suffix and Path(data_id).resolve().parent in folders)


def analyse(
    predictor: Predictor,
    model: str,
    texts: list[str],
    labels: np.ndarray,
    output_dir: str | Path,
    data_id: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    metrics_file: str | None = "metrics.json",
) -> dict:
    """Predict, score and write every analysis artifact into output_dir; returns the evaluation metrics.

    `model` names the model (a run folder's log_history.json and train_config.yaml are read from it);
    `metrics_file=None` leaves the metrics to the caller (training merges them into its own metrics.json).
    """
    out = Path(output_dir)
    plots = out / "plots"
    started = time.perf_counter()
    names = predictor.labels
    probs, pooled = predictor.predict_proba(texts, batch_size=batch_size, embeddings=True, progress=True)
    probs, pooled = probs.numpy().astype(float), pooled.numpy()
    inference_seconds = time.perf_counter() - started

    # Scores and tables (pure functions), then files.
    scores = metrics_with_ci(labels, probs, names, n_boot=n_bootstrap, seed=seed)
    frame = predictions_frame(texts, labels, probs, names)
    wrong = incorrect_predictions(frame)
    slices = slice_table(frame)
    positive = next((n for n in names if n.lower() == "positive"), names[-1])
    behaviour = run_behavioral_tests(lambda t: predictor.predict_proba(t).numpy(), names, list(texts), seed=seed)
    xy = PCA(n_components=2, random_state=seed).fit_transform(pooled)
    umap_xy = umap_projection(pooled, seed)
    trained_on = training_data_of(model)

    out.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out / "predictions.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    files.write_text(out / "incorrect_predictions.csv", wrong.to_csv(index=False))
    files.write_text(out / "slices.csv", slices.to_csv(index=False))
    files.write_text(out / "behavioral_tests.json", json.dumps(behaviour, indent=2) + "\n")
    files.write_text(
        out / "classification_report.txt",
        classification_report(
            labels, probs.argmax(1), labels=range(len(names)), target_names=names, digits=4, zero_division=0
        ),
    )
    write_embeddings(out / "embeddings.parquet", frame, pooled, xy, umap_xy)
    matrix = confusion(np.asarray(labels), probs.argmax(1), len(names))
    plot_confusion_matrix(matrix, names, plots / "confusion_matrix.png")
    bins = reliability_bins(frame["confidence"].to_numpy(), frame["correct"].to_numpy())
    plot_reliability(bins, scores["ece"]["value"], plots / "reliability_diagram.png")
    plot_confidence_histogram(frame, plots / "confidence_histogram.png")
    plot_slices(slices, plots / "slice_accuracy.png")
    plot_embeddings(xy, frame, positive, plots / "embeddings_pca.png")
    if umap_xy is not None:
        plot_embeddings(umap_xy, frame, positive, plots / "embeddings_umap.png", method="UMAP")
    summary = None
    history_file = Path(model) / "log_history.json"
    if history_file.is_file():
        history = json.loads(history_file.read_text())
        summary = training_summary(history)
        files.write_text(out / "training_summary.json", json.dumps(summary, indent=2) + "\n")
        plot_training_curves(history, plots / "training_curves.png")

    metrics = {
        "model": model,
        "data": data_id,
        "trained_on": trained_on and (trained_on.get("train_file") or trained_on.get("dataset_name")),
        "out_of_domain": is_out_of_domain(trained_on, data_id),
        "umap": umap_xy is not None,
        "n": len(texts),
        "labels": names,
        "bootstrap": {"resamples": n_bootstrap, "seed": seed, "interval": "percentile 95%"},
        "metrics": scores,
        "timing": {"inference_seconds": round(inference_seconds, 2)},
    }
    error_counts = {tag: int(frame.loc[~frame["correct"], tag].sum()) for tag in ERROR_TAGS}
    write_report(out / "error_analysis.md", metrics, error_counts, slices, wrong, behaviour, summary)
    metrics["timing"]["total_seconds"] = round(time.perf_counter() - started, 2)
    if metrics_file:
        files.write_text(out / metrics_file, json.dumps(metrics, indent=2) + "\n")
    return metrics


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
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {
        b"pooling": b"mean of the last hidden state over non-padding tokens",
        b"projection": b"PCA" + (b" and UMAP" if umap_xy is not None else b""),
    }
    with files.atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **meta}), tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--data", default="stanfordnlp/sst2:validation", help="labelled file, or Hub dataset[:split]")
    parser.add_argument("--output_dir", required=True, help="where the analysis files go")
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--label_names", nargs="+", help="label names in id order (default: the model's)")
    parser.add_argument("--max_samples", type=int, help="evaluate the first N rows only")
    parser.add_argument("--n_bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model_labels = label_names_of(args.model)
        names = args.label_names or model_labels
        if len(names) != len(model_labels):
            raise UserError(f"--label_names has {len(names)} names but the model has {len(model_labels)} labels")
        data = load_labelled(args.data, args.text_column, args.label_column, names)  # check the data first: cheap
        if args.max_samples:
            data = data.head(args.max_samples)
        predictor = Predictor(args.model)
        metrics = analyse(
            predictor, args.model, data["text"].tolist(), data["label"].to_numpy(), args.output_dir, args.data,
            n_bootstrap=args.n_bootstrap, seed=args.seed, batch_size=args.batch_size,
        )  # fmt: skip
    except (UserError, OSError) as err:
        return fail(err)
    acc = metrics["metrics"]["accuracy"]
    print(
        f"accuracy {acc['value']:.2%} (95% CI {acc['ci_low']:.2%}-{acc['ci_high']:.2%}) on {metrics['n']} examples "
        f"in {metrics['timing']['total_seconds']:.1f}s\nanalysis: {Path(args.output_dir) / 'error_analysis.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
