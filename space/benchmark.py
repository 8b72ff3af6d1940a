"""Time the Space as users meet it: start-up until ready; /predict and /explain through gradio_client; the JSON API
(`POST /api/classify`) for one sentence and a batch of 32 over HTTP; the same load test (20 clients) through both; and
the browser's time to a usable page (headless Chromium, when installed).

MODEL_ID=runs/latest python benchmark.py [--calls 50] [--output bench.json]   (or `make bench-space`)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_serving import (
    CLIENTS,
    answer_label,
    offline_labels,
    plot_serving,
    serving_matrix,
    serving_texts,
    summary_lines,
)

SENTENCES = {  # 20 and 60 words
    "20_words": "the first hour is slow and a little clumsy but the final act is moving funny and beautifully acted "
    "throughout",
    "60_words": " ".join(
        [
            "the first hour is slow and a little clumsy but the final act is moving funny and beautifully "
            "acted throughout"
        ]
        * 3
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0):
    from gradio_client import Client

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode} before it was ready")
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.05)
    raise SystemExit(f"the app was not ready after {timeout:.0f}s")


def in_process(calls: int) -> dict:
    """The same work without HTTP: the model's forward pass and occlusion, and Gradio's round trip for a no-op."""
    import gradio as gr
    from backend import SentimentModel, locate
    from gradio_client import Client

    model = SentimentModel(locate(os.environ.get("MODEL_ID", "runs/latest")))
    out = {}
    for name, text in SENTENCES.items():
        for label, work in (
            ("forward", lambda t=text: model.predict_proba([t])),
            ("occlusion", lambda t=text: model.explain(t)),
        ):
            work()
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                work()
                times.append((time.perf_counter() - t0) * 1000)
            out[f"{label}_{name}_ms"] = percentiles(times)
    with gr.Blocks() as noop:
        box, label = gr.Textbox(), gr.Label()
        gr.Button().click(lambda text: {"a": 1.0}, box, label, api_name="noop")
    noop.queue()
    port = free_port()
    noop.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    client.predict("x", api_name="/noop")
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        client.predict("x", api_name="/noop")
        times.append((time.perf_counter() - t0) * 1000)
    noop.close()
    out["gradio_noop_roundtrip_ms"] = percentiles(times)
    return out


def load_texts(n: int) -> list[str]:
    """n different review-like sentences."""
    openings = ["the film", "this movie", "the plot", "the acting", "the ending", "every scene", "the script",
                "the cast", "the score", "the story"]  # fmt: skip
    verdicts = ["is wonderful", "is dull", "is a mess", "is moving", "never works", "is a delight", "drags on",
                "feels fresh", "is forgettable", "is beautifully shot", "falls flat", "is great fun", "is tedious",
                "is smart and warm", "is not bad at all", "is not good", "could have been better", "is the best",
                "is the worst", "is perfectly fine"]  # fmt: skip
    return [f"{o} {v}" for v in verdicts for o in openings][:n]


def load_test(url: str, texts: list[str], clients: int = 20, oversized: int = 0, via: str = "gradio") -> dict:
    """Every text sent once, spread over `clients` concurrent clients (`via` gradio_client's /predict, or the JSON
    API's /api/classify with httpx), with `oversized` over-long texts mixed in. Returns the labels in input order,
    latency percentiles, and how the over-long texts were answered (each must be rejected with the app's message)."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(i, text) for i, text in enumerate(texts)]
    step = max(1, len(jobs) // max(1, oversized))
    for n in range(oversized):  # spread through the run, so they meet the queue while it is busy
        jobs.insert(n * (step + 1), (-1 - n, "great " * 5000))  # over the limit of any model
    shares = [jobs[k::clients] for k in range(clients)]
    labels: list[str | None] = [None] * len(texts)
    latencies: list[float] = []
    rejected: list[str] = []

    def work(share):
        classify = _gradio_classifier(url) if via == "gradio" else _json_classifier(url)
        for index, text in share:
            started = time.perf_counter()
            try:
                label = classify(text)
            except ValueError as err:
                rejected.append(str(err))
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            labels[index] = label

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, shares))
    wall = time.perf_counter() - started
    return {
        "via": via,
        "labels": labels,
        "latency_ms": percentiles(latencies),
        "rejected": rejected,
        "clients": clients,
        "requests": len(jobs),
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(jobs) / wall, 1),
    }


def _gradio_classifier(url: str):
    """text -> label through gradio_client's /predict; the app's rejection as ValueError."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)

    def classify(text: str) -> str:
        try:
            return client.predict(text, api_name="/predict")["label"]
        except AppError as err:
            raise ValueError(str(err)) from None

    return classify


def _json_classifier(url: str):
    """text -> label through POST /api/classify on one kept-alive connection; a 4xx's message as ValueError."""
    import httpx

    client = httpx.Client(base_url=url, timeout=120)

    def classify(text: str) -> str:
        answer = client.post("api/classify", json={"inputs": text})
        if answer.status_code != 200:
            raise ValueError(answer.json()["error"])
        return answer_label(answer.json()[0])

    return classify


