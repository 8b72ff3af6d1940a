"""How the Space's JSON API serves: the backend it picks (SPACE_BACKEND, the int8 file's freshness), its settings from
the environment, batched answers equal to offline ones, and a full queue answered 503 with a Retry-After."""

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, writable_copy

sys.path.insert(0, str(ROOT / "space"))
from serving import choose_backend, int8_agreement_note, serving_from_env  # noqa: E402

from trainer.export.onnx import ensure_onnx  # noqa: E402
from trainer.inference import Classifier  # noqa: E402

TEXTS = ["good film , really good", "worst film", "the plot", "fun , but dull", "best acting", "a movie",
         "great story , wonderful acting", "bad", "boring plot , dull acting", "moving"]  # fmt: skip


@pytest.fixture(scope="module")
def int8_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run with its ONNX files and their stamp, as a pushed repo ships them."""
    run = writable_copy(tiny_run, tmp_path_factory.mktemp("int8") / "run")
    ensure_onnx(run)
    return run


@pytest.mark.slow  # exports the tiny run's ONNX files with the int8 recipe (~10 s)
def test_the_api_scores_with_a_fresh_int8_file_on_a_cpu_and_with_torch_otherwise(int8_run, tiny_run, tmp_path):
    assert choose_backend(int8_run, None, "cpu") == ("onnx-int8", "the model ships its int8 file")
    assert choose_backend(int8_run, None, "cuda") == ("torch", "the model runs on cuda")
    assert choose_backend(int8_run, "torch", "cpu") == ("torch", "SPACE_BACKEND")
    backend, why = choose_backend(tiny_run, None, "cpu")
    assert backend == "torch" and why.startswith("no int8 file (onnx/model_quantized.onnx)")

    stale = writable_copy(int8_run, tmp_path / "stale")
    (stale / "onnx/export.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    assert choose_backend(stale, None, "cpu") == ("torch", "the int8 file was made from other weights (export the "
                                                  "model again): scoring with torch")  # fmt: skip
    # A published repo ships the int8 check, which carries the stamp, not export.json
    (stale / "onnx/export.json").unlink()
    (stale / "onnx/int8_check.json").write_text(json.dumps({"export": json.loads((int8_run / "onnx/export.json")
                                                                                  .read_text())}))  # fmt: skip
    assert choose_backend(stale, None, "cpu")[0] == "onnx-int8"

    with pytest.raises(ValueError, match=r"^SPACE_BACKEND=onnx-int8 but no int8 file .*use SPACE_BACKEND=torch$"):
        choose_backend(tiny_run, "onnx-int8", "cpu")
    with pytest.raises(ValueError, match="runs on the CPU: use SPACE_BACKEND=torch on a GPU"):
        choose_backend(int8_run, "onnx-int8", "cuda")
    with pytest.raises(ValueError, match="SPACE_BACKEND=tensorrt: use one of torch, onnx-int8"):
        choose_backend(int8_run, "tensorrt", "cpu")


@pytest.mark.slow  # exports the tiny run's ONNX files with the int8 recipe (~10 s)
def test_the_api_settings_come_from_the_environment_with_one_line_errors(int8_run):
    serving = serving_from_env(int8_run, "cpu", {"API_MAX_WAIT_MS": "5", "API_MAX_QUEUED_TEXTS": "64"})
    assert (serving.backend, serving.batching, serving.max_wait_ms, serving.max_batch_tokens,
            serving.max_queued_texts) == ("onnx-int8", True, 5.0, 8192, 64)  # fmt: skip
    assert not serving_from_env(int8_run, "cpu", {"API_BATCHING": "off"}).batching
    for env, message in (({"API_MAX_WAIT_MS": "soon"}, "API_MAX_WAIT_MS=soon: use a number (default 2.0)"),
                         ({"API_MAX_QUEUED_TEXTS": "0"}, "API_MAX_QUEUED_TEXTS=0: use at least 1 (default 4096)"),
                         ({"API_BATCHING": "maybe"}, "API_BATCHING=maybe: use on or off")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            serving_from_env(int8_run, "cpu", env)


@pytest.mark.slow  # exports the tiny run's ONNX files with the int8 recipe (~10 s)
def test_the_report_says_what_answers_the_api_and_how_faithful_it_is(int8_run, tiny_run):
    check = {
        "texts": 872,
        "label_agreement": 0.99656,
        "labels_changed": 3,
        "batched": {"label_agreement": 0.99541, "labels_changed": 4},
    }
    (int8_run / "onnx/int8_check.json").write_text(json.dumps({"export": {}, **check}))
    note = int8_agreement_note(int8_run, serving_from_env(int8_run, "cpu", {}))
    assert note.startswith("The JSON API scores with the **int8 ONNX file**, batched (up to 2 ms, 8,192 tokens)")
    assert "**99.66%** of the 872 validation texts one at a time (3 changed), 99.54% in batches (4 changed)" in note
    note = int8_agreement_note(tiny_run, serving_from_env(tiny_run, "cpu", {"API_BATCHING": "off"}))
    assert note.startswith("The JSON API scores with **torch** (fp32), one request per pass: no int8 file")


def test_concurrent_requests_get_the_answers_they_get_alone(app_client):
    """Batched with whatever else arrives (torch, the tiny run): each answer is the one the text gets alone."""
    client, _, app = app_client
    url = client.src + "api/classify"
    alone = [httpx.post(url, json={"inputs": text}).json()[0] for text in TEXTS]
    bodies = [{"inputs": TEXTS[i : i + 1 + i % 3]} for i in range(len(TEXTS))] * 3
    sizes_before = len(app.BATCHER.batch_sizes)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda body: httpx.post(url, json=body, timeout=30), bodies))
    assert [a.status_code for a in answers] == [200] * len(bodies)
    for body, answer in zip(bodies, answers):
        for text, row in zip(body["inputs"], answer.json()):
            expected = alone[TEXTS.index(text)]
            assert [r["label"] for r in row] == [r["label"] for r in expected]
            assert [r["score"] for r in row] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    passes = app.BATCHER.batch_sizes[sizes_before:]
    assert sum(passes) == len(bodies) and max(passes) > 1  # every request answered once; some shared a pass


def serve(run, port: int, **env) -> subprocess.Popen:
    environment = {**os.environ, "MODEL_ID": str(run), "GRADIO_SERVER_PORT": str(port), "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT / "space", env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited: {proc.stderr.read().decode()}")
        try:
            if httpx.post(f"http://127.0.0.1:{port}/api/classify", json={"inputs": "warm up"}).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the app did not start within 120 s")


@pytest.mark.slow  # starts the app in a process of its own, with the int8 backend
def test_the_int8_api_answers_batched_as_offline_and_refuses_a_full_queue_with_503(int8_run):
    from tests.test_space import free_port

    port = free_port()
    proc = serve(int8_run, port, API_MAX_WAIT_MS="300", API_MAX_QUEUED_TEXTS="8")
    url = f"http://127.0.0.1:{port}/api/classify"
    try:
        offline = Classifier(int8_run, device="cpu", backend="onnx-int8", long_text="chunk").predict_proba(TEXTS, 1)
        alone = [httpx.post(url, json={"inputs": text}).json()[0] for text in TEXTS]
        scores = lambda row: {r["label"]: r["score"] for r in row}  # noqa: E731
        labels = ["negative", "positive"]
        for text, row, probs in zip(TEXTS, alone, offline):  # one text per pass: exactly the offline int8 answer
            assert scores(row) == pytest.approx(dict(zip(labels, probs.tolist())), abs=1e-6), text

        with ThreadPoolExecutor(2) as pool:  # two requests of 4 texts, scored together or one after the other
            mixed = list(pool.map(lambda i: httpx.post(url, json={"inputs": TEXTS[4 * i : 4 * i + 4]}, timeout=30),
                                  range(2)))  # fmt: skip
        gaps = [abs(scores(row)["positive"] - scores(alone[4 * i + j])["positive"])
                for i, answer in enumerate(mixed) for j, row in enumerate(answer.json())]  # fmt: skip
        assert max(gaps) < 0.01  # int8 activations are quantized per batch: 0.001 measured on this model

        with ThreadPoolExecutor(40) as pool:  # 40 requests of 4 texts at once: the queue holds 8 texts
            burst = list(pool.map(lambda i: httpx.post(url, json={"inputs": TEXTS[i % 6 : i % 6 + 4]}, timeout=30),
                                  range(40)))  # fmt: skip
        refused = [a for a in burst if a.status_code == 503]
        answered = [a for a in burst if a.status_code == 200]
        assert len(refused) + len(answered) == 40 and refused and answered
        for answer in refused:
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"].startswith("the server is busy (") and "retry in" in answer.json()["error"]
        assert all(len(a.json()) == 4 for a in answered)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # starts the app four times
def test_bench_space_measures_four_ways_and_checks_every_answer(int8_run, tmp_path, monkeypatch):
    from bench_serving import WAYS, plot_serving, serving_matrix, serving_texts, summary_lines

    monkeypatch.setenv("MODEL_ID", str(int8_run))
    texts = serving_texts(30)
    assert len(set(texts)) == 30
    matrix = serving_matrix(int8_run, texts, {1: 5, 20: 20, 100: 30})
    assert list(matrix["ways"]) == list(WAYS) and matrix["skipped"] == {}
    for name, result in matrix["ways"].items():
        for clients, n in (("1", 5), ("20", 20), ("100", 30)):
            row = result[clients]
            assert row["requests"] == n and row["answered"] + row["refused_503"] + row["other_status"] == n
            assert row["answered"] == row["answered_like_offline"] == n, (name, clients)  # no 503 below the bound
            assert row["requests_per_second"] > 0 and row["latency_ms"]["n"] == n
    baseline = matrix["ways"]["torch, one pass per request"]
    assert {baseline[c]["throughput_ratio"] for c in ("1", "20", "100")} == {1.0}
    assert len(summary_lines(matrix)) == 12
    assert plot_serving(matrix, tmp_path / "serving.png").read_bytes()[:4] == b"\x89PNG"


def test_without_a_fresh_int8_file_bench_space_runs_the_torch_ways_and_says_why(tiny_run, monkeypatch):
    import bench_serving

    def fake(folder, backend, batching, texts, requests):  # a way's figures: torch 100 req/s, batched twice that
        rate = 100.0 * (2 if batching == "on" else 1)
        return {str(c): {"requests_per_second": rate, "latency_ms": {"p95": 1000 / rate}} for c in requests}

    monkeypatch.setattr(bench_serving, "measure_way", fake)
    matrix = bench_serving.serving_matrix(tiny_run, ["a"], {1: 1, 20: 1})
    assert list(matrix["ways"]) == ["torch, one pass per request", "torch, batched"]
    batched = matrix["ways"]["torch, batched"]
    assert [batched[c]["throughput_ratio"] for c in ("1", "20")] == [2.0, 2.0] and batched["20"]["p95_ratio"] == 0.5
    assert list(matrix["skipped"].values())[0].startswith("int8 ways skipped: no int8 file")
