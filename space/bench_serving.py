"""The JSON API under load, four ways in one run: torch or the int8 file, each request its own pass or batched.

For each way the app starts in its own process (`SPACE_BACKEND`, `API_BATCHING`), then 1, 20 and 100 concurrent
clients send one text per request (review-like sentences, each client on one kept-alive connection). Every answer is
checked against the label the same backend gives the text offline, and every request is counted: answered,
refused (503), or failed. Throughput and latency are reported as ratios against torch without batching (the API as
it was), measured in the same run. `python benchmark.py --serving` (make bench-space) runs it with the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WAYS = {  # name -> (SPACE_BACKEND, API_BATCHING); the first is the baseline
    "torch, one pass per request": ("torch", "off"),
    "torch, batched": ("torch", "on"),
    "int8, one pass per request": ("onnx-int8", "off"),
    "int8, batched": ("onnx-int8", "on"),
}
CLIENTS = (1, 20, 100)


def serving_texts(n: int) -> list[str]:
    """n different review-like sentences of 4 to 14 words (the load test's 200, each with and without endings)."""
    from benchmark import load_texts

    endings = ["", ", and I would watch it again", ", but the cast tries hard", ", which says it all",
               ", from start to finish"]  # fmt: skip
    return [text + ending for ending in endings for text in load_texts(200)][:n]


def answer_label(row) -> str:
    """The label an /api/classify answer gives a text: the top class, or a multi-label model's joined labels."""
    return row["label"] if isinstance(row, dict) else row[0]["label"]


def offline_labels(folder: Path, backend: str, texts: list[str]) -> list[str]:
    """Each text's label from the inference core with `backend`, one text per pass as a lone request is scored."""
    from backend import SentimentModel, api_answer
    from serving import int8_file

    int8 = int8_file(folder) if backend == "onnx-int8" else None
    model = SentimentModel(folder, long_text="chunk", backend=backend, int8_file=int8)
    probs = model.predict_proba(texts, batch_size=1)
    return [answer_label(row) for row in api_answer(model.answers(probs))]


def start(backend: str, batching: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", SPACE_BACKEND=backend,
               API_BATCHING=batching)  # fmt: skip
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("app.py"))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for_api(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> float:
    """Seconds until the API answers (the app exits with its one-line error: raised here)."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited: {proc.stderr.read().strip()}")
        try:
            if httpx.post(url, json={"inputs": "warm up"}, timeout=30).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the API did not answer within {timeout:.0f} s")


def hammer(url: str, texts: list[str], clients: int) -> dict:
    """Every text sent once as its own request, spread over `clients` concurrent clients: labels in input order,
    latencies, statuses, wall time."""
    import httpx

    labels: list[str | None] = [None] * len(texts)
    latencies, statuses = [], []

    def work(share: list[int]) -> None:
        with httpx.Client(timeout=120) as client:
            for i in share:
                t0 = time.perf_counter()
                answer = client.post(url, json={"inputs": texts[i]})
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    labels[i] = answer_label(answer.json()[0])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, [list(range(k, len(texts), clients)) for k in range(clients)]))
    wall = time.perf_counter() - started
    return {"labels": labels, "latencies": latencies, "statuses": statuses, "wall": wall}


def measure_way(folder: Path, backend: str, batching: str, texts: list[str], requests: dict[int, int]) -> dict:
    """One way: the app started, then each client count's load, every answer checked against offline labels."""
    from benchmark import free_port, percentiles

    expected = offline_labels(folder, backend, texts)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/classify"
    proc = start(backend, batching, port)
    try:
        out = {"ready_seconds": round(wait_for_api(url, proc), 2)}
        for clients, n in requests.items():
            hammer(url, texts[: min(n, 50)], clients)  # warm-up: connections, the first passes
            run = hammer(url, texts[:n], clients)
            out[str(clients)] = {
                "requests": n,
                "answered": sum(s == 200 for s in run["statuses"]),
                "refused_503": sum(s == 503 for s in run["statuses"]),
                "other_status": sum(s not in (200, 503) for s in run["statuses"]),
                "answered_like_offline": sum(a == b for a, b in zip(run["labels"], expected) if a is not None),
                "requests_per_second": round(n / run["wall"], 1),
                "latency_ms": percentiles(run["latencies"]),
            }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def serving_matrix(folder: Path, texts: list[str], requests: dict[int, int]) -> dict:
    """Every way at every client count, with ratios against the baseline (the first way) at the same count."""
    from serving import fresh_int8

    problem = fresh_int8(folder)
    ways = {name: way for name, way in WAYS.items() if way[0] == "torch" or problem is None}
    found = {}
    for name, (backend, batching) in ways.items():
        print(f"serving: {name} ...", flush=True)
        found[name] = measure_way(folder, backend, batching, texts, requests)
    base = found[next(iter(WAYS))]
    for result in found.values():
        for clients in map(str, requests):
            row, ref = result[clients], base[clients]
            row["throughput_ratio"] = round(row["requests_per_second"] / ref["requests_per_second"], 2)
            row["p95_ratio"] = round(row["latency_ms"]["p95"] / ref["latency_ms"]["p95"], 2)
    skipped = {name: f"int8 ways skipped: {problem}" for name in WAYS if name not in ways}
    return {"ways": found, "skipped": skipped, "clients": list(requests), "texts": len(texts)}


def plot_serving(matrix: dict, path: Path) -> Path:
    """Left: requests/s by client count for each way; right: p95 latency (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [str(c) for c in matrix["clients"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(matrix["ways"])
    for k, (name, result) in enumerate(matrix["ways"].items()):
        x = np.arange(len(clients)) + (k - (len(matrix["ways"]) - 1) / 2) * width
        rates = [result[c]["requests_per_second"] for c in clients]
        bars = left.bar(x, rates, width, label=name)
        left.bar_label(bars, [f"{result[c]['throughput_ratio']:.1f}x" for c in clients], fontsize=7)
        right.plot(clients, [result[c]["latency_ms"]["p95"] for c in clients], marker="o", label=name)
    left.set(xticks=range(len(clients)), xticklabels=clients, xlabel="concurrent clients", ylabel="requests/s",
             title="Throughput (ratio to torch, one pass per request)")  # fmt: skip
    right.set(xlabel="concurrent clients", ylabel="p95 latency (ms)", yscale="log", title="p95 latency")
    handles, names = left.get_legend_handles_labels()  # below both panels, clear of the bars' labels
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle(f"POST /api/classify, one text per request ({matrix['texts']} different texts)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(matrix: dict) -> list[str]:
    lines = []
    for name, result in matrix["ways"].items():
        for clients in map(str, matrix["clients"]):
            row = result[clients]
            lines.append(f"{name:30s} {clients:>3s} clients: {row['requests_per_second']:7.1f} req/s "
                         f"({row['throughput_ratio']:.2f}x), p50 {row['latency_ms']['p50']:6.1f} ms, p95 "
                         f"{row['latency_ms']['p95']:6.1f} ms ({row['p95_ratio']:.2f}x); {row['answered']}/"
                         f"{row['requests']} answered, {row['answered_like_offline']} as offline, "
                         f"{row['refused_503']} refused")  # fmt: skip
    lines += list(matrix["skipped"].values())[:1]
    return lines
