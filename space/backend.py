"""The Space's logic without Gradio: load a model and its artifacts, predict, explain, project, parse uploads.

Scoring comes from `inference.py`, the project's inference core (a link to `trainer/inference.py`; `push_space`
uploads its content), so the Space and the trainer tokenise, batch and pool texts the same way. This folder needs
only torch, transformers, pandas, scikit-learn and huggingface_hub, so it deploys as a Space.
"""

from __future__ import annotations

import csv
import json
import textwrap
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from inference import UNCERTAIN, Classifier, check_min_confidence
from palette import DIVERGING, MANY_COLOURS, OUTCOME_COLOURS, YOU, class_colours, rgba
from run_folder import (
    BEHAVIOURAL,
    CARD,
    EMBEDDINGS,
    EVALUATIONS,
    INCORRECT,
    METRICS,
    PLOTS,
    PREDICTIONS,
    SLICES,
    is_hub_id,
    locate_model,
)
from scipy.special import log_softmax

READS = 8  # a text may be this many times what the model reads at once (it is scored in windows); longer only costs
CHARS_PER_TOKEN = 4  # about; SST-2 averages 4.7 with MiniLM's tokenizer, so a text at the limit is under READS reads
MAX_ROWS = 5000  # per batch request
MAX_FILE_BYTES = 2_000_000
EXPLANATION_METHOD = "occlusion: how much the predicted class's log-odds fall when the word is left out"
PER_CLASS = ("precision", "recall", "f1")
PER_LABEL = ("precision", "recall", "f1", "support", "roc_auc", "pr_auc")  # a multi-label model's, per label
BEHAVIOURAL_COLUMNS = ["name", "type", "status", "n", "failures", "failure_rate", "description"]
SIDE_COLOURS = {"negative": DIVERGING[0], "neutral": DIVERGING[3], "positive": DIVERGING[-1]}  # as the scale's ends
AWAY = "#9e9e9e"  # a word pushing away from the label explained (multi-label)
NO_LABEL = "(none)"  # a multi-label answer with no label over its threshold, where a name is needed


def locate(model_id: str) -> Path:
    """The model folder MODEL_ID names, as every command finds it (`run_folder.locate_model`): a local run or model
    folder, or a Hub repo's published files in the local cache. Raises run_folder.NoModel (a ValueError), one line."""
    return Path(locate_model(model_id)).resolve()


@dataclass
class Explanation:
    """One text explained: its words, each word's occlusion score for the explained class (log-odds), the class each
    word pushes toward, the text's probabilities, the ms scoring took and the windows it was read in. A multi-label
    model's explanation is for one label (`target`): a word pushes toward it (`supports` = target) or away (-1)."""

    words: list[str]
    scores: np.ndarray
    supports: np.ndarray  # class id per word: the class whose log-probability falls most when the word goes
    probs: np.ndarray
    latency_ms: float
    windows: int
    target: int | None = None  # the label explained, for a multi-label model


class SentimentModel(Classifier):
    """The inference core's classifier, with word-level explanations. The app reads long texts whole (`chunk`)."""

    def explain(self, text: str, target: int | None = None) -> Explanation:
        """Occlusion: each word left out in turn, scored against the whole text. A multi-label model explains one
        label, `target` (default: the most probable one); a single-label model, its predicted class.

        Scores are log-odds, not probabilities: a confident model's probability hardly moves when one word goes (for
        a label of a multi-label model, its logit is its log-odds). A text read in several windows gets no words:
        occluding each of them would cost a scoring of the text per word.
        """
        words = text.split()
        started = time.perf_counter()
        scored = self.score([text])
        latency_ms = (time.perf_counter() - started) * 1000
        full, windows = scored.logits, int(scored.windows[0])
        probs = scored.probs[0]
        if self.multi_label:
            target = int(probs.argmax()) if target is None else int(target)
        if windows > 1:
            return Explanation([], np.zeros(0), np.zeros(0, int), probs, latency_ms, windows, target)
        variants = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        without = self.score(variants).logits if len(words) > 1 else full
        if self.multi_label:
            scores = full[0, target].astype(np.float64) - without[:, target]
            return Explanation(words, scores, np.where(scores >= 0, target, -1), probs, latency_ms, windows, target)
        target = int(full[0].argmax())
        supports = (log_softmax(full, axis=1) - log_softmax(without, axis=1)).argmax(1)
        scores = log_odds(full, target)[0] - log_odds(without, target)
        return Explanation(words, scores, supports, probs, latency_ms, windows)


# --- pure helpers (unit-tested) ---


