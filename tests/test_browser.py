"""The Space in a real browser: headless Chromium (Debian's package) driven by Playwright, on a two-label and a
five-label tiny run. Each tab is used as a visitor uses it, and what appears on the page is checked; any console
error, page error or Python traceback in the app's log fails the test."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from transformers import pipeline

from tests.conftest import ROOT, writable_copy

sys.path.insert(0, str(ROOT / "space"))
import browser  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # .ci/run installs Chromium and sets REQUIRE_BROWSER=1: there, a missing browser fails
        not (os.environ.get("CHROMIUM") or shutil.which("chromium") or os.environ.get("REQUIRE_BROWSER")),
        reason="needs Chromium (apt-get install chromium)",
    ),
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(run, log):
    """The app in its own process (as a Space runs it) on the model folder `run`: its URL; its log must hold no
    traceback when the block ends."""
    port = free_port()
    env = {**os.environ, "MODEL_ID": str(run), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT / "space", env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited: {log.read_text()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the app did not answer within 120 s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(params=["tiny_run", "tiny_five_run"], ids=["two-labels", "five-labels"])
def served(request, tmp_path):
    """The app serving a copy of the run, with its card: (url, run folder)."""
    from model_card import render_card

    run = writable_copy(request.getfixturevalue(request.param), tmp_path / "run", "checkpoints")
    (run / "README.md").write_text(render_card(run, "alice/tiny"))
    with serving(run, tmp_path / "app.log") as url:
        yield url, run


def within_the_page(page, selector: str) -> None:
    """Every column header of the table at `selector` ends inside the 1,280 px window."""
    headers = page.locator(f"{selector} [role=columnheader]")
    for i in range(headers.count()):
        box = headers.nth(i).bounding_box()
        assert box and box["x"] + box["width"] <= browser.WIDTH, f"{selector}: column {i} is off to the right"


def colours_of(run) -> dict[str, str]:
    return json.loads((run / "metrics.json").read_text())["label_set"]["colours"]


def rgb(colour: str) -> str:
    """#rrggbb as the browser reports a computed colour's channels."""
    return ", ".join(str(int(colour[i : i + 2], 16)) for i in (1, 3, 5))


def table_headers(page, selector: str) -> list[str]:
    return [h.strip() for h in page.locator(f"{selector} [role=columnheader]").all_inner_texts()]


