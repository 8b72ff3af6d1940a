"""Sentiment model explorer: live prediction with explanations, batch scoring, embeddings, errors, the model report.

MODEL_ID is a Hub repo id or a local run folder (default `runs/latest`). Run with `python app.py` (or `make space`).
Texts longer than the model reads at once are scored whole, in overlapping windows, up to a limit that follows the
model's max_length (`char_limit`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from backend import (
    EXPLANATION_METHOD,
    Artifacts,
    Projection,
    SentimentModel,
    batch_table,
    char_limit,
    check_text,
    colour_map,
    filter_errors,
    highlights,
    label_value,
    locate,
    metrics_markdown,
    nearest,
    parse_lines,
    parse_upload,
    window_note,
)

MODEL_ID = os.environ.get("MODEL_ID", "runs/latest")
FOLDER = locate(MODEL_ID)
MODEL = SentimentModel(FOLDER, long_text="chunk")
LIMIT = char_limit(MODEL.max_length)  # characters per text
ART = Artifacts.read(FOLDER)
EXPORTS = Path(tempfile.mkdtemp(prefix="sentiment-space-"))
COLOR_BY = {"true label": "label", "predicted label": "predicted", "correct / incorrect": "outcome"}
_explorer: dict = {}  # the projection, computed once (on first use when only texts were pushed)


def _fail(err: ValueError):
    return gr.Error(str(err), print_exception=False)


# --- Predict ---


def predict(text: str) -> dict[str, float]:
    """Class probabilities for one text (the `/predict` endpoint)."""
    try:
        text = check_text(text, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    return label_value(MODEL.predict_proba([text])[0], MODEL.labels)


def explain(text: str) -> tuple[list[tuple[str, float]], str]:
    """Per-word attributions and the latency of one forward pass."""
    try:
        text = check_text(text, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    words, scores, probs, latency_ms, windows = MODEL.explain(text)
    label = MODEL.labels[int(probs.argmax())]
    if windows > 1:
        note = (f"**{label}** ({probs.max():.1%}) · scoring took **{latency_ms:.1f} ms** · "
                f"{window_note(windows, MODEL.max_length)}")  # fmt: skip
    else:
        note = (f"**{label}** ({probs.max():.1%}) · one forward pass took **{latency_ms:.1f} ms** · highlights: "
                f"{EXPLANATION_METHOD} (red supports *{label}*, purple speaks against it)")  # fmt: skip
    return highlights(words, scores), note


# --- Batch ---


def score_batch(lines: str, upload) -> tuple[pd.DataFrame, str]:
    """Score pasted lines or an uploaded .txt/.csv/.tsv; returns the table and a CSV to download."""
    try:
        texts = parse_upload(upload, LIMIT) if upload else parse_lines(lines, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    table = batch_table(texts, MODEL.predict_proba(texts), MODEL.labels)
    path = EXPORTS / f"predictions-{time.time_ns()}.csv"
    table.to_csv(path, index=False)
    return table, str(path)


# --- Embedding explorer ---


def _explorer_state() -> dict | None:
    if not _explorer and ART.points is not None:
        points = ART.points.copy()
        embeddings = ART.embeddings
        if embeddings is None:
            embeddings = MODEL.score(points["text"].tolist(), embeddings=True).embeddings
        projection = Projection.fit(embeddings)
        xy = projection.transform(embeddings)
        points["x"], points["y"] = xy[:, 0], xy[:, 1]
        points["outcome"] = np.where(points["correct"], "correct", "incorrect")
        points["text"] = points["text"].str.strip()
        _explorer.update(points=points, embeddings=embeddings, projection=projection)
    return _explorer or None


def explore(sentence: str, color_by: str, k: float) -> tuple[pd.DataFrame, pd.DataFrame, str, dict]:
    """The validation set in 2-D (PCA), with your sentence placed on it and its nearest neighbours listed."""
    state = _explorer_state()
    if state is None:
        raise gr.Error("No embeddings.parquet or predictions.parquet next to this model: push the run folder "
                       "with its analysis files to explore embeddings.", print_exception=False)  # fmt: skip
    points = state["points"]
    shown = points[["x", "y", "text", "label", "predicted", "outcome"]].copy()
    shown["color"] = shown[COLOR_BY.get(color_by, "label")]
    columns = ["rank", "text", "label", "predicted", "similarity"]
    neighbours = pd.DataFrame(columns=columns)
    note = f"{len(points)} validation sentences, PCA of the mean-pooled last hidden state."
    if sentence and sentence.strip():
        try:
            sentence = check_text(sentence, LIMIT)
        except ValueError as err:
            raise _fail(err) from None
        scored = MODEL.score([sentence], embeddings=True)
        probs, pooled = scored.probs, scored.embeddings
        x, y = state["projection"].transform(pooled)[0]
        label = MODEL.labels[int(probs[0].argmax())]
        you = pd.DataFrame([{"x": x, "y": y, "text": sentence, "label": "?", "predicted": label,
                             "outcome": "your sentence", "color": "your sentence"}])  # fmt: skip
        shown = pd.concat([shown, you], ignore_index=True)
        idx, sims = nearest(pooled[0], state["embeddings"], int(k))
        neighbours = points.iloc[idx][["text", "label", "predicted"]].assign(similarity=sims.round(4))
        neighbours.insert(0, "rank", range(1, len(idx) + 1))
        note += (
            f" Your sentence: **{label}** ({probs[0].max():.1%}); neighbours by cosine similarity in the full space."
        )
    neighbours = neighbours.reset_index(drop=True)
    return shown, neighbours, note, {"points": shown, "neighbours": neighbours}


def export_selection(shown: dict | None) -> str:
    """A CSV of what the last Show displayed: the neighbours when there are any, otherwise every plotted point."""
    if not shown:
        raise gr.Error("Nothing to export yet: press Show first.", print_exception=False)
    chosen = shown["neighbours"] if len(shown["neighbours"]) else shown["points"]
    path = EXPORTS / f"selection-{time.time_ns()}.csv"
    pd.DataFrame(chosen).to_csv(path, index=False)
    return str(path)


# --- Errors ---


def browse_errors(error_type: str, min_confidence: float) -> pd.DataFrame:
    if ART.errors is None:
        raise gr.Error("No incorrect_predictions.csv next to this model.", print_exception=False)
    return filter_errors(ART.errors, error_type, min_confidence)


def explain_row(table: pd.DataFrame, evt: gr.SelectData) -> tuple[list[tuple[str, float]], str]:
    text = str(pd.DataFrame(table).iloc[evt.index[0]]["text"])
    return explain(text)


# --- The app ---

ERROR_TYPES = ["all"]
if ART.errors is not None:
    ERROR_TYPES += sorted({tag for tags in ART.errors["error_types"] for tag in str(tags).split(";") if tag})

with gr.Blocks(title="Sentiment model explorer") as demo:
    gr.Markdown(f"# Sentiment model explorer\nModel: `{MODEL_ID}` · labels: {', '.join(MODEL.labels)}")
    with gr.Tab("Predict"):
        text = gr.Textbox(label="Text", placeholder="Type a sentence", max_length=LIMIT, lines=2)
        button = gr.Button("Predict", variant="primary")
        label = gr.Label(label="Prediction", num_top_classes=len(MODEL.labels))
        note = gr.Markdown()
        words = gr.HighlightedText(label="Which words drove it", combine_adjacent=False)
        if ART.widget:
            gr.Examples(examples=[[t] for t in ART.widget], inputs=[text])
        button.click(predict, text, label, api_name="predict", concurrency_limit=4).then(
            explain, text, [words, note], api_name="explain"
        )
        text.submit(predict, text, label, api_visibility="private", concurrency_limit=4).then(
            explain, text, [words, note], api_visibility="private"
        )
    with gr.Tab("Batch"):
        lines = gr.Textbox(label="One text per line", lines=6)
        upload = gr.File(label="…or a .txt / .csv / .tsv file", file_types=[".txt", ".csv", ".tsv"], type="filepath")
        run_batch = gr.Button("Score", variant="primary")
        table = gr.Dataframe(label="Predictions", interactive=False)
        download = gr.File(label="Download CSV")
        run_batch.click(score_batch, [lines, upload], [table, download], api_name="batch", concurrency_limit=1)
    with gr.Tab("Embedding explorer"):
        if ART.points is None:
            gr.Markdown("This model was pushed without `embeddings.parquet` or `predictions.parquet`, so there is "
                        "nothing to explore. Push the whole run folder (`make push`).")  # fmt: skip
        with gr.Row():
            sentence = gr.Textbox(label="Place your sentence", scale=3, max_length=LIMIT)
            color_by = gr.Dropdown(list(COLOR_BY), value="true label", label="Colour by", scale=1)
            k = gr.Slider(1, 25, value=8, step=1, label="Neighbours", scale=1)
        go = gr.Button("Show", variant="primary")
        plot = gr.ScatterPlot(x="x", y="y", color="color", tooltip=["text", "label", "predicted"], height=480,
                              color_map=colour_map(ART.metrics, MODEL.labels))  # fmt: skip
        explore_note = gr.Markdown()
        neighbours = gr.Dataframe(label="Nearest validation sentences", interactive=False)
        export = gr.Button("Export selection as CSV")
        exported = gr.File(label="Selection")
        shown = gr.State()
        go.click(explore, [sentence, color_by, k], [plot, neighbours, explore_note, shown], api_name="explore")
        export.click(export_selection, shown, exported, api_name="export_selection")
    with gr.Tab("Errors"):
        if ART.errors is None:
            gr.Markdown("No `incorrect_predictions.csv` next to this model.")
        with gr.Row():
            error_type = gr.Dropdown(ERROR_TYPES, value="all", label="Error type")
            min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum confidence")  # k classes: from 1/k up
        errors = gr.Dataframe(value=ART.errors, label="Mistakes on the validation set (click a row)", interactive=False)
        row_words = gr.HighlightedText(label="Explanation of the selected row", combine_adjacent=False)
        row_note = gr.Markdown()
        error_type.change(browse_errors, [error_type, min_conf], errors, api_name="errors")
        min_conf.release(browse_errors, [error_type, min_conf], errors, api_visibility="private")
        errors.select(explain_row, errors, [row_words, row_note], api_visibility="private")
    with gr.Tab("Model report"):
        gr.Markdown(metrics_markdown(ART.metrics, MODEL_ID))
        with gr.Row():
            for name in ("confusion_matrix", "reliability_diagram"):
                if name in ART.plots:
                    gr.Image(str(ART.plots[name]), label=name.replace("_", " "), show_label=True)
        for name in ("training_curves", "sample_predictions"):
            if name in ART.plots:
                gr.Image(str(ART.plots[name]), label=name.replace("_", " "))
        if ART.slices is not None:
            gr.Dataframe(ART.slices.round(4), label="Accuracy by slice (Wilson 95% CI)", interactive=False)
        if ART.behavioral is not None:
            gr.Dataframe(ART.behavioral, label="Behavioural tests (run and skipped)", interactive=False)
        if not ART.plots and ART.slices is None and ART.behavioral is None:
            gr.Markdown("No plots, slices or behavioural tests were pushed with this model.")


def launch(**kwargs):
    """Queue with bounded concurrency and length, upload limit, no extra file access; returns launch()'s result."""
    demo.queue(default_concurrency_limit=2, max_size=64)
    options = {"server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), "max_file_size": "2mb",
               "allowed_paths": [str(EXPORTS)], "footer_links": ["api"], **kwargs}  # fmt: skip
    return demo.launch(**options)


if __name__ == "__main__":
    launch()
