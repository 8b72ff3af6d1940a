"""transformers.js in headless Chromium loads the exported ONNX files from a local server, as a visitor's page does,
and scores like the inference core in Python: fp32 like torch, q8 like the same int8 file through ONNX Runtime."""

import os
import shutil

import pytest

from tests.conftest import writable_copy
from trainer import UserError
from trainer.export.onnx import ensure_onnx
from trainer.js_browser import NODE_MODULES, browser_files, check

TEXTS = ["good film , really good", "worst film", "the plot", "fun , but dull", "best acting", "a movie"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # .ci/run installs Chromium and the npm packages and sets REQUIRE_BROWSER=1: there, they fail
        not os.environ.get("REQUIRE_BROWSER")
        and not (os.environ.get("CHROMIUM") or shutil.which("chromium"))
        or not (NODE_MODULES / "onnxruntime-web").is_dir()
        and not os.environ.get("REQUIRE_BROWSER"),
        reason="needs Chromium (apt-get install chromium) and npm ci --prefix tests/js",
    ),
]


def test_transformers_js_in_chromium_scores_like_python(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run")
    exported = ensure_onnx(run)
    dtypes = ["fp32", "q8"] + (["fp16"] if "fp16" in exported else [])
    found = check(run, TEXTS, dtypes)
    assert set(found) == set(dtypes)
    for dtype, row in found.items():
        assert row["texts"] == len(TEXTS) and row["load_ms"] > 0 and row["ms_per_text"] > 0
        assert row["label_agreement_vs_python"] == 1.0, dtype
        # fp32 runs the graph torch runs; q8 the same int8 file, but ONNX Runtime Web's wasm int8 kernels round unlike
        # the x86 ones (0.044 at most on 100 SST-2 texts with the default model); fp16 rounds every weight
        assert row["max_gap_vs_python"] < (1e-4 if dtype == "fp32" else 2e-2), dtype


def test_a_missing_file_or_browser_build_is_one_line(tiny_run, tmp_path):
    with pytest.raises(UserError, match=r"has no onnx/model_quantized.onnx: export it with"):
        check(tiny_run, TEXTS, ["q8"])
    with pytest.raises(UserError, match=r"unknown dtype q4: use fp32, q8, fp16"):
        check(tiny_run, TEXTS, ["q4"])
    with pytest.raises(UserError, match=r"transformers.min.js is missing: install the browser build with `npm ci"):
        browser_files(tmp_path)