def test_every_tab_as_a_visitor_uses_it(served, tmp_path):
    url, run = served
    labels = json.loads((run / "config.json").read_text())["id2label"]
    names = [labels[str(i)] for i in range(len(labels))]
    colours = colours_of(run)
    with browser.browser_page() as (page, problems):
        timings = browser.open_app(page, url)
        assert timings["usable_ms"] > 0
        # The header names every label in its colour.
        legend = page.locator(".legend").first
        assert [k.strip() for k in legend.locator(".key").all_inner_texts()] == names

        # Predict: the label the model gives offline, every word highlighted in the colour of a class.
        text = "good film , really good"
        browser.predict(page, text)
        expected = pipeline("text-classification", model=str(run))([text])[0]["label"]
        assert page.locator("#answer h3").inner_text() == expected
        words = page.locator("#words .word")
        assert words.all_inner_texts() == text.split()
        word_classes = words.evaluate_all("spans => spans.map(s => s.dataset.class)")
        backgrounds = words.evaluate_all("spans => spans.map(s => getComputedStyle(s).backgroundColor)")
        for name, background in zip(word_classes, backgrounds):
            assert name in names
            assert background == "rgba(0, 0, 0, 0)" or rgb(colours[name]) in background
        assert re.search(r"one forward pass took [\d.]+ ms", page.get_by_text("one forward pass took").inner_text())
        # An empty text gets the message, not a trace.
        page.get_by_label("Text", exact=True).fill("   ")
        page.get_by_role("button", name="Predict", exact=True).click()
        page.get_by_text("Type a sentence first").first.wait_for(timeout=15_000)

        # Batch: pasted lines, then an uploaded file; a table with a label per line and a CSV to download.
        browser.show_tab(page, "Batch")
        page.get_by_label("One text per line").fill("good film\nworst film")
        page.get_by_role("button", name="Score", exact=True).click()
        rows = page.locator("#predictions .virtual-row")
        rows.filter(has_text="worst film").wait_for(timeout=30_000)
        assert table_headers(page, "#predictions") == ["text", "label", "confidence", *(f"p_{n}" for n in names)]
        assert rows.count() == 2
        upload = tmp_path / "reviews.csv"
        upload.write_text("review\nbest film\nawful film\nfun\n")
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        page.locator("#upload").get_by_text("reviews").first.wait_for(timeout=60_000)  # uploaded: name shown
        page.get_by_role("button", name="Score", exact=True).click()
        rows.filter(has_text="awful film").wait_for(timeout=30_000)
        assert [row.split("\n")[0].strip() for row in rows.all_inner_texts()] == ["best film", "awful film", "fun"]
        link = page.locator("#download a[href*='predictions-']").first
        link.wait_for(timeout=15_000)
        assert link.get_attribute("href").endswith(".csv")

        # Embedding explorer: the validation set is drawn as the tab opens, one trace per class in its colour,
        # with axes naming the projection; your sentence is a star with its neighbours ringed and listed.
        browser.show_tab(page, "Embedding explorer")
        plot = page.locator("#explorer-plot")
        stored = pd.read_parquet(run / "embeddings.parquet")
        legend_names = [t.split(" (")[0] for t in plot.locator(".legendtext").all_text_contents()]
        assert legend_names == [name for name in names if name in set(stored["label"])]
        assert plot.locator(".scatterlayer .trace .point").count() == len(stored)
        titles = plot.locator(".xtitle, .ytitle").all_text_contents()
        assert titles[0].startswith("PC1 (") and "of the variance" in titles[1]
        fills = (
            plot.locator(".scatterlayer .trace")
            .first.locator(".point")
            .first.evaluate("p => getComputedStyle(p).fill + getComputedStyle(p).stroke")
        )
        assert rgb(colours[legend_names[0]]) in fills
        browser.place_sentence(page, "a film i will think about for years")
        assert any("nearest neighbours" in t for t in plot.locator(".legendtext").all_text_contents())
        assert len(page.locator("#explorer-plot .scatterlayer .trace").all()) == len(legend_names) + 2
        neighbours = page.locator("#neighbours")
        assert table_headers(page, "#neighbours") == [
            "rank", "text", "label", "predicted", "similarity"
        ]  # fmt: skip
        assert neighbours.locator(".virtual-row").count() == min(8, len(stored))  # the slider's default
        within_the_page(page, "#neighbours")
        similarities = [row.split()[-1] for row in neighbours.locator(".virtual-row").all_inner_texts()]
        assert all(re.fullmatch(r"-?\d\.\d{1,3}", s) for s in similarities), similarities  # not 15 digits
        # Hovering a point shows its text, true label, prediction and confidence.
        star = plot.locator(".scatterlayer .trace").last.locator(".point").first
        star.hover(force=True)
        page.locator("#explorer-plot .hoverlayer .hovertext").first.wait_for(timeout=10_000)
        assert "your sentence" in page.locator("#explorer-plot .hoverlayer").text_content()
        point = plot.locator(".scatterlayer .trace").first.locator(".point").first
        point.hover(force=True)
        page.wait_for_timeout(300)
        hover = page.locator("#explorer-plot .hoverlayer").text_content()
        assert "true:" in hover and "predicted:" in hover and "%" in hover

        # Errors: label, prediction, confidence and error types beside the wrapped text at 1280 px; a filter by
        # type; a click on a row explains it.
        browser.show_tab(page, "Errors")
        wrong = pd.read_csv(run / "incorrect_predictions.csv", keep_default_na=False)
        headers = page.locator("#errors [role=columnheader]")
        texts = table_headers(page, "#errors")
        assert texts[:4] == ["true label", "predicted", "confidence", "error types"] and texts[-1] == "text"
        for i in range(headers.count()):
            box = headers.nth(i).bounding_box()
            assert box and box["x"] + box["width"] <= browser.WIDTH, f"{texts[i]} is off to the right"
        shown = page.locator("#errors .virtual-row")  # a virtualised grid: the rows in view, not all of them
        assert 0 < shown.count() <= len(wrong) and wrong["text"].iloc[0].strip() in shown.first.inner_text()
        browser.select_first_error(page)
        assert page.get_by_text("True label").first.is_visible()
        tags = sorted({t for tags in wrong["error_types"] for t in tags.split(";") if t})
        page.get_by_label("Error type").click()
        page.get_by_role("option", name=tags[0], exact=True).click()
        tagged = int(wrong["error_types"].str.split(";").apply(lambda t: tags[0] in t).sum())
        tag = tags[0].replace("'", "")
        page.wait_for_function(  # every row shown carries the type, and as many as fit are shown
            "() => { const rows = [...document.querySelectorAll('#errors .virtual-row')];"
            f" return rows.length > 0 && rows.length <= {tagged} && ({tagged} > 10 || rows.length === {tagged})"
            f" && rows.every(r => r.innerText.includes('{tag}')); }}",
            timeout=30_000,
        )

        # Model report: the headline first (accuracy with its interval, the data, the number of examples),
        # then pictures, then the full table.
        browser.show_tab(page, "Model report")
        headline = page.locator("#headline h2").inner_text()
        metrics = json.loads((run / "metrics.json").read_text())
        accuracy = metrics["evaluation"]["accuracy"]
        assert headline.startswith(f"Accuracy {accuracy['value']:.1%} (95% CI {accuracy['ci_low']:.1%}")
        assert f"{metrics['eval_samples']:,}" in page.locator("#headline").inner_text()
        assert page.locator("img").count() >= 2
        # the confusion matrix alone in its row, where its numbers can be read: at the page's width, or at its own
        # size when narrower (five labels and more are drawn one panel above the other); never shrunk to a half
        confusion = page.locator(".report-plot", has_text="confusion matrix").locator("img")
        natural = confusion.evaluate("img => img.decode().then(() => img.naturalWidth)")
        shown = confusion.bounding_box()["width"]
        assert shown > 0.8 * browser.WIDTH or shown >= natural - 1, (shown, natural)
        assert page.get_by_text("All metrics (95% bootstrap intervals)").is_visible()

        assert problems == []