def json_api(url: str, calls: int) -> dict:
    """p50/p95 of /api/classify over HTTP on loopback: one 20-word sentence, and a batch of 32 different texts."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, body in (("api_classify_20_words_ms", {"inputs": SENTENCES["20_words"]}),
                           ("api_classify_batch_32_ms", {"inputs": load_texts(32)})):  # fmt: skip
            client.post("api/classify", json=body).raise_for_status()  # warm-up
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                client.post("api/classify", json=body).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            out[name] = percentiles(times)
    return out


def page_load(url: str, repeats: int = 3) -> dict:
    """The browser's time to a usable page (the Predict button can be pressed) and until the explorer's plot is
    drawn, in a fresh headless Chromium page each time; medians. Skipped without Chromium."""
    from browser import browser_page, chromium_path, open_app

    try:
        chromium_path()
    except SystemExit as err:
        return {"skipped": str(err)}
    runs = []
    for _ in range(repeats):
        with browser_page() as (page, problems):
            runs.append(open_app(page, url))
            if problems:
                return {"skipped": "the page reported errors: " + "; ".join(problems)}
    return {key: round(float(np.median([r[key] for r in runs])), 1) for key in runs[0]} | {"n": repeats}


def loads(url: str, requests: int, clients: int) -> dict:
    """The load test through gradio_client (`load`) and through the JSON API (`load_json_api`), each answer checked
    against the model's offline label (torch: the app runs with SPACE_BACKEND=torch). A multi-label model's /predict
    answers HTML bars: its load test goes through the JSON API only."""
    from backend import locate

    texts = load_texts(requests)
    expected = offline_labels(locate(os.environ.get("MODEL_ID", "runs/latest")), "torch", texts)
    out = {}
    for via in ("json",) if multi_label() else ("gradio", "json"):
        load = load_test(url, texts, clients=clients, oversized=requests // 10, via=via)
        out["load" if via == "gradio" else "load_json_api"] = {
            **{k: v for k, v in load.items() if k not in ("labels", "rejected")},
            "answered_like_offline": sum(a == b for a, b in zip(load["labels"], expected)),
            "oversized_rejected": len(load["rejected"]),
        }
    return out


def multi_label() -> bool:
    from backend import Artifacts, locate

    metrics = Artifacts.read(locate(os.environ.get("MODEL_ID", "runs/latest"))).metrics or {}
    return bool(metrics.get("multi_label"))


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples, 50)), 1), "p95": round(float(np.percentile(samples, 95)), 1),
            "n": len(samples)}  # fmt: skip


def report(results: dict) -> None:
    """The measurements, one line each."""
    print(f"ready after {results['ready_seconds']:.1f}s")
    for key, value in [*results.items(), *results["in_process"].items()]:
        if key.endswith("_ms"):
            print(f"{key:28s} p50 {value['p50']:7.1f} ms   p95 {value['p95']:7.1f} ms   ({value['n']} calls)")
    page = results["page_load"]
    if "usable_ms" in page:
        print(f"browser: page usable after {page['usable_ms']:.0f} ms, explorer drawn after "
              f"{page['explorer_drawn_ms']:.0f} ms (median of {page['n']})")  # fmt: skip
    for key in ("load", "load_json_api"):
        if key in results:
            load, ms = results[key], results[key]["latency_ms"]
            print(f"load via {load['via']}: {load['requests']} requests from {load['clients']} clients in "
                  f"{load['wall_seconds']:.1f}s ({load['requests_per_second']} req/s): p50 {ms['p50']:.0f} ms, "
                  f"p95 {ms['p95']:.0f} ms; {load['answered_like_offline']}/{ms['n']} as offline, "
                  f"{load['oversized_rejected']} over-long texts rejected")  # fmt: skip
    if "serving" in results:
        print("\n".join(summary_lines(results["serving"])))
        print(f"plot: {results['serving_plot']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--output", default="space-bench.json")
    parser.add_argument("--load_requests", type=int, default=200, help="load test: /predict calls (0 = skip)")
    parser.add_argument("--load_clients", type=int, default=20, help="load test: concurrent gradio_client clients")
    parser.add_argument("--serving_requests", type=int, default=400, help="the JSON API four ways (torch or int8, "
                        "batched or not): requests from 20 clients; 1 client sends a quarter, 100 clients 2.5x "
                        "(0 = skip)")  # fmt: skip
    args = parser.parse_args(argv)
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", SPACE_BACKEND="torch")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("app.py"))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        client = wait_ready(f"http://127.0.0.1:{port}/", proc)
        ready_s = time.perf_counter() - started
        results = {"ready_seconds": round(ready_s, 2), "model": os.environ.get("MODEL_ID", "runs/latest")}
        for endpoint in ("/predict", "/explain"):
            for name, text in SENTENCES.items():
                client.predict(text, api_name=endpoint)  # warm-up
                times = []
                for _ in range(args.calls):
                    t = time.perf_counter()
                    client.predict(text, api_name=endpoint)
                    times.append((time.perf_counter() - t) * 1000)
                results[f"{endpoint.strip('/')}_{name}_ms"] = percentiles(times)
        results.update(json_api(client.src, args.calls))
        results["page_load"] = page_load(client.src)
        if args.load_requests:
            results.update(loads(client.src, args.load_requests, args.load_clients))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    results["in_process"] = in_process(args.calls)
    if args.serving_requests:
        from backend import locate

        n = args.serving_requests
        requests = dict(zip(CLIENTS, (max(1, n // 4), n, int(n * 2.5))))
        results["serving"] = serving_matrix(locate(results["model"]), serving_texts(max(requests.values())),
                                            requests)  # fmt: skip
        results["serving_plot"] = str(plot_serving(results["serving"], Path(args.output).parent / "space-serving.png"))
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}  # fmt: skip
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
