"""Sentiment model explorer: live prediction with explanations, batch scoring, embeddings, errors, the model report,
and a JSON API for programs. Single-label models and multi-label ones (each label decided at its own threshold, from
config.json's decision_thresholds); below a minimum confidence the answer is "uncertain".

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
    ANY_LABEL,
    EXPLANATION_METHOD,
    MAX_FILE_BYTES,
    MISSED_OR_ADDED,
    NO_LABEL,
    ApiError,
    Artifacts,
    Projection,
    SentimentModel,
    answer_markdown,
    api_answer,
    api_texts,
    batch_table,
    char_limit,
    check_min_confidence,
    check_text,
    colour_map,
    decisions_markdown,
    error_view,
    error_widths,
    explorer_figure,
    filter_errors,
    label_bars_html,
    label_value,
    legend_html,
    locate,
    metrics_markdown,
    model_link,
    nearest,
    parse_lines,
    parse_upload,
    polarity_sides,
    relabel_rows,
    report_headline,
    report_plot_rows,
    tinted,
    window_note,
    words_html,
)
from batching import Batcher, Busy
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from serving import int8_agreement_note, int8_file, serving_from_env

MODEL_ID = os.environ.get("MODEL_ID", "runs/latest")
try:
    FOLDER = locate(MODEL_ID)
except ValueError as err:  # no model there: the one line and exit code every command gives, not a traceback
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
MODEL = SentimentModel(FOLDER, long_text="chunk")
try:
    SERVING = serving_from_env(FOLDER, MODEL.device)
except ValueError as err:  # a bad SPACE_BACKEND or API_* setting: one line, as for MODEL_ID
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
# The JSON API's scorer: the int8 ONNX file by default on a CPU (the page's predictions and explanations stay on torch)
API_MODEL = MODEL
if SERVING.backend == "onnx-int8":
    API_MODEL = SentimentModel(FOLDER, long_text="chunk", backend="onnx-int8", int8_file=int8_file(FOLDER))
LIMIT = char_limit(MODEL.max_length)  # characters per text
ART = Artifacts.read(FOLDER)
COLOURS = colour_map(ART.metrics, MODEL.labels)  # one colour per class in every tab
EXPORTS = Path(tempfile.mkdtemp(prefix="sentiment-space-"))
MULTI = MODEL.multi_label  # several labels per text, each decided at its own threshold
TOP = "the most probable label"  # what a multi-label explanation explains unless another label is chosen
SIDES = polarity_sides(ART.metrics, MODEL.labels) if MULTI else None  # each label's side, where names carry one
COLOR_BY = {"true label": "label", "predicted label": "predicted", "correct / incorrect": "outcome"}
if MULTI:  # a text has several labels: coloured by its most probable one (or that label's side), which stays readable
    COLOR_BY = {**({"side of the top label": "side"} if SIDES else {}), "top label": "top_label",
                "exact match or not": "outcome"}  # fmt: skip
NEIGHBOUR_COLUMNS = ["rank", "text", "label", "predicted", "similarity"]
NEIGHBOUR_WIDTHS = ["6%", "56%", "14%", "14%", "10%"]  # the text wraps within the page (1,280 px and narrower)
_explorer: dict = {}  # the projection, computed once (on first use when only texts were pushed)


def _fail(err: ValueError):
    return gr.Error(str(err), print_exception=False)


# --- Predict ---


def _checked(text: str) -> str:
    try:
        return check_text(text, LIMIT)
    except ValueError as err:
        raise _fail(err) from None


def predict(text: str):
    """Class probabilities for one text (the `/predict` endpoint): gr.Label's value; for a multi-label model, a bar
    per label with its threshold marked (HTML, the numbers in data- attributes)."""
    probs = MODEL.predict_proba([_checked(text)])
    if MULTI:
        return label_bars_html(MODEL.answers(probs)[0], COLOURS)
    return label_value(probs[0], MODEL.labels)


def explain(text: str, min_confidence: float = 0.0, label: str = TOP) -> tuple[str, str]:
    """The words coloured by the class each pushes toward (HTML; for a multi-label model, toward or away from
    `label`, default the most probable one), and the answer ("uncertain" below `min_confidence`) with the latency."""
    found, answer = _explanation(_checked(text), min_confidence, label)
    return words_html(found, MODEL.labels, COLOURS), answer_markdown(answer, min_confidence) + "\n\n" + _details(found)


def explain_again(text: str, *controls):
    """`explain` when a control changes: nothing before a text is typed (no "Type a sentence first" for moving the
    slider)."""
    if not (text or "").strip():
        return gr.skip(), gr.skip()
    return explain(text, *controls)


def _explanation(text: str, min_confidence: float | None, label: str | None):
    target = MODEL.labels.index(label) if MULTI and label in MODEL.labels else None
    found = MODEL.explain(text, target)
    return found, MODEL.answers(found.probs[None], _minimum(min_confidence))[0]


def _minimum(min_confidence: float | None) -> float | None:
    """The minimum confidence to answer (None for 0: every text answered); one line for a value outside [0, 1),
    which only a program calling the endpoint can send (the slider stops at 0.99)."""
    try:
        check_min_confidence(min_confidence)
    except ValueError as err:
        raise _fail(err) from None
    return min_confidence or None


def _details(found) -> str:
    """The line under the answer: how long scoring took and what the highlights show."""
    if found.windows > 1:
        return f"scoring took **{found.latency_ms:.1f} ms** · {window_note(found.windows, MODEL.max_length)}"
    method, what = EXPLANATION_METHOD, "each word in the colour of the class it pushes toward"
    if MULTI:
        name, p = MODEL.labels[found.target], found.probs[found.target]
        method = method.replace("the predicted class's", "the label's")
        what = f"the words that push **{name}** ({p:.1%}) up in its colour, those that push it down in grey"
    return (f"one forward pass took **{found.latency_ms:.1f} ms** · highlights: {method}; {what}, stronger for a "
            "larger effect")  # fmt: skip


def predict_tab() -> None:
    """A text's answer on Predict or Enter: the probabilities, then the words that drove it."""
    with gr.Tab("Predict"):
        text = gr.Textbox(label="Text", placeholder="Type a sentence", max_length=LIMIT, lines=2)
        min_conf = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="Minimum confidence to answer",
                             info="below it the answer is \"uncertain\" (0: always answer)",
                             elem_id="min-confidence")  # fmt: skip
        button = gr.Button("Predict", variant="primary")
        note = gr.Markdown(elem_id="answer")
        if MULTI:
            probs = gr.HTML(label="Each label's probability and threshold", elem_id="label-bars")
            label = gr.Dropdown([TOP, *MODEL.labels], value=TOP, label="Explain the label", elem_id="explain-label")
            inputs = [text, min_conf, label]
        else:
            probs = gr.Label(label="Probabilities", num_top_classes=len(MODEL.labels), show_heading=False)
            inputs = [text, min_conf]
        words = gr.HTML(label="Which words drove it", elem_id="words")
        if ART.widget:
            gr.Examples(examples=[[t] for t in ART.widget], inputs=[text])
        button.click(predict, text, probs, api_name="predict", concurrency_limit=4).then(
            explain, inputs, [words, note], api_name="explain"
        )
        text.submit(predict, text, probs, api_visibility="private", concurrency_limit=4).then(
            explain, inputs, [words, note], api_visibility="private"
        )
        for control in inputs[1:]:  # a new minimum or label re-answers the text shown, if any
            control.input(explain_again, inputs, [words, note], api_visibility="private")


