"""A pushed model's ONNX files in transformers.js, in headless Chromium, as a web page of a visitor loads them
(`python -m trainer.transformers_js`).

The page imports transformers.js's self-contained browser build (`dist/transformers.min.js`: the `transformers.web.js`
build imports onnxruntime-web by bare name and would need an import map), points ONNX Runtime Web at local copies of
its wasm files (`env.backends.onnx.wasm.wasmPaths`; otherwise they come from a CDN) and reads the model from a local
HTTP server (`env.localModelPath`). Each dtype's file (fp32 `onnx/model.onnx`, q8 `onnx/model_quantized.onnx`, fp16
`onnx/model_fp16.onnx` where exported) is loaded, timed, and scores SST-2 dev texts one at a time; the labels are
compared with the inference core's in Python (fp32 torch for fp32 and fp16, the same int8 file for q8). The browser
build and wasm files come from `tests/js/node_modules` (`npm ci --prefix tests/js`).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from trainer import UserError

NODE_MODULES = Path(__file__).resolve().parent.parent / "tests" / "js" / "node_modules"
DIST = Path("@huggingface/transformers/dist/transformers.min.js")
WASM = [Path("onnxruntime-web/dist") / f"ort-wasm-simd-threaded.asyncify.{ext}" for ext in ("mjs", "wasm")]
DTYPE_FILES = {"fp32": "model.onnx", "q8": "model_quantized.onnx", "fp16": "model_fp16.onnx"}
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-dev-shm-usage"]  # fmt: skip
PAGE = """<!doctype html><meta charset="utf-8"><title>transformers.js check</title>
<script type="module">
import { pipeline, env } from "./transformers.min.js";
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = "./models/";
env.backends.onnx.wasm.wasmPaths = "./wasm/";
env.backends.onnx.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain server does not give
window.classify = async (dtype, texts) => {
  const started = performance.now();
  const classifier = await pipeline("text-classification", "model", { dtype });
  const loaded = performance.now();
  const scores = [];
  for (const text of texts) scores.push(await classifier(text, { top_k: null }));
  return { load_ms: loaded - started, ms_per_text: (performance.now() - loaded) / texts.length, scores };
};
window.ready = true;
</script>"""


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise UserError("no Chromium found: install Debian's chromium (apt-get install chromium) or set CHROMIUM")
    return found


def browser_files(node_modules: Path = NODE_MODULES) -> list[Path]:
    """transformers.js's browser build and ONNX Runtime Web's wasm files, or UserError naming the install."""
    found = [node_modules / path for path in (DIST, *WASM)]
    if missing := [str(path) for path in found if not path.is_file()]:
        raise UserError(f"{missing[0]} is missing: install the browser build with `npm ci --prefix tests/js` "
                        "(ONNXRUNTIME_NODE_INSTALL_CUDA=skip offline)")  # fmt: skip
    return found


@contextmanager
def local_site(model_folder: Path, node_modules: Path = NODE_MODULES) -> Iterator[str]:
    """The page, the browser build, the wasm files and the model folder (as models/model) on a local HTTP server."""
    dist, *wasm = browser_files(node_modules)
    with tempfile.TemporaryDirectory(prefix="transformers-js-") as root:
        site = Path(root)
        (site / "index.html").write_text(PAGE)
        (site / "transformers.min.js").symlink_to(dist)
        (site / "wasm").mkdir()
        for path in wasm:
            (site / "wasm" / path.name).symlink_to(path)
        (site / "models").mkdir()
        (site / "models" / "model").symlink_to(model_folder.resolve())
        handler = functools.partial(QuietHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}  # fmt: skip

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def classify_in_browser(model_folder: Path, texts: list[str], dtypes: list[str]) -> dict[str, dict]:
    """Each dtype's file loaded in a fresh Chromium page: {dtype: {load_ms, ms_per_text, probs (n, labels) in the
    model's id order}}. A page error is a UserError with the browser's message."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    id2label = json.loads((model_folder / "config.json").read_text())["id2label"]
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    out = {}
    with local_site(model_folder) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=FLAGS, headless=True)
        try:
            for dtype in dtypes:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda err, errors=errors: errors.append(str(err)))
                page.goto(url + "index.html")
                try:
                    page.wait_for_function("window.ready === true", timeout=60_000)
                    found = page.evaluate("([dtype, texts]) => window.classify(dtype, texts)", [dtype, texts])
                except PlaywrightError as err:
                    reason = errors[0] if errors else str(err).splitlines()[0]
                    raise UserError(f"transformers.js could not score with dtype {dtype}: {reason}") from None
                finally:
                    page.close()
                probs = np.array([[{s["label"]: s["score"] for s in row}[label] for label in labels]
                                  for row in found["scores"]])  # fmt: skip
                out[dtype] = {"load_ms": round(found["load_ms"], 1), "ms_per_text": round(found["ms_per_text"], 2),
                              "probs": probs}  # fmt: skip
        finally:
            browser.close()
    return out


def python_reference(model_folder: Path, texts: list[str], dtype: str) -> np.ndarray:
    """The inference core's probabilities for the same texts: the int8 file for q8, fp32 torch otherwise."""
    from trainer.inference import Classifier

    backend = "onnx-int8" if dtype == "q8" else "torch"
    int8_file = model_folder / "onnx" / DTYPE_FILES["q8"] if dtype == "q8" else None
    return Classifier(model_folder, device="cpu", backend=backend, int8_file=int8_file).predict_proba(texts, 1)


def check_dtypes(dtypes: list[str]) -> None:
    for dtype in dtypes:
        if dtype not in DTYPE_FILES:
            raise UserError(f"unknown dtype {dtype}: use {', '.join(DTYPE_FILES)}")


def check(model_folder: Path, texts: list[str], dtypes: list[str]) -> dict[str, dict]:
    """Each dtype in Chromium against Python: load time, ms per text, label agreement and the largest gap."""
    check_dtypes(dtypes)
    for dtype in dtypes:
        if not (model_folder / "onnx" / DTYPE_FILES[dtype]).is_file():
            raise UserError(f"{model_folder} has no onnx/{DTYPE_FILES[dtype]}: export it with "
                            "trainer.export.onnx.ensure_onnx (trainer.transformers_js and make push do)")  # fmt: skip
    found = classify_in_browser(model_folder, texts, dtypes)
    fp32 = python_reference(model_folder, texts, "fp32")
    for dtype, row in found.items():
        reference = python_reference(model_folder, texts, dtype) if dtype == "q8" else fp32
        probs = row.pop("probs")
        row["texts"] = len(texts)
        row["max_gap_vs_python"] = float(np.abs(probs - reference).max())
        row["label_agreement_vs_python"] = float((probs.argmax(1) == reference.argmax(1)).mean())
        row["label_agreement_vs_fp32"] = float((probs.argmax(1) == fp32.argmax(1)).mean())
    return found


def sst2_dev_texts(n: int) -> list[str]:
    """The first n SST-2 dev sentences (the data mirror's copy, else the Hub's)."""
    from trainer.measurements import _sst2

    return _sst2("validation", None)[0][:n]
