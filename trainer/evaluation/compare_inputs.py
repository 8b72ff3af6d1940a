"""What `compare` compares: each run's own validation predictions, or both models scored on one labelled file."""

from __future__ import annotations

import logging

import pandas as pd

from trainer import UserError
from trainer.config import DataConfig
from trainer.data import load_labelled, multi_hot
from trainer.evaluation.analysis import multilabel_frame, predictions_frame
from trainer.evaluation.compare import check_same_labels, frame_labels
from trainer.modeling import load_classifier, model_labels
from trainer.run_folder import PREDICTIONS, NoModel, locate_run, read_label_set, read_metrics

logger = logging.getLogger(__name__)


def run_predictions(name: str) -> tuple[pd.DataFrame, list[str], bool]:
    """A finished run's validation predictions (predictions.parquet), its label names and whether it is
    multi-label."""
    try:
        folder = locate_run(name)
    except NoModel as err:
        raise UserError(str(err)) from None
    if not (folder / PREDICTIONS).is_file():
        raise UserError(f"{name} has no {PREDICTIONS} (a run from before the analysis wrote it): pass --data FILE "
                        "to score both models on a labelled file")  # fmt: skip
    frame = pd.read_parquet(folder / PREDICTIONS)
    names = read_label_set(folder).get("names") or frame_labels(frame)
    return frame, names, bool(read_metrics(folder).get("multi_label", False))


def own_predictions(name_a: str, name_b: str) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Both runs' own validation predictions, refused in one line when their labels differ: (A, B, multi-label)."""
    (a, names_a, multi_a), (b, names_b, multi_b) = run_predictions(name_a), run_predictions(name_b)
    check_same_labels(names_a, names_b, multi_a, multi_b)
    return a, b, multi_a


def scored_frame(name: str, texts: list[str], labels, names: list[str], multi: bool, batch_size: int) -> pd.DataFrame:
    """The predictions frame of model `name` on the texts, its columns in the order of `names`."""
    classifier = load_classifier(name)
    logger.info("scoring %d texts with %s", len(texts), name)
    probs = classifier.predict_proba(texts, batch_size)
    order = [classifier.labels.index(label) for label in names]
    if not multi:
        return predictions_frame(texts, labels, probs[:, order], names)
    chosen, confidence = classifier.decide(probs)[:, order], classifier.confidence(probs)
    return multilabel_frame(texts, labels, probs[:, order], chosen, confidence, names)


def scored_on_data(name_a: str, name_b: str, specs: list[str], cfg: DataConfig,
                   batch_size: int = 64) -> tuple[pd.DataFrame, pd.DataFrame, bool]:  # fmt: skip
    """Both models scored on the labelled files `specs` (read as `trainer.evaluate` reads one, in A's label order),
    their label sets checked first (cheap): (A, B, multi-label)."""
    (names_a, multi_a), (names_b, multi_b) = model_labels(name_a), model_labels(name_b)
    check_same_labels(names_a, names_b, multi_a, multi_b)
    data = pd.concat([load_labelled(spec, cfg, names_a, multi_a) for spec in specs], ignore_index=True)
    texts = data["text"].tolist()
    labels = multi_hot(data["label"], len(names_a)) if multi_a else data["label"].to_numpy()
    if len(texts) == 0:
        raise UserError(f"{', '.join(specs)} holds no labelled texts: pass a file with rows")
    a = scored_frame(name_a, texts, labels, names_a, multi_a, batch_size)
    return a, scored_frame(name_b, texts, labels, names_a, multi_a, batch_size), multi_a


def describe(name: str, specs: list[str] | None) -> dict:
    """What a side of the comparison is, for comparison.json."""
    return {"model": name, "texts": ", ".join(specs) if specs else f"its own validation predictions ({PREDICTIONS})"}