# --- Batch ---


def score_batch(lines: str, upload, min_confidence: float = 0.0):
    """Score pasted lines or an uploaded .txt/.csv/.tsv; returns the table and a CSV to download. A text whose
    confidence is below `min_confidence` is answered "uncertain"."""
    try:
        texts = parse_upload(upload, LIMIT) if upload else parse_lines(lines, LIMIT)
    except ValueError as err:
        raise _fail(err) from None
    table = batch_table(texts, MODEL.answers(MODEL.predict_proba(texts), _minimum(min_confidence)))
    path = EXPORTS / f"predictions-{time.time_ns()}.csv"
    table.to_csv(path, index=False)
    return tinted(table, ["label"], COLOURS), str(path)


def batch_tab() -> None:
    """Pasted lines or an uploaded file scored into a table and a CSV to download."""
    with gr.Tab("Batch"):
        lines = gr.Textbox(label="One text per line", lines=6)
        upload = gr.File(label="…or a .txt / .csv / .tsv file", file_types=[".txt", ".csv", ".tsv"], type="filepath",
                         height=140, elem_id="upload")  # fmt: skip
        min_conf = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="Minimum confidence to answer",
                             info="texts below it are answered \"uncertain\" (0: answer every text)")  # fmt: skip
        run_batch = gr.Button("Score", variant="primary")
        table = gr.Dataframe(label="Predictions", interactive=False, wrap=True, elem_id="predictions")
        download = gr.File(label="Download CSV", elem_id="download")
        run_batch.click(score_batch, [lines, upload, min_conf], [table, download], api_name="batch",
                        concurrency_limit=1)  # fmt: skip