def char_limit(max_length: int) -> int:
    """Characters one text may have: READS times what a model of `max_length` tokens reads at once, rounded down to
    the thousand (2,000 for 64 tokens, 4,000 for 128, 16,000 for 512: a full 2,500-word review)."""
    return max(1000, CHARS_PER_TOKEN * max_length * READS // 1000 * 1000)


def check_text(text: str | None, limit: int) -> str:
    """The stripped text, or ValueError with what to do."""
    text = (text or "").strip()
    if not text:
        raise ValueError("Type a sentence first.")
    if len(text) > limit:
        raise ValueError(
            f"That text has {len(text):,} characters; the limit is {limit:,}. "
            "Shorten it, or split it into lines in the Batch tab."
        )
    return text


def window_note(windows: int, max_length: int) -> str:
    """The line under a prediction read in several windows (empty for a text read at once)."""
    if windows <= 1:
        return ""
    return (f"the text is longer than the {max_length} tokens the model reads at once: it was scored in "
            f"**{windows} overlapping windows** (the mean of their probabilities); word highlights need a text that "
            "fits in one")  # fmt: skip


def log_odds(logits: np.ndarray, target: int) -> np.ndarray:
    """log P(target) - log P(not target) per row, computed from logits (no saturation at p = 1)."""
    logits = np.asarray(logits, dtype=np.float64)
    others = np.delete(logits, target, axis=1)
    rest = others.max(1) + np.log(np.exp(others - others.max(1, keepdims=True)).sum(1))
    return logits[:, target] - rest


def label_value(probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    """gr.Label's value: every class with its probability."""
    return {label: float(p) for label, p in zip(labels, probs)}


def label_bars_html(answer: dict, colours: dict[str, str]) -> str:
    """A multi-label answer as one bar per label, most probable first: the label's own probability, its threshold
    marked on the bar, the labels chosen (at or over it) in bold with a tick. `data-label`, `data-score`,
    `data-threshold` and `data-chosen` on each row carry the same for programs and tests."""
    chosen = set(answer["labels"])  # an uncertain answer keeps them, as its best guess
    rows = []
    for name, p in sorted(answer["probabilities"].items(), key=lambda item: -item[1]):
        t = answer["thresholds"][name]
        picked = name in chosen
        rows.append(
            f'<div class="bar-row{" chosen" if picked else ""}" data-label="{escape(name)}" data-score="{p:.4f}" '
            f'data-threshold="{t:.4f}" data-chosen="{str(picked).lower()}">'
            f'<span class="bar-name">{"✓ " if picked else ""}{escape(name)}</span>'
            f'<span class="bar-track"><span class="bar-fill" style="width:{p:.1%};background:{colours[name]}"></span>'
            f'<span class="bar-threshold" style="left:{t:.1%}" title="threshold {t:.1%}"></span></span>'
            f'<span class="bar-value">{p:.1%}<span class="bar-t"> · threshold {t:.1%}</span></span></div>'
        )
    key = ('<div class="bars-key">bar: the label\'s probability · line: its threshold (chosen at or over it) · '
           "a label is decided on its own, so the bars need not add up to 100%</div>")  # fmt: skip
    return f'<div class="bars">{"".join(rows)}</div>{key}'


def answer_markdown(answer: dict, min_confidence: float | None = None) -> str:
    """The answer to a text as a heading: the label (a multi-label model's labels over their thresholds, or that none
    is), or "uncertain" with the best guess when its confidence is below `min_confidence`."""
    multi = "labels" in answer
    decided = (", ".join(answer["labels"]) or "no label over its threshold") if multi else answer["label"]
    sure = (f"confidence {answer['score']:.1%} (the least sure of its label decisions)" if multi
            else f"probability {answer['score']:.1%}")  # fmt: skip
    if answer["label"] != UNCERTAIN:
        return f"### {decided}\n{sure}"
    guess = answer["best_guess"]
    guess = (", ".join(guess) or "no label") if multi else guess
    return (f"### {UNCERTAIN}\n{sure}, below the minimum confidence {min_confidence:.0%}; "
            f"best guess: **{guess}**")  # fmt: skip


def highlights(words: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Each word with its score scaled to [-1, 1] (the colour's strength)."""
    scale = float(np.abs(scores).max()) if len(scores) else 0.0
    scaled = scores / scale if scale > 0 else np.zeros_like(scores)
    return [(word, round(float(s), 3)) for word, s in zip(words, scaled)]


def words_html(found: Explanation, labels: list[str], colours: dict[str, str]) -> str:
    """The words of an explanation on a background in the colour of the class each pushes toward, stronger for a
    larger effect, with a legend; `data-class` and `data-weight` carry the same for programs and tests. For one label
    of a multi-label model: its colour toward it, grey away from it (`data-class` "not <label>")."""
    if not found.words:
        return ""
    spans = []
    for (word, weight), cls in zip(highlights(found.words, found.scores), found.supports):
        name = labels[int(cls)] if cls >= 0 else f"not {labels[found.target]}"
        colour = colours.get(name, AWAY)
        alpha = 0.1 + 0.75 * abs(weight) if abs(weight) >= 0.05 else 0.0
        spans.append(f'<span class="word" data-class="{escape(name)}" data-weight="{weight}" title="{escape(name)}" '
                     f'style="background:{rgba(colour, alpha)}">{escape(word)}</span>')  # fmt: skip
    if found.target is None:
        return f'<div class="words">{" ".join(spans)}</div>' + legend_html(labels, colours, "pushes toward")
    name = labels[found.target]
    keys = {name: colours[name], f"not {name}": AWAY}
    return f'<div class="words">{" ".join(spans)}</div>' + legend_html(list(keys), keys, "pushes toward")


def legend_html(labels: list[str], colours: dict[str, str], verb: str = "") -> str:
    """A row of colour swatches with the class names."""
    keys = " ".join(
        f'<span class="key"><span class="swatch" style="background:{colours[name]}"></span>{escape(name)}</span>'
        for name in labels
    )
    return f'<div class="legend">{verb + ": " if verb else ""}{keys}</div>'


def parse_lines(text: str | None, limit: int | None = None) -> list[str]:
    """Non-empty lines, each cut at `limit` characters when given."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return _check_rows(lines, "the text box", limit)


def parse_upload(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts from an uploaded .txt (one per line) or .csv/.tsv (a `text` or `sentence` column, or the only text one),
    each cut at `limit` characters when given."""
    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(
            f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB."
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            return parse_lines(path.read_text(encoding="utf-8"), limit)
        if suffix not in (".csv", ".tsv"):
            raise ValueError(f"{path.name}: upload a .txt (one text per line), .csv or .tsv file.")
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",",
                            quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL)  # fmt: skip
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text: save it as UTF-8 and upload again.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path.name} is not a readable table ({str(err).splitlines()[0]}).") from None
    named = [c for c in frame.columns if str(c).lower() in ("text", "sentence", "review")]
    textual = [c for c in frame.columns if frame[c].dtype == object]
    column = named[0] if named else textual[0] if len(textual) == 1 else None
    if column is None:
        raise ValueError(
            f"{path.name}: no column named text or sentence (columns: {', '.join(map(str, frame.columns))})."
        )
    return _check_rows([str(t).strip() for t in frame[column].dropna() if str(t).strip()], path.name, limit)


def _check_rows(texts: list[str], source: str, limit: int | None) -> list[str]:
    if not texts:
        raise ValueError(f"No text found in {source}: give one text per line.")
    if len(texts) > MAX_ROWS:
        raise ValueError(f"{source} has {len(texts):,} texts; the limit is {MAX_ROWS:,} per request.")
    return [t[:limit] for t in texts]


def batch_table(texts: list[str], answers: list[dict]) -> pd.DataFrame:
    """One row per text: its answer (`label`, or a multi-label model's `labels` joined by ";"; "uncertain" below the
    minimum confidence), its confidence, and every class's probability."""
    column = "labels" if answers and "labels" in answers[0] else "label"
    names = list(answers[0]["probabilities"]) if answers else []
    probabilities = {f"p_{name}": [round(a["probabilities"][name], 4) for a in answers] for name in names}
    return pd.DataFrame({"text": texts, column: [a["label"] for a in answers],
                         "confidence": [round(a["score"], 4) for a in answers], **probabilities})  # fmt: skip


def nearest(query: np.ndarray, matrix: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the k rows of `matrix` most similar to `query`, most similar first."""
    q = query / (np.linalg.norm(query) or 1.0)
    m = matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
    sims = m @ q
    top = np.argsort(-sims, kind="stable")[:k]
    return top, sims[top]


@dataclass
class Projection:
    """PCA fitted on the validation embeddings; new sentences are placed with the same fitted transform."""

    mean: np.ndarray
    components: np.ndarray  # (2, hidden)
    explained: np.ndarray  # the share of the embeddings' variance each component explains

    @classmethod
    def fit(cls, embeddings: np.ndarray) -> Projection:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, svd_solver="full").fit(embeddings)
        return cls(pca.mean_, pca.components_, pca.explained_variance_ratio_)

    def axis_titles(self) -> list[str]:
        return [f"PC{i + 1} ({share:.1%} of the variance)" for i, share in enumerate(self.explained)]

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(embeddings) - self.mean) @ self.components.T


MISSED_OR_ADDED = {"was missed": ["missed"], "was added": ["extra"], "was missed or added": ["missed", "extra"]}
ANY_LABEL = "any label"


def filter_errors(frame: pd.DataFrame, error_type: str | None, min_confidence: float, label: str | None = None,
                  how: str = "was missed") -> pd.DataFrame:  # fmt: skip
    """The mistakes of one error type (whole tags) at or over a confidence; for a multi-label model, also only the
    texts where `label` was missed or added (`how`, a key of MISSED_OR_ADDED)."""
    keep = frame["confidence"] >= min_confidence
    if error_type and error_type != "all":
        keep &= frame["error_types"].fillna("").str.split(";").apply(lambda tags: error_type in tags)
    if label and label != ANY_LABEL:
        found = [frame[column].fillna("").str.split(";").apply(lambda names: label in names)
                 for column in MISSED_OR_ADDED[how]]  # fmt: skip
        keep &= np.logical_or.reduce(found)
    return frame[keep].reset_index(drop=True)


def relabel_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mistakes as a relabelling sheet (the columns of `trainer.label_next --relabel`): `label` holds the label as
    given, to keep or correct; `python -m trainer.train --corrections FILE` reads the filled-in sheet back."""
    given = frame["true_labels"] if "true_labels" in frame else frame["true_label"]
    said = frame["predicted_labels"] if "predicted_labels" in frame else frame["predicted_label"]
    return pd.DataFrame({"text": frame["text"], "given": given, "predicted": said, "confidence": frame["confidence"],
                         "why": "mistake: " + frame["error_types"].fillna("").astype(str), "label": given})  # fmt: skip


ERROR_COLUMNS = {"true_label": "true label", "predicted_label": "predicted", "true_labels": "true labels",
                 "predicted_labels": "predicted", "missed": "missed", "extra": "added", "confidence": "confidence",
                 "error_types": "error types", "class_distance": "distance", "text": "text"}  # fmt: skip
ERROR_WIDTHS = {"true_label": 11, "predicted_label": 11, "true_labels": 12, "predicted_labels": 12, "missed": 9,
                "extra": 9, "confidence": 9, "error_types": 18, "class_distance": 7}  # fmt: skip


def error_widths(columns) -> list[str]:
    """Column widths of the Errors table at any width: fixed shares for the short columns, the rest for the text."""
    shown = [c for c in ERROR_COLUMNS if c in columns]
    fixed = {c: ERROR_WIDTHS[c] for c in shown if c in ERROR_WIDTHS}
    return [f"{fixed.get(c, 100 - sum(fixed.values()))}%" for c in shown]


def error_view(frame: pd.DataFrame, colours: dict[str, str]):
    """The mistakes as the Errors tab shows them: true label, prediction, confidence and error types first (a
    multi-label model's true and predicted labels, those missed and those added), the text last (it wraps), label
    cells tinted in their class's colour (single-label)."""
    shown = frame[[c for c in ERROR_COLUMNS if c in frame.columns]].copy()
    shown["confidence"] = shown["confidence"].round(3)
    for column in ("error_types", "true_labels", "predicted_labels", "missed", "extra"):
        if column in shown:
            shown[column] = shown[column].fillna("").astype(str).str.replace(";", ", ")
    for column in ("true_labels", "predicted_labels"):  # a text with no label at all says so
        if column in shown:
            shown[column] = shown[column].replace("", NO_LABEL)
    single = "true_label" in shown  # a multi-label cell holds several names: no one colour to tint it with
    return tinted(shown.rename(columns=ERROR_COLUMNS), ["true label", "predicted"] if single else [], colours)


def tinted(frame: pd.DataFrame, columns: list[str], colours: dict[str, str]):
    """The frame with each label cell in `columns` on a light background of its class's colour (a pandas Styler,
    which gr.Dataframe shows with its styles); three decimals."""

    def tint(value):
        return f"background-color: {rgba(colours[value], 0.3)}" if value in colours else ""

    return frame.style.map(tint, subset=[c for c in columns if c in frame.columns]).format(precision=3)


class ApiError(ValueError):
    """A bad /api/classify request: the HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def api_texts(payload, limit: int) -> tuple[list[str], int | None, float | None]:
    """The texts, top_k and min_confidence of an /api/classify body ({"inputs": "text" or ["text", ...],
    "parameters": {"top_k": k, "min_confidence": p}}), or ApiError: 400 for a malformed body, 422 for an empty or
    over-long text or a min_confidence outside [0, 1), 413 for too many texts."""
    usage = 'send JSON like {"inputs": "a text"} or {"inputs": ["a text", "another"]}'
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ApiError(400, f"no inputs: {usage}")
    if "min_confidence" in payload:  # silently ignored, it would answer every text: say where it goes
        raise ApiError(400, 'min_confidence goes in parameters: send {"inputs": ..., "parameters": '
                            '{"min_confidence": 0.8}}')  # fmt: skip
    inputs = payload["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"inputs must be a string or a list of strings: {usage}")
    if not texts:
        raise ApiError(422, "inputs is an empty list: send at least one text")
    if len(texts) > MAX_ROWS:
        raise ApiError(413, f"{len(texts):,} texts in one request; the limit is {MAX_ROWS:,}: split them")
    for i, text in enumerate(texts):
        where = "the text" if isinstance(inputs, str) else f"inputs[{i}]"
        if not text.strip():
            raise ApiError(422, f"{where} is empty: send text to classify")
        if len(text) > limit:
            raise ApiError(422, f"{where} has {len(text):,} characters; the limit is {limit:,}: shorten or split it")
    parameters = payload.get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise ApiError(400, 'parameters must be an object, e.g. {"top_k": 1, "min_confidence": 0.8}')
    top_k, min_confidence = parameters.get("top_k"), parameters.get("min_confidence")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ApiError(400, f"parameters.top_k must be a whole number of at least 1, not {top_k!r}")
    if min_confidence is not None:
        if not isinstance(min_confidence, (int, float)) or isinstance(min_confidence, bool):
            raise ApiError(422, f"parameters.min_confidence must be a number in [0, 1), not {min_confidence!r}")
        try:
            check_min_confidence(min_confidence)
        except ValueError as err:
            raise ApiError(422, f"parameters.{err}") from None
    return [t.strip() for t in texts], top_k, min_confidence


def api_answer(answers: list[dict], top_k: int | None = None) -> list:
    """Each text's answer (`Classifier.answers`) as the JSON API gives it. Single-label: its classes as Hugging Face
    inference servers give them, label and score, most likely first, led by {"label": "uncertain", "score": its
    confidence} when it is below the minimum confidence. Multi-label: the answer itself (the labels over their
    thresholds, `label` joining them, `score` its confidence, `probabilities` most likely first, `thresholds`)."""
    out = []
    for answer in answers:
        ranked = sorted(answer["probabilities"].items(), key=lambda item: -item[1])[:top_k]
        if "labels" in answer:
            kept = {name: answer["thresholds"][name] for name, _ in ranked}
            out.append({**answer, "probabilities": dict(ranked), "thresholds": kept})
            continue
        row = [{"label": name, "score": p} for name, p in ranked]
        if answer["label"] == UNCERTAIN:
            row.insert(0, {"label": UNCERTAIN, "score": answer["score"]})
        out.append(row)
    return out


def report_headline(metrics: dict | None, model_id: str) -> str:
    """What a visitor wants first: accuracy (a multi-label model's macro F1) with its 95% interval, on which data and
    how many examples (and the test split's, when reported), then the model and its labels."""
    if not metrics:
        return f"No `{METRICS}` next to this model: evaluate it with `make evaluate` and push the run folder."
    scores = metrics.get("evaluation") or metrics.get("metrics") or {}
    link = model_link(model_id)
    n, data = metrics.get("eval_samples") or metrics.get("n"), metrics.get("data")
    multi = bool(metrics.get("multi_label"))
    key, title, show = ("f1_macro", "Macro F1", _decimal) if multi else ("accuracy", "Accuracy", _percent)
    lines = []
    if "value" in (scores.get(key) or {}):
        lines.append(f"## {title} {show(scores[key])}")
        where = f"the validation split of `{data}`" if metrics.get("test") is not None else f"`{data}`"
        extra = _headline_extra(scores, multi)
        lines.append(f"on the **{n:,}** examples of {where}{extra}" if n else f"on {where}{extra}")
    test = metrics.get("test") or {}
    if "value" in (test.get(key) or {}):
        extra = _headline_extra(test, multi) if multi else ""
        lines.append(f"\n**Test split:** {title if multi else title.lower()} {show(test[key])}{extra} on "
                     f"{metrics.get('test_samples'):,} examples (scored once, with the checkpoint validation "
                     "chose)")  # fmt: skip
    names = class_names(metrics, scores)
    scale = (metrics.get("label_set") or {}).get("scale")
    labels = "**labels (ordered):** " + " < ".join(scale) if scale else "**labels:** " + ", ".join(names)
    kind = " · several labels per text (each decided at its own threshold)" if multi else ""
    lines.append(f"\n**Model:** {link} · {labels}{kind}")
    return "\n".join(lines)


def _headline_extra(scores: dict, multi: bool) -> str:
    """What follows the headline figure: macro F1 for a single-label model; micro F1 and exact-match accuracy for a
    multi-label one."""
    shown = [("micro F1", "f1_micro", "{:.3f}"), ("exact match", "subset_accuracy", "{:.1%}")] if multi else [
        ("macro F1", "f1_macro", "{:.3f}")]  # fmt: skip
    return "".join(f" · {name} {fmt.format(scores[key]['value'])}" for name, key, fmt in shown
                   if "value" in (scores.get(key) or {}))  # fmt: skip


def report_plot_rows(plots: dict[str, Path]) -> list[list[str]]:
    """The report's pictures, row by row, among those pushed: the confusion matrix (a multi-label model's per-label
    charts) alone at the page's width, where its numbers can be read; the label co-occurrence picture; the
    reliability diagram beside the risk-coverage curve; then the training curves and sample predictions."""
    wide = ["confusion_matrix", *sorted(name for name in plots if name.startswith("per_label")), "label_cooccurrence"]
    rows = [[name] for name in wide if name in plots]
    pair = [name for name in ("reliability_diagram", "risk_coverage") if name in plots]
    return rows + ([pair] if pair else []) + [[name] for name in ("training_curves", "sample_predictions")
                                              if name in plots]  # fmt: skip


def model_link(model_id: str) -> str:
    """A Hub model as a link to its page; a local run folder by its name."""
    if is_hub_id(model_id):
        return f"[{model_id}](https://huggingface.co/{model_id})"
    return f"`{Path(model_id).name}` (local run folder)"


def metric_catalogue(metrics: dict, scores: dict, names: list[str]) -> list[dict]:
    """How the run's metrics are named, ordered and shown: the catalogue metrics.json recorded, its entries for this
    model's task (single- or multi-label; an entry without a task is for both). A run recorded before the catalogue
    gets every metric it scored but the per-class ones, as numbers, in the order it recorded them."""
    if metrics.get("metric_catalogue"):
        task = "multi" if metrics.get("multi_label") else "single"
        return [m for m in metrics["metric_catalogue"] if m.get("task", "both") in (task, "both")]
    per_class = {f"{metric}_{name}" for metric in _per_class_metrics(metrics) for name in names}
    return [{"key": key, "headline": True} for key in scores if key not in per_class]


def _per_class_metrics(metrics: dict) -> tuple[str, ...]:
    return PER_LABEL if metrics.get("multi_label") else PER_CLASS


def metrics_markdown(metrics: dict | None, model_id: str) -> str:
    """The Model report's full table: the headline metrics with their intervals (then any other averages), and
    precision, recall and F1 per class; validation and, when reported, test side by side; formatted as the run's
    metric catalogue says, numbers at three decimals at most. A multi-label model's per-label table adds each label's
    threshold, support, ROC AUC and PR AUC."""
    if not metrics:
        return ""
    scores = metrics.get("evaluation") or metrics.get("metrics") or {}
    test = metrics.get("test") or {}  # the held-out test split, scored once with the checkpoint validation chose
    names = class_names(metrics, scores)
    per_class = {f"{metric}_{name}" for metric in _per_class_metrics(metrics) for name in names}
    catalogue = {m["key"]: m for m in metric_catalogue(metrics, scores, names)}
    headline = [key for key, m in catalogue.items() if m.get("headline")]
    keys = [key for key in headline if key in scores] + [key for key in scores if key not in {*headline, *per_class}]
    columns = ["metric", *(["validation", "95% CI", "test", "95% CI"] if test else ["value", "95% CI"])]
    lines = ["### All metrics (95% bootstrap intervals)", "", *_table_head(columns)]
    for key in keys:
        if isinstance(scores[key], dict) and "value" in scores[key]:
            cells = [scores[key]] + ([test.get(key) or {}] if test else [])
            shown = (_value_and_interval(cell, catalogue.get(key)) for cell in cells)
            lines.append(f"| {key} | " + " | ".join(shown) + " |")
    per_label = _per_label_lines if metrics.get("multi_label") else _per_class_lines
    return "\n".join(lines + per_label(metrics, names, scores, test))


def _per_class_lines(metrics: dict, names: list[str], scores: dict, test: dict) -> list[str]:
    rows = [name for name in names if any(f"{metric}_{name}" in scores for metric in PER_CLASS)]
    if not rows:
        return []
    splits, prefixes = ([scores, test], ["", "test "]) if test else ([scores], [""])
    columns = ["class", *(prefix + metric for prefix in prefixes for metric in PER_CLASS)]
    lines = ["", "**Per class**" + (" (validation, then test)" if test else ""), "", *_table_head(columns)]
    for name in rows:
        cells = [_value(split.get(f"{metric}_{name}")) for split in splits for metric in PER_CLASS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _per_label_lines(metrics: dict, names: list[str], scores: dict, test: dict) -> list[str]:
    """A multi-label model's table: one row per label, its threshold and its scores at it (and test F1)."""
    rows = [name for name in names if any(f"{metric}_{name}" in scores for metric in PER_LABEL)]
    if not rows:
        return []
    thresholds = (metrics.get("thresholds") or {}).get("per_label") or {}
    columns = ["label", "threshold", *PER_LABEL, *(["test f1"] if test else [])]
    lines = ["", "**Per label** (validation, at each label's threshold)", "", *_table_head(columns)]
    for name in rows:
        cells = [f"{thresholds[name]:.2f}" if name in thresholds else ""]
        cells += [_value(scores.get(f"{metric}_{name}"), {"format": "count"} if metric == "support" else None)
                  for metric in PER_LABEL]  # fmt: skip
        cells += [_value(test.get(f"f1_{name}"))] if test else []
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def decisions_markdown(metrics: dict | None, coverage: dict | None = None) -> str:
    """How the model's scores turn into answers, as far as metrics.json records it (older runs record none): a
    multi-label model's thresholds against one global threshold and 0.5, calibration (ECE before and after), and
    the risk-coverage figures (how accurate the model is on the texts it is most sure of; `coverage`, by split,
    when given, else metrics.json's)."""
    metrics = metrics or {}
    parts = [_thresholds_lines(metrics.get("thresholds")), _calibration_lines(metrics.get("calibration")),
             _coverage_lines(coverage or metrics.get("risk_coverage"))]  # fmt: skip
    return "\n".join(line for part in parts for line in part)


def _number(value) -> float | None:
    """A recorded figure, bare or as {"value": x}."""
    value = value.get("value") if isinstance(value, dict) else value
    return float(value) if isinstance(value, (int, float)) else None


def _thresholds_lines(thresholds: dict | None) -> list[str]:
    if not thresholds:
        return []
    tuned, objective = thresholds.get("tuned_on", "validation"), thresholds.get("objective")
    how = f"tuned on {tuned}" + (f" ({objective})" if objective else "")
    lines = ["### Decision thresholds", "", f"Each label has its own threshold, {how}: a label is chosen when its "
             "probability is at or over it (the per-label table lists them)."]  # fmt: skip
    rules = {"per_label": "per-label thresholds", "global": "one global threshold", "0.5": "0.5 for every label"}
    if _number(thresholds.get("global")) is not None:
        rules["global"] += f" ({_number(thresholds['global']):.2f})"
    results = thresholds.get("results") or {}
    if results:
        lines += ["", *_table_head(["rule", *(f"{split} {m}" for split in results for m in ("F1 macro", "F1 micro"))])]
        for rule, name in rules.items():
            cells = [_number((results[split].get(rule) or {}).get(metric)) for split in results
                     for metric in ("f1_macro", "f1_micro")]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")
    return [*lines, ""]


def _calibration_lines(calibration: dict | None) -> list[str]:
    if not calibration:
        return []
    if calibration.get("method", "none") == "none":
        return ["### Calibration", "", "Not calibrated: the scores are the model's own (trained with "
                "`--calibrate none`).", ""]  # fmt: skip
    value = calibration.get("temperature")
    if isinstance(value, dict) and value:
        shown = f"one per label, {min(value.values()):.2f} to {max(value.values()):.2f}"
    else:
        shown = f"T = {_number(value):.2f}" if _number(value) is not None else "T"
    lines = ["### Calibration", "", f"Temperature scaling ({shown}), fitted on validation and folded into the model's "
             "last layer: the probabilities every client gets are the calibrated ones."]  # fmt: skip
    ece = calibration.get("ece") or {}
    if ece:
        lines += ["", *_table_head(["split", "ECE before", "ECE after"])]
        for split, pair in ece.items():
            before, after = _number(pair.get("before")), _number(pair.get("after"))
            lines.append(f"| {split} | " + " | ".join("" if v is None else f"{v:.3f}" for v in (before, after)) + " |")
    return [*lines, ""]


def _coverage_lines(coverage: dict | None) -> list[str]:
    """The risk-coverage table: recorded for one split ({"points": ...}) or per split ({split: {"points": ...}})."""
    if not coverage:
        return []
    by_split = {"": coverage} if "points" in coverage else {k: v for k, v in coverage.items() if isinstance(v, dict)}
    lines = ["### Answering only when sure", "", "Texts sorted by the model's confidence: its accuracy on the share it "
             "is most sure of (coverage), and the `min_confidence` that answers that share."]  # fmt: skip
    for split, found in by_split.items():
        points = {round(float(p["coverage"]), 2): p for p in found.get("points") or []}
        if not points:
            continue
        measure = "exact-match accuracy" if found.get("accuracy_measure") == "subset_accuracy" else "accuracy"
        head = f"**{split}**: " if split else ""
        if 0.9 in points:
            head += f"at 90% coverage: **{points[0.9]['accuracy']:.1%} {measure}**"
        if _number(found.get("aurc")) is not None:
            head += f" · area under the risk-coverage curve {_number(found['aurc']):.3f} (lower is better)"
        lines += ["", head, "", *_table_head(["coverage", measure, "min_confidence"])]
        for c, point in sorted(points.items()):
            lines.append(f"| {c:.0%} | {point['accuracy']:.1%} | {float(point['min_confidence']):.3f} |")
    return [*lines, ""]


def _decimal(score: dict) -> str:
    interval = f" (95% CI {score['ci_low']:.3f}–{score['ci_high']:.3f})" if "ci_low" in score else ""
    return f"{score['value']:.3f}{interval}"


def _percent(score: dict) -> str:
    interval = f" (95% CI {score['ci_low']:.1%}–{score['ci_high']:.1%})" if "ci_low" in score else ""
    return f"{score['value']:.1%}{interval}"


def class_names(metrics: dict, scores: dict) -> list[str]:
    """Class names in id order: `label_set`, else `labels`, else read from the per-class F1 keys."""
    names = (metrics.get("label_set") or {}).get("names") or metrics.get("labels")
    if names:
        return [str(name) for name in names]
    return [key[3:] for key in scores if key.startswith("f1_") and key[3:] not in ("macro", "weighted", "micro")]


def _table_head(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def metric_text(value: float, metric: dict | None = None) -> str:
    """A metric's value as its catalogue entry says: a decimal (at most three places here), a percentage or a count."""
    metric = metric or {}
    digits, kind = min(metric.get("digits", 3), 3), metric.get("format", "number")
    if kind == "count":
        return f"{value:,.0f}"
    return f"{value:.{digits}%}" if kind == "percent" else f"{value:.{digits}f}"


def _value(score: dict | None, metric: dict | None = None) -> str:
    return metric_text(score["value"], metric) if isinstance(score, dict) and "value" in score else ""


def _value_and_interval(score: dict, metric: dict | None = None) -> str:
    interval = (
        f"{metric_text(score['ci_low'], metric)}–{metric_text(score['ci_high'], metric)}" if "ci_low" in score else ""
    )
    return _value(score, metric) + " | " + interval


def colour_map(metrics: dict | None, labels: list[str]) -> dict[str, str]:
    """One colour per class for every tab: as in the run's plots (`label_set.colours`), else from the shared palette
    (ordered labels along the red-to-blue scale, two labels red and blue, others Okabe-Ito). More labels than those
    have distinct colours (GoEmotions' 28) take MANY_COLOURS, so no two labels share one."""
    label_set = (metrics or {}).get("label_set") or {}
    given = label_set.get("colours") or {}
    if all(name in given for name in labels):
        colours = {name: given[name] for name in labels}
    else:
        scale = label_set.get("scale")
        fallback = class_colours(scale, True) if scale else class_colours(labels, bool(label_set.get("ordinal")))
        colours = {name: given.get(name) or fallback[name] for name in labels}
    if len(set(colours.values())) < len(labels):
        return {name: MANY_COLOURS[i % len(MANY_COLOURS)] for i, name in enumerate(labels)}
    return colours


def polarity_sides(metrics: dict | None, labels: list[str]) -> dict[str, str] | None:
    """Each label's side (negative, neutral or positive) where metrics.json's label set records polarity on both
    sides (the analysis reads it from the names); None where the names carry none (GoEmotions' 28 emotions)."""
    label_set = (metrics or {}).get("label_set") or {}
    positive, negative = set(label_set.get("positive") or []), set(label_set.get("negative") or [])
    if not positive or not negative:
        return None
    return {name: "positive" if name in positive else "negative" if name in negative else "neutral" for name in labels}


def explorer_figure(points: pd.DataFrame, colour_by: str, colours: dict[str, str], axis_titles: list[str],
                    you: dict | None = None, neighbours: pd.DataFrame | None = None):  # fmt: skip
    """The validation set in 2-D as a plotly figure: one trace per class (or correct / incorrect), mistakes drawn as
    crosses, the visitor's sentence as a large black star and its neighbours ringed; hovering shows the text, its
    true label, the prediction and the confidence."""
    import plotly.graph_objects as go

    fig = go.Figure()
    hover = ("%{customdata[0]}<br>true: <b>%{customdata[1]}</b> · predicted: <b>%{customdata[2]}</b> "
             "(%{customdata[3]:.1%})<extra></extra>")  # fmt: skip
    groups = {"outcome": OUTCOME_COLOURS, "side": SIDE_COLOURS}.get(colour_by, colours)
    for name, colour in groups.items():
        part = points[points[colour_by] == name]
        if part.empty:
            continue
        part = part.sort_values("correct", ascending=False, kind="stable")  # the legend shows the first point's symbol
        symbols = np.where(part["correct"], "circle", "x-thin-open").tolist()
        marker = {
            "color": colour,
            "size": 7,
            "opacity": 0.75,
            "symbol": symbols,
            "line": {"width": 1.5, "color": colour},
        }
        fig.add_trace(go.Scatter(x=part["x"].tolist(), y=part["y"].tolist(), mode="markers", marker=marker,
                                 name=f"{name} ({len(part)})", customdata=_hover_data(part),
                                 hovertemplate=hover))  # fmt: skip
    if neighbours is not None and len(neighbours):
        marker = {"symbol": "circle-open", "size": 15, "color": YOU, "line": {"width": 2.5}}
        fig.add_trace(go.Scatter(x=neighbours["x"].tolist(), y=neighbours["y"].tolist(), mode="markers", marker=marker,
                                 name=f"{len(neighbours)} nearest neighbours", customdata=_hover_data(neighbours),
                                 hovertemplate="neighbour: " + hover))  # fmt: skip
    if you is not None:
        marker = {"symbol": "star", "size": 24, "color": YOU, "line": {"width": 1.5, "color": "white"}}
        fig.add_trace(go.Scatter(
            x=[float(you["x"])], y=[float(you["y"])], mode="markers", marker=marker,
            name=f"your sentence: {you['predicted']} ({you['confidence']:.1%})",
            customdata=[[_wrap(you["text"]), "?", you["predicted"], you["confidence"]]],
            hovertemplate="<b>your sentence</b><br>%{customdata[0]}<br>predicted: <b>%{customdata[2]}</b> "
            "(%{customdata[3]:.1%})<extra></extra>",
        ))  # fmt: skip
    # A few groups read best in one row above the plot; many (28 labels) in a column beside it, one per line.
    legend = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1, "title": None}
    if len(fig.data) > 8:
        legend = {"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.02, "font": {"size": 11},
                  "title": {"text": "double-click one to show it alone"}}  # fmt: skip
    fig.update_layout(
        template="plotly_white", height=max(640, 20 * len(fig.data) + 120) if len(fig.data) > 8 else 560,
        hovermode="closest", legend=legend,
        margin={"l": 60, "r": 20, "t": 40 if len(fig.data) > 8 else 80, "b": 60},
        xaxis_title=axis_titles[0], yaxis_title=axis_titles[1],
    )  # fmt: skip
    return fig


def _wrap(text: str, width: int = 70) -> str:
    return "<br>".join(textwrap.wrap(escape(text, quote=False), width)[:6])


def _hover_data(part: pd.DataFrame) -> list[list]:
    columns = zip(part["text"], part["label"], part["predicted"], part["confidence"])
    return [[_wrap(text), label, predicted, float(confidence)] for text, label, predicted, confidence in columns]


def behavioural_table(report: dict) -> pd.DataFrame | None:
    """One row per behavioural test, those that ran and those skipped (status says why); None when there are none."""
    skipped = report.get("skipped") or []
    if isinstance(skipped, str):  # older runs: one reason for every test
        skipped = [{"name": "all", "reason": skipped}]
    rows = [{**test, "status": "ran"} for test in report.get("tests") or []]
    rows += [{**test, "status": f"skipped: {test.get('reason', '')}"} for test in skipped]
    if not rows:
        return None
    frame = pd.DataFrame(rows).reindex(columns=BEHAVIOURAL_COLUMNS)
    frame["failure_rate"] = pd.to_numeric(frame["failure_rate"]).round(3)
    return frame.astype({"n": "Int64", "failures": "Int64", "failure_rate": "Float64"}).fillna(
        {"name": "", "type": "", "description": ""}
    )


# --- artifacts next to the model ---


@dataclass
class Artifacts:
    """What the run folder (or Hub repo) holds besides the model; each is None when missing."""

    folder: Path
    metrics: dict | None = None
    errors: pd.DataFrame | None = None
    points: pd.DataFrame | None = None  # validation texts with label, predicted, correct
    embeddings: np.ndarray | None = None
    slices: pd.DataFrame | None = None
    behavioral: pd.DataFrame | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    widget: list[str] = field(default_factory=list)
    coverage: dict | None = None  # risk-coverage curves by split (`coverage_curves`)

    @classmethod
    def read(cls, folder: Path) -> Artifacts:
        found = cls(folder)
        if (folder / METRICS).is_file():
            found.metrics = json.loads((folder / METRICS).read_text())
        if (folder / INCORRECT).is_file():
            found.errors = pd.read_csv(folder / INCORRECT, keep_default_na=False)
        if (folder / EMBEDDINGS).is_file():
            table = pd.read_parquet(folder / EMBEDDINGS)
            found.embeddings = np.stack(table.pop("embedding").to_numpy()).astype(np.float32)
            found.points = table
        if (folder / PREDICTIONS).is_file():  # texts, labels and confidences (embedded on first use)
            predictions = pd.read_parquet(folder / PREDICTIONS)
            if found.points is None:
                found.points = predictions
            elif "confidence" in predictions and len(predictions) == len(found.points):  # the same rows, in order
                found.points["confidence"] = predictions["confidence"].to_numpy()
        if (folder / SLICES).is_file():
            found.slices = pd.read_csv(folder / SLICES)
        if (folder / BEHAVIOURAL).is_file():
            found.behavioral = behavioural_table(json.loads((folder / BEHAVIOURAL).read_text()))
        found.plots = {p.stem: p for p in sorted((folder / PLOTS).glob("*.png"))} if (folder / PLOTS).is_dir() else {}
        found.widget = widget_texts(folder / CARD, found.points)
        found.coverage = coverage_curves(folder, found.metrics)
        return found


def coverage_curves(folder: Path, metrics: dict | None) -> dict | None:
    """metrics.json's risk-coverage curve (validation's), with the test analysis's (evaluations/test/metrics.json)
    beside it when pushed: {split: curve}; a record already by split as it is; None for older runs."""
    curves = (metrics or {}).get("risk_coverage")
    if not curves or "points" not in curves:
        return curves
    test_file = folder / EVALUATIONS / "test" / METRICS
    test = json.loads(test_file.read_text()).get("risk_coverage") if test_file.is_file() else None
    return {"validation": curves, **({"test": test} if test else {})}


def widget_texts(readme: Path, points: pd.DataFrame | None, n: int = 4) -> list[str]:
    """Example sentences: the model card's widget examples, else short validation sentences."""
    if readme.is_file():
        from huggingface_hub import ModelCard

        try:
            widget = getattr(ModelCard.load(readme).data, "widget", None) or []
        except Exception:  # noqa: BLE001 - a hand-edited card must not stop the app
            widget = []
        texts = [w["text"] for w in widget if isinstance(w, dict) and w.get("text")]
        if texts:
            return texts[:n]
    if points is None or points.empty:
        return ["A gorgeous, witty and moving film.", "Two hours I will never get back."]
    words = points["text"].str.split().str.len()
    return points.loc[words.between(6, 20), "text"].head(n).str.strip().tolist()