@pytest.fixture(params=["made", "tiny_multi_run"], ids=["four-emotions", "trained"])
def multi_run(request, tmp_path):
    """A multi-label model folder with its analysis files: four emotions, random weights and thresholds at the
    median score (tests/test_space_multilabel.py builds it), or conftest's trained tiny run (a copy)."""
    from tests.test_space_multilabel import make_multi_folder

    run = tmp_path / "multi"
    if request.param == "made":
        run.mkdir()
        make_multi_folder(run)
    else:
        writable_copy(request.getfixturevalue(request.param), run, "checkpoints")
    return run


def test_a_multi_label_model_as_a_visitor_uses_it(multi_run, tmp_path):
    """Bars per label with thresholds, the labels over them named, an explanation for a chosen label, "uncertain"
    below the minimum confidence, the batch's label columns, the explorer, the missed / added filter and the
    report's thresholds, as the model folder's config.json and files say."""
    from scipy.special import expit

    from tests.test_space_multilabel import expected, logits_of

    run = multi_run
    config = json.loads((run / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    thresholds = np.array([config["decision_thresholds"][name] for name in labels])
    text = "good film , really boring"
    (names,), (confidence,) = expected(expit(logits_of(run, [text])), thresholds, labels)
    with serving(run, tmp_path / "app.log") as url, browser.browser_page() as (page, problems):
        browser.open_app(page, url)
        assert [k.strip() for k in page.locator(".legend").first.locator(".key").all_inner_texts()] == labels
        browser.predict(page, text)
        rows = page.locator("#label-bars .bar-row")
        assert rows.count() == len(labels)
        chosen = rows.evaluate_all("rs => rs.filter(r => r.dataset.chosen === 'true').map(r => r.dataset.label)")
        assert chosen == names
        assert page.locator("#answer h3").inner_text() == (", ".join(names) or "no label over its threshold")
        marks = page.locator("#label-bars .bar-threshold").evaluate_all("ms => ms.map(m => m.style.left)")
        shown = rows.evaluate_all("rs => rs.map(r => r.dataset.label)")
        marked = [float(mark.rstrip("%")) / 100 for mark in marks]  # each threshold marked on its bar
        assert marked == pytest.approx([thresholds[labels.index(n)] for n in shown], abs=5e-4)
        # explain another label: the words push toward it or away from it
        other = next(n for n in labels if n != shown[0])
        page.get_by_label("Explain the label").click()
        page.get_by_role("option", name=other, exact=True).click()
        page.get_by_text(f"push {other}").first.wait_for(timeout=15_000)
        classes = set(page.locator("#words .word").evaluate_all("ws => ws.map(w => w.dataset.class)"))
        assert classes <= {other, f"not {other}"}
        # a minimum confidence over this text's: the answer is "uncertain"
        box = page.locator("#min-confidence input[type=number]")
        box.fill(f"{min(confidence + 0.05, 0.99):.2f}")
        box.press("Enter")
        page.get_by_role("button", name="Predict", exact=True).click()
        page.locator("#answer h3", has_text="uncertain").wait_for(timeout=15_000)

        browser.show_tab(page, "Batch")
        page.get_by_label("One text per line").fill("good film\nworst film")
        page.get_by_role("button", name="Score", exact=True).click()
        page.locator("#predictions .virtual-row").filter(has_text="worst film").wait_for(timeout=30_000)
        assert table_headers(page, "#predictions") == ["text", "labels", "confidence", *(f"p_{n}" for n in labels)]

        browser.place_sentence(page, text)
        legend = page.locator("#explorer-plot .legendtext").all_text_contents()
        stored = pd.read_parquet(run / "embeddings.parquet")
        counts = {t.split(" (")[0]: int(t.split(" (")[1].rstrip(")")) for t in legend[:-2]}
        # by the top label, or its side where the names carry polarity (conftest's joy, anger, fear, neutral)
        metrics = json.loads((run / "metrics.json").read_text())
        side = dict.fromkeys(metrics["label_set"].get("positive") or [], "positive")
        side.update(dict.fromkeys(metrics["label_set"].get("negative") or [], "negative"))
        by = stored["top_label"].map(lambda n: side.get(n, "neutral")) if side else stored["top_label"]
        assert counts == by.value_counts().to_dict()
        within_the_page(page, "#neighbours")

        browser.show_tab(page, "Errors")
        wrong = pd.read_csv(run / "incorrect_predictions.csv", keep_default_na=False)
        extra = wrong["extra"].str.split(";")
        label = next(name for name in labels if any(name in names for names in extra))
        added = sum(label in names for names in extra)
        page.get_by_label("Texts where the label").click()
        page.get_by_role("option", name=label, exact=True).click()
        page.locator("#missed-or-added").get_by_text("was added").click()
        page.wait_for_function(
            "() => { const rows = [...document.querySelectorAll('#errors .virtual-row')];"
            f" return rows.length > 0 && rows.length <= {added} && ({added} > 10 || rows.length === {added})"
            f" && rows.every(r => r.innerText.includes('{label}')); }}",
            timeout=30_000,
        )
        within_the_page(page, "#errors")

        browser.show_tab(page, "Model report")
        macro = json.loads((run / "metrics.json").read_text())["evaluation"]["f1_macro"]["value"]
        assert page.locator("#headline h2").inner_text().startswith(f"Macro F1 {macro:.3f}")
        assert page.get_by_text("Decision thresholds").is_visible()
        assert problems == []