# --- Embedding explorer ---


def _explorer_state() -> dict | None:
    if not _explorer and ART.points is not None:
        points, embeddings = _scored_points(ART.points.copy(), ART.embeddings)
        projection = Projection.fit(embeddings)
        xy = projection.transform(embeddings)
        points["x"], points["y"] = xy[:, 0], xy[:, 1]
        points["correct"] = points["correct"].astype(bool)
        points["outcome"] = np.where(points["correct"], "correct", "incorrect")
        points["text"] = points["text"].str.strip()
        if MULTI:  # ";"-joined names; a text with none gets a name a reader sees
            for column in ("label", "predicted"):
                points[column] = points[column].fillna("").astype(str).replace("", NO_LABEL)
            points["side"] = points["top_label"].map(SIDES or {})
        _explorer.update(points=points, embeddings=embeddings, projection=projection)
    return _explorer or None


def _scored_points(points: pd.DataFrame, embeddings: np.ndarray | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The validation points with their embeddings, confidence (and a multi-label model's top label), scoring the
    texts for what the pushed files lack (a run pushed without embeddings.parquet, or recorded before a column)."""
    missing = [c for c in ("confidence", *(["top_label"] if MULTI else [])) if c not in points]
    if embeddings is None or missing:
        scored = MODEL.score(points["text"].tolist(), embeddings=True)
        embeddings = scored.embeddings if embeddings is None else embeddings
        if "confidence" in missing:
            points["confidence"] = MODEL.confidence(scored.probs)
        if "top_label" in missing:
            points["top_label"] = [MODEL.labels[i] for i in scored.probs.argmax(1)]
    return points, embeddings


def explore(sentence: str, color_by: str, k: float):
    """The validation set in 2-D (PCA) and, for a sentence, where it lands and its nearest neighbours (cosine
    similarity in the full embedding space). Returns the plotly figure, the neighbours, a note and what to export."""
    state = _explorer_state()
    if state is None:
        raise gr.Error("No embeddings.parquet or predictions.parquet next to this model: push the run folder "
                       "with its analysis files to explore embeddings.", print_exception=False)  # fmt: skip
    points, projection = state["points"], state["projection"]
    colour_by = COLOR_BY.get(color_by, next(iter(COLOR_BY.values())))
    neighbours = pd.DataFrame(columns=NEIGHBOUR_COLUMNS)
    you, near = None, None
    what = "texts" if MULTI else "sentences"
    note = (f"**{len(points):,} validation {what}**, PCA of the mean-pooled last hidden state; crosses are "
            "the model's mistakes. Type a sentence and press Show to place it (★) and ring its nearest "
            "neighbours.")  # fmt: skip
    if sentence and sentence.strip():
        scored = MODEL.score([_checked(sentence)], embeddings=True)
        pooled, answer = scored.embeddings, MODEL.answers(scored.probs)[0]
        x, y = projection.transform(pooled)[0]
        label = (", ".join(answer["labels"]) or NO_LABEL) if MULTI else answer["label"]
        you = {"x": x, "y": y, "text": sentence.strip(), "predicted": label, "confidence": answer["score"]}
        idx, sims = nearest(pooled[0], state["embeddings"], int(k))
        near = points.iloc[idx]
        # three decimals: float32 similarities otherwise print with 15 digits
        neighbours = near[["text", "label", "predicted"]].assign(similarity=np.round(sims.astype(np.float64), 3))
        if MULTI:  # names joined by ", " wrap in a narrow column; joined by ";" they do not
            for column in ("label", "predicted"):
                neighbours[column] = neighbours[column].str.replace(";", ", ")
        neighbours.insert(0, "rank", range(1, len(idx) + 1))
        note = (f"Your sentence (★): **{label}** ({answer['score']:.1%}). Its {len(idx)} nearest neighbours by "
                f"cosine similarity in the full {pooled.shape[1]}-dimensional space are ringed, and listed below; "
                "the 2-D projection can put a neighbour farther away than it is.")  # fmt: skip
    figure = explorer_figure(points, colour_by, COLOURS, projection.axis_titles(), you, near)
    neighbours = neighbours.reset_index(drop=True)
    shown = points[["x", "y", "text", "label", "predicted", *(["top_label"] if MULTI else []), "confidence",
                    "outcome"]]  # fmt: skip
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
            color_by = gr.Dropdown(list(COLOR_BY), value=next(iter(COLOR_BY)), label="Colour by", scale=1)
            k = gr.Slider(1, 25, value=8, step=1, label="Neighbours", scale=1)
        go = gr.Button("Show", variant="primary")
        explore_note = gr.Markdown()
        plot = gr.Plot(label="Validation sentences, PCA of their embeddings", elem_id="explorer-plot")
        neighbours = gr.Dataframe(pd.DataFrame(columns=NEIGHBOUR_COLUMNS), label="Nearest validation sentences",
                                  interactive=False, wrap=True, elem_id="neighbours",
                                  column_widths=NEIGHBOUR_WIDTHS)  # fmt: skip
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


def browse_errors(error_type: str, min_confidence: float, label: str = ANY_LABEL, how: str = "was missed"):
    """The mistakes of a type at or over a confidence; for a multi-label model, those where `label` was missed or
    added (`how`)."""
    if ART.errors is None:
        raise gr.Error("No incorrect_predictions.csv next to this model.", print_exception=False)
    return error_view(filter_errors(ART.errors, error_type, min_confidence, label, how), COLOURS)


def relabel_sheet(error_type: str, min_confidence: float, label: str = ANY_LABEL, how: str = "was missed") -> str:
    """The mistakes in view as a relabelling sheet (CSV) to download, correct and train on with --corrections."""
    if ART.errors is None:
        raise gr.Error("No incorrect_predictions.csv next to this model.", print_exception=False)
    rows = relabel_rows(filter_errors(ART.errors, error_type, min_confidence, label, how))
    path = Path(tempfile.mkdtemp(prefix="relabel-")) / "relabel.csv"
    rows.to_csv(path, index=False)
    return str(path)


def explain_row(table: pd.DataFrame, label: str | None, evt: gr.SelectData) -> tuple[str, str]:
    """A clicked mistake explained; a multi-label model's for the label filtered on, else the first it missed (or
    added)."""
    row = pd.DataFrame(table).iloc[evt.index[0]]
    if MULTI and label in (None, ANY_LABEL):
        wrong = [name.strip() for name in f"{row.get('missed', '')}, {row.get('added', '')}".split(",")]
        label = next((name for name in wrong if name in MODEL.labels), TOP)
    found, answer = _explanation(_checked(str(row["text"])), None, label)
    truth = f"True labels **{row['true labels'] or NO_LABEL}**" if MULTI else f"True label **{row['true label']}**"
    predicted = (", ".join(answer["labels"]) or NO_LABEL) if MULTI else answer["label"]
    return words_html(found, MODEL.labels, COLOURS), f"{truth} · predicted **{predicted}** · {_details(found)}"


def errors_tab() -> None:
    """The validation set's mistakes, filtered by type and confidence (and, multi-label, by a label missed or
    added); a clicked row is explained."""
    error_types = ["all"]
    if ART.errors is not None:
        error_types += sorted({tag for tags in ART.errors["error_types"] for tag in str(tags).split(";") if tag})
    with gr.Tab("Errors"):
        if ART.errors is None:
            gr.Markdown("No `incorrect_predictions.csv` next to this model.")
        with gr.Row():
            error_type = gr.Dropdown(error_types, value="all", label="Error type")
            min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum confidence")  # k classes: from 1/k up
        filters = [error_type, min_conf]
        if MULTI:
            with gr.Row():
                label = gr.Dropdown([ANY_LABEL, *MODEL.labels], value=ANY_LABEL, label="Texts where the label",
                                    elem_id="error-label")  # fmt: skip
                how = gr.Radio(list(MISSED_OR_ADDED), value="was missed", label="Missed or added", show_label=False,
                               elem_id="missed-or-added")  # fmt: skip
            filters += [label, how]
        errors = gr.Dataframe(
            value=None if ART.errors is None else error_view(ART.errors, COLOURS),
            label="Mistakes on the validation set (click a row to see which words drove it)", interactive=False,
            wrap=True, max_height=560, elem_id="errors",
            column_widths=None if ART.errors is None else error_widths(ART.errors.columns),
        )  # fmt: skip
        with gr.Row():
            sheet_button = gr.Button("Download these rows as a relabelling sheet", elem_id="relabel-button")
            sheet = gr.File(label="relabel.csv: correct the label column, then train with --corrections relabel.csv",
                            elem_id="relabel-file")  # fmt: skip
        sheet_button.click(relabel_sheet, filters, sheet, api_name="relabel")
        row_note = gr.Markdown()
        row_words = gr.HTML(label="Explanation of the selected row", elem_id="row-words")
        error_type.change(browse_errors, filters, errors, api_name="errors")
        min_conf.release(browse_errors, filters, errors, api_visibility="private")
        for control in filters[2:]:
            control.change(browse_errors, filters, errors, api_visibility="private")
        chosen = filters[2] if MULTI else gr.State(None)
        errors.select(explain_row, [errors, chosen], [row_words, row_note], api_visibility="private")


# --- Model report ---


def report_tab() -> None:
    """The run's headline, plots, metrics, decisions, slices and behavioural tests, as pushed with the model."""
    with gr.Tab("Model report"):
        gr.Markdown(report_headline(ART.metrics, MODEL_ID), elem_id="headline")
        for names in report_plot_rows(ART.plots):
            with gr.Row():
                for name in names:
                    gr.Image(str(ART.plots[name]), label=name.replace("_", " "), show_label=True,
                             elem_classes=["report-plot"])  # fmt: skip
        gr.Markdown(metrics_markdown(ART.metrics, MODEL_ID))
        gr.Markdown(decisions_markdown(ART.metrics, ART.coverage), elem_id="decisions")
        gr.Markdown(int8_agreement_note(FOLDER, SERVING), elem_id="api-backend")
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
.bars { display: grid; gap: 0.3em; }
.bar-row { display: grid; grid-template-columns: minmax(8em, 12em) 1fr 12em; align-items: center; gap: 0.7em; }
.bar-row.chosen .bar-name { font-weight: 700; }
.bar-track { position: relative; height: 1.1em; background: rgba(127, 127, 127, 0.12); border-radius: 0.2em; }
.bar-fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 0.2em; opacity: 0.9; }
.bar-row:not(.chosen) .bar-fill { opacity: 0.35; }
.bar-threshold { position: absolute; top: -0.25em; bottom: -0.25em; width: 2px; margin-left: -1px;
                 background: currentColor; }
