"""The app in a real browser: headless Chromium driven by Playwright, for the browser tests, `make screenshots` and
the page-load figure of `make bench-space`.

    MODEL_ID=runs/latest python browser.py --output ../docs/screenshots   (or `make screenshots`)

Playwright's own browser download needs the internet; this drives the system's Chromium (Debian's `chromium`
package, /usr/bin/chromium) instead, or the one CHROMIUM names.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

TABS = ["Predict", "Batch", "Embedding explorer", "Errors", "Model report"]
WIDTH, HEIGHT = 1280, 900
# A closed network: no background fetches, updates or QUIC; no sandbox, as CI runs as root.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


def chromium_path() -> str:
    """The Chromium to drive, or SystemExit saying how to install one."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("no Chromium found: install Debian's chromium (apt-get install chromium) or set CHROMIUM")
    return found


@contextmanager
def browser_page(width: int = WIDTH, height: int = HEIGHT):
    """A fresh page in headless Chromium; yields (page, problems), where problems collects console errors and
    uncaught page errors as they happen."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            problems: list[str] = []
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" else None)  # fmt: skip
            page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
            yield page, problems
        finally:
            browser.close()


def open_app(page, url: str, timeout_ms: float = 60_000) -> dict:
    """Load the app and wait until a visitor can use it; returns the ms until the Predict button could be pressed
    and until the explorer's plot was drawn (the validation set is drawn as the page opens)."""
    started = time.perf_counter()
    page.goto(url, timeout=timeout_ms)
    page.get_by_role("button", name="Predict", exact=True).wait_for(state="visible", timeout=timeout_ms)
    usable = (time.perf_counter() - started) * 1000
    page.get_by_role("tab", name="Embedding explorer").click()
    page.locator("#explorer-plot .js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=timeout_ms)
    drawn = (time.perf_counter() - started) * 1000
    page.get_by_role("tab", name="Predict").click()
    return {"usable_ms": round(usable, 1), "explorer_drawn_ms": round(drawn, 1)}


def show_tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_timeout(300)


def predict(page, text: str, timeout_ms: float = 30_000):
    """Type a text on the Predict tab and press Predict; returns when its words are highlighted."""
    show_tab(page, "Predict")
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#words .word").first.wait_for(timeout=timeout_ms)


def place_sentence(page, text: str, timeout_ms: float = 30_000):
    """Type a sentence on the explorer tab and press Show; returns when the star is on the plot."""
    show_tab(page, "Embedding explorer")
    page.get_by_label("Place your sentence").fill(text)
    page.get_by_role("button", name="Show", exact=True).click()
    page.locator("#explorer-plot .legendtext", has_text="your sentence").wait_for(timeout=timeout_ms)


def select_first_error(page, timeout_ms: float = 30_000):
    """Click the first mistake's text on the Errors tab; returns when its explanation is shown."""
    show_tab(page, "Errors")
    page.locator('#errors .virtual-row [role="gridcell"][data-row="0"]').last.click()
    page.locator("#row-words .word").first.wait_for(timeout=timeout_ms)


def screenshots(url: str, output: Path, sentence: str) -> list[Path]:
    """A PNG of every tab as a visitor sees it after using it, into `output`."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    with browser_page() as (page, problems):
        open_app(page, url)
        steps = {
            "Predict": lambda: predict(page, sentence),
            "Batch": lambda: _score_lines(page),
            "Embedding explorer": lambda: place_sentence(page, sentence),
            "Errors": lambda: select_first_error(page),
            "Model report": lambda: show_tab(page, "Model report"),
        }
        for tab, step in steps.items():
            step()
            page.wait_for_timeout(800)  # transitions and plot animations settle
            path = output / f"space-{tab.lower().replace(' ', '-')}.png"
            page.screenshot(path=str(path), full_page=tab in ("Embedding explorer", "Errors"))
            written.append(path)
        if problems:
            raise SystemExit("the page reported errors:\n" + "\n".join(problems))
    return written


def _score_lines(page):
    show_tab(page, "Batch")
    page.get_by_label("One text per line").fill(
        "A gorgeous, witty and moving film.\nTwo hours I will never get back.\nThe plot is thin, but the cast is a joy."
    )
    page.get_by_role("button", name="Score", exact=True).click()
    page.locator("table", has_text="confidence").first.wait_for(timeout=30_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("../docs/screenshots"))
    parser.add_argument("--sentence", default="the plot is thin , but the cast is a joy to watch")
    args = parser.parse_args()
    import app  # the app for MODEL_ID, served from this process

    server, url = app.serve(port=0)
    try:
        for path in screenshots(url, args.output, args.sentence):
            print(path)
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
