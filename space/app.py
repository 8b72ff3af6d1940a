"""Sentiment model explorer: live prediction with explanations, batch scoring, embeddings, errors, the model report,
and a JSON API for programs.

MODEL_ID is a Hub repo id or a local run folder (default `runs/latest`). Run with `python app.py` (or `make space`):
one process serves the Gradio UI at / and `POST /api/classify` (FastAPI, with the Gradio app mounted on it), on
GRADIO_SERVER_NAME:GRADIO_SERVER_PORT as a Gradio Space sets them. Texts longer than the model reads at once are
scored whole, in overlapping windows, up to a limit that follows the model's max_length (`char_limit`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import gradio as gr
import numpy as np
import pandas as pd
import uvicorn
from backend import (
    EXPLANATION_METHOD,
    MAX_FILE_BYTES,
    ApiError,
    Artifacts,
    Projection,
    SentimentModel,
    api_answer,
    api_texts,
    batch_table,
    char_limit,
    check_text,
    colour_map,
    error_view,
    error_widths,
    explorer_figure,
    filter_errors,
    label_value,
    legend_html,
    locate,
    metrics_markdown,
    model_link,
    nearest,
    parse_lines,
    parse_upload,
    report_headline,
    tinted,
    window_note,
    words_html,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MODEL_ID = os.environ.get("MODEL_ID", "runs/latest")
try:
    FOLDER = locate(MODEL_ID)
except ValueError as err:  # no model there: the one line and exit code every command gives, not a traceback
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
MODEL = SentimentModel(FOLDER, long_text="chunk")
LIMIT = char_limit(MODEL.max_length)  # characters per text
ART = Artifacts.read(FOLDER)
COLOURS = colour_map(ART.metrics, MODEL.labels)  # one colour per class in every tab
EXPORTS = Path(tempfile.mkdtemp(prefix="sentiment-space-"))
COLOR_BY = {"true label": "label", "predicted label": "predicted", "correct / incorrect": "outcome"}
NEIGHBOUR_COLUMNS = ["rank", "text", "label", "predicted", "similarity"]
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


def explain(text: str) -> tuple[str, str]:
    """The words coloured by the class each pushes toward (HTML), and a line with the label and latency."""
    try:
        text = check_text(text, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    found = MODEL.explain(text)
    label = MODEL.labels[int(found.probs.argmax())]
    head = f"**{label}** ({found.probs.max():.1%}) · "
    if found.windows > 1:
        note = head + f"scoring took **{found.latency_ms:.1f} ms** · {window_note(found.windows, MODEL.max_length)}"
    else:
        note = head + (f"one forward pass took **{found.latency_ms:.1f} ms** · highlights: {EXPLANATION_METHOD}; each "
                       "word in the colour of the class it pushes toward, stronger for a larger effect")  # fmt: skip
    return words_html(found, MODEL.labels, COLOURS), note


def predict_tab() -> None:
    """A text's label on Predict or Enter, then the words that drove it."""
    with gr.Tab("Predict"):
        text = gr.Textbox(label="Text", placeholder="Type a sentence", max_length=LIMIT, lines=2)
        button = gr.Button("Predict", variant="primary")
        label = gr.Label(label="Prediction", num_top_classes=len(MODEL.labels))
        note = gr.Markdown()
        words = gr.HTML(label="Which words drove it", elem_id="words")
        if ART.widget:
            gr.Examples(examples=[[t] for t in ART.widget], inputs=[text])
        button.click(predict, text, label, api_name="predict", concurrency_limit=4).then(
            explain, text, [words, note], api_name="explain"
        )
        text.submit(predict, text, label, api_visibility="private", concurrency_limit=4).then(
            explain, text, [words, note], api_visibility="private"
        )


# --- Batch ---