.bar-value { font-variant-numeric: tabular-nums; text-align: right; }
.bar-t { opacity: 0.6; font-size: 0.85em; }
.bars-key { margin-top: 0.5em; font-size: 0.85rem; opacity: 0.75; }
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
MODEL_SLOTS = anyio.CapacityLimiter(2)  # unbatched: forward passes at once, more only queue for the same two cores
BATCHER = Batcher(API_MODEL.predict_proba, SERVING.max_wait_ms, SERVING.max_batch_tokens, SERVING.max_queued_texts)
api = FastAPI(title="Sentiment model API", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.post("/api/classify")
async def classify(request: Request):
    """`{"inputs": "text"}` or `{"inputs": ["text", ...]}` (optionally `"parameters": {"top_k": k, "min_confidence":
    p}`) -> for each input, its classes with scores, most likely first: `[[{"label": ..., "score": ...}, ...], ...]`,
    led by `{"label": "uncertain", ...}` below min_confidence. A multi-label model answers each input with its labels
    over their thresholds: `[{"labels": [...], "label": "a;b", "score", "probabilities", "thresholds"}, ...]`.
    Concurrent requests are scored together (space/batching.py); a full queue answers 503 with a Retry-After."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        return _error(413, f"the request body is over {MAX_BODY_BYTES / 1e6:.0f} MB: send fewer texts per request")
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return _error(400, 'the body is not JSON: send {"inputs": "a text"} with Content-Type: application/json')
    try:
        texts, top_k, min_confidence = api_texts(payload, LIMIT)
    except ApiError as err:
        return _error(err.status, str(err))
    if not SERVING.batching:
        probs = await anyio.to_thread.run_sync(API_MODEL.predict_proba, texts, limiter=MODEL_SLOTS)
    else:
        try:
            probs = await BATCHER(texts)
        except Busy as err:
            return JSONResponse({"error": str(err)}, status_code=503, headers={"Retry-After": str(err.retry_after)})
    return JSONResponse(api_answer(API_MODEL.answers(probs, min_confidence), top_k))


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