def score_batch(lines: str, upload):
    """Score pasted lines or an uploaded .txt/.csv/.tsv; returns the table and a CSV to download."""
    try:
        texts = parse_upload(upload, LIMIT) if upload else parse_lines(lines, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    table = batch_table(texts, MODEL.predict_proba(texts), MODEL.labels)
    path = EXPORTS / f"predictions-{time.time_ns()}.csv"
    table.to_csv(path, index=False)
    return tinted(table, ["label"], COLOURS), str(path)


def batch_tab() -> None:
    """Pasted lines or an uploaded file scored into a table and a CSV to download."""
    with gr.Tab("Batch"):
        lines = gr.Textbox(label="One text per line", lines=6)
        upload = gr.File(label="…or a .txt / .csv / .tsv file", file_types=[".txt", ".csv", ".tsv"], type="filepath",
                         height=140, elem_id="upload")  # fmt: skip
        run_batch = gr.Button("Score", variant="primary")
        table = gr.Dataframe(label="Predictions", interactive=False, wrap=True, elem_id="predictions")
        download = gr.File(label="Download CSV", elem_id="download")
        run_batch.click(score_batch, [lines, upload], [table, download], api_name="batch", concurrency_limit=1)


# --- Embedding explorer ---


def _explorer_state() -> dict | None:
    if not _explorer and ART.points is not None:
        points = ART.points.copy()
        embeddings = ART.embeddings
        if embeddings is None or "confidence" not in points:
            scored = MODEL.score(points["text"].tolist(), embeddings=True)
            embeddings = scored.embeddings if embeddings is None else embeddings
            points["confidence"] = points.get("confidence", pd.Series(scored.probs.max(1), index=points.index))
        projection = Projection.fit(embeddings)
        xy = projection.transform(embeddings)
        points["x"], points["y"] = xy[:, 0], xy[:, 1]
        points["correct"] = points["correct"].astype(bool)
        points["outcome"] = np.where(points["correct"], "correct", "incorrect")
        points["text"] = points["text"].str.strip()
        _explorer.update(points=points, embeddings=embeddings, projection=projection)
    return _explorer or None


def explore(sentence: str, color_by: str, k: float):
    """The validation set in 2-D (PCA) and, for a sentence, where it lands and its nearest neighbours (cosine
    similarity in the full embedding space). Returns the plotly figure, the neighbours, a note and what to export."""
    state = _explorer_state()
    if state is None:
        raise gr.Error("No embeddings.parquet or predictions.parquet next to this model: push the run folder "
                       "with its analysis files to explore embeddings.", print_exception=False)  # fmt: skip
    points, projection = state["points"], state["projection"]
    colour_by = COLOR_BY.get(color_by, "label")
    neighbours = pd.DataFrame(columns=NEIGHBOUR_COLUMNS)
    you, near = None, None
    note = (f"**{len(points):,} validation sentences**, PCA of the mean-pooled last hidden state; crosses are "
            "the model's mistakes. Type a sentence and press Show to place it (★) and ring its nearest "
            "neighbours.")  # fmt: skip
    if sentence and sentence.strip():
        try:
            sentence = check_text(sentence, LIMIT)
        except ValueError as err:
            raise _fail(err) from None
        scored = MODEL.score([sentence], embeddings=True)
        probs, pooled = scored.probs[0], scored.embeddings
        x, y = projection.transform(pooled)[0]
        label = MODEL.labels[int(probs.argmax())]
        you = {"x": x, "y": y, "text": sentence, "predicted": label, "confidence": float(probs.max())}
        idx, sims = nearest(pooled[0], state["embeddings"], int(k))
        near = points.iloc[idx]
        neighbours = near[["text", "label", "predicted"]].assign(similarity=sims.round(4))
        neighbours.insert(0, "rank", range(1, len(idx) + 1))
        note = (f"Your sentence (★): **{label}** ({probs.max():.1%}). Its {len(idx)} nearest neighbours by cosine "
                f"similarity in the full {pooled.shape[1]}-dimensional space are ringed, and listed below; the 2-D "
                "projection can put a neighbour farther away than it is.")  # fmt: skip
    figure = explorer_figure(points, colour_by, COLOURS, projection.axis_titles(), you, near)
    neighbours = neighbours.reset_index(drop=True)
    shown = points[["x", "y", "text", "label", "predicted", "confidence", "outcome"]]
    return figure, neighbours, note, {"points": shown, "neighbours": neighbours}


def export_selection(shown: dict | None) -> str:
    """A CSV of what the last Show displayed: the neighbours when there are any, otherwise every plotted point."""
    if not shown:
        raise gr.Error("Nothing to export yet: press Show first.", print_exception=False)
    chosen = shown["neighbours"] if len(shown["neighbours"]) else shown["points"]
    path = EXPORTS / f"selection-{time.time_ns()}.csv"
    pd.DataFrame(chosen).to_csv(path, index=False)
    return str(path)


def explorer_tab(page: gr.Blocks) -> None:
    """The validation set in 2-D, drawn as `page` opens, with a sentence placed among its neighbours."""
    with gr.Tab("Embedding explorer"):
        if ART.points is None:
            gr.Markdown("This model was pushed without `embeddings.parquet` or `predictions.parquet`, so there is "
                        "nothing to explore. Push the whole run folder (`make push`).")  # fmt: skip
        with gr.Row():
            sentence = gr.Textbox(label="Place your sentence", scale=3, max_length=LIMIT)
            color_by = gr.Dropdown(list(COLOR_BY), value="true label", label="Colour by", scale=1)
            k = gr.Slider(1, 25, value=8, step=1, label="Neighbours", scale=1)
        go = gr.Button("Show", variant="primary")
        explore_note = gr.Markdown()
        plot = gr.Plot(label="Validation sentences, PCA of their embeddings", elem_id="explorer-plot")
        neighbours = gr.Dataframe(pd.DataFrame(columns=NEIGHBOUR_COLUMNS), label="Nearest validation sentences",
                                  interactive=False, wrap=True, elem_id="neighbours")  # fmt: skip
        export = gr.Button("Export selection as CSV")
        exported = gr.File(label="Selection")
        shown = gr.State()
        outputs = [plot, neighbours, explore_note, shown]
        go.click(explore, [sentence, color_by, k], outputs, api_name="explore")
        sentence.submit(explore, [sentence, color_by, k], outputs, api_visibility="private")
        color_by.input(explore, [sentence, color_by, k], outputs, api_visibility="private")
        if ART.points is not None:  # the validation set is drawn as the page opens
            page.load(explore, [sentence, color_by, k], outputs, api_visibility="private")
        export.click(export_selection, shown, exported, api_name="export_selection")


# --- Errors ---


def browse_errors(error_type: str, min_confidence: float):
    if ART.errors is None:
        raise gr.Error("No incorrect_predictions.csv next to this model.", print_exception=False)
    return error_view(filter_errors(ART.errors, error_type, min_confidence), COLOURS)


def explain_row(table: pd.DataFrame, evt: gr.SelectData) -> tuple[str, str]:
    row = pd.DataFrame(table).iloc[evt.index[0]]
    words, note = explain(str(row["text"]))
    return words, f"True label **{row['true label']}** · predicted " + note


def errors_tab() -> None:
    """The validation set's mistakes, filtered by type and confidence; a clicked row is explained."""
    error_types = ["all"]
    if ART.errors is not None:
        error_types += sorted({tag for tags in ART.errors["error_types"] for tag in str(tags).split(";") if tag})
    with gr.Tab("Errors"):
        if ART.errors is None:
            gr.Markdown("No `incorrect_predictions.csv` next to this model.")
        with gr.Row():
            error_type = gr.Dropdown(error_types, value="all", label="Error type")
            min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum confidence")  # k classes: from 1/k up
        errors = gr.Dataframe(
            value=None if ART.errors is None else error_view(ART.errors, COLOURS),
            label="Mistakes on the validation set (click a row to see which words drove it)", interactive=False,
            wrap=True, max_height=560, elem_id="errors",
            column_widths=None if ART.errors is None else error_widths(ART.errors.columns),
        )  # fmt: skip
        row_note = gr.Markdown()
        row_words = gr.HTML(label="Explanation of the selected row", elem_id="row-words")
        error_type.change(browse_errors, [error_type, min_conf], errors, api_name="errors")
        min_conf.release(browse_errors, [error_type, min_conf], errors, api_visibility="private")
        errors.select(explain_row, errors, [row_words, row_note], api_visibility="private")


# --- Model report ---


def report_tab() -> None:
    """The run's headline, plots, metrics, slices and behavioural tests, as pushed with the model."""
    with gr.Tab("Model report"):
        gr.Markdown(report_headline(ART.metrics, MODEL_ID), elem_id="headline")
        with gr.Row():
            for name in ("confusion_matrix", "reliability_diagram"):
                if name in ART.plots:
                    gr.Image(str(ART.plots[name]), label=name.replace("_", " "), show_label=True)
        for name in ("training_curves", "sample_predictions"):
            if name in ART.plots:
                gr.Image(str(ART.plots[name]), label=name.replace("_", " "))
        gr.Markdown(metrics_markdown(ART.metrics, MODEL_ID))
        if ART.slices is not None:
            gr.Dataframe(ART.slices.round(3), label="Accuracy by slice (Wilson 95% CI)", interactive=False)
        if ART.behavioral is not None:
            gr.Dataframe(ART.behavioral, label="Behavioural tests (run and skipped)", interactive=False, wrap=True)
        if not ART.plots and ART.slices is None and ART.behavioral is None:
            gr.Markdown("No plots, slices or behavioural tests were pushed with this model.")


# --- The app ---

CSS = """
.words { line-height: 2.1; font-size: 1.05rem; }
.words .word { padding: 0.15em 0.3em; border-radius: 0.3em; }
.legend { margin-top: 0.4em; font-size: 0.9rem; }
.legend .key { margin-right: 1em; white-space: nowrap; }
.legend .swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 0.2em; margin-right: 0.3em;
                  vertical-align: -0.1em; }
"""


def build_demo() -> gr.Blocks:
    """The page: the model's name and the label legend above the tabs, one function each."""
    with gr.Blocks(title="Sentiment model explorer") as page:
        gr.Markdown(f"# Sentiment model explorer\nModel: {model_link(MODEL_ID)}")
        gr.HTML(legend_html(MODEL.labels, COLOURS, "labels, in their colour everywhere in this app"))
        predict_tab()
        batch_tab()
        explorer_tab(page)
        errors_tab()
        report_tab()
    return page


demo = build_demo()


# --- The JSON API beside the UI ---

MAX_BODY_BYTES = 16_000_000
MODEL_SLOTS = anyio.CapacityLimiter(2)  # forward passes at once: more only queue for the same two cores
api = FastAPI(title="Sentiment model API", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.post("/api/classify")
async def classify(request: Request):
    """`{"inputs": "text"}` or `{"inputs": ["text", ...]}` (optionally `"parameters": {"top_k": k}`) -> for each
    input, its classes with scores, most likely first: `[[{"label": ..., "score": ...}, ...], ...]`."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        return _error(413, f"the request body is over {MAX_BODY_BYTES / 1e6:.0f} MB: send fewer texts per request")
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return _error(400, 'the body is not JSON: send {"inputs": "a text"} with Content-Type: application/json')
    try:
        texts, top_k = api_texts(payload, LIMIT)
    except ApiError as err:
        return _error(err.status, str(err))
    probs = await anyio.to_thread.run_sync(MODEL.predict_proba, texts, limiter=MODEL_SLOTS)
    return JSONResponse(api_answer(probs, MODEL.labels, top_k))


demo.queue(default_concurrency_limit=2, max_size=64)
app = gr.mount_gradio_app(api, demo, path="/", allowed_paths=[str(EXPORTS)], max_file_size=MAX_FILE_BYTES,
                          footer_links=["api"], ssr_mode=False, css=CSS,
                          theme=gr.themes.Default(primary_hue="slate"))  # fmt: skip


def serve(port: int | None = None, host: str | None = None) -> tuple[uvicorn.Server, str]:
    """The app (UI and JSON API) on a thread of this process, ready when it returns: (server, its URL). Port 0 takes
    a free one. Stop it with `server.should_exit = True`."""
    host = host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", 7860)) if port is None else port
    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError(f"the app did not start on {host}:{port} within 60 s")
        time.sleep(0.02)
    return server, f"http://{host}:{port}/"


if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), log_level="warning",
                timeout_graceful_shutdown=5)  # fmt: skip
