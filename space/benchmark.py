"""Time the Space as users meet it: start-up until ready, then /predict and /explain latency through gradio_client.

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
        for label, work in (("forward", lambda t=text: model.run([t])), ("occlusion", lambda t=text: model.explain(t))):
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


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples, 50)), 1), "p95": round(float(np.percentile(samples, 95)), 1),
            "n": len(samples)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--output", default="space-bench.json")
    args = parser.parse_args(argv)
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
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
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    results["in_process"] = in_process(args.calls)
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}  # fmt: skip
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"ready after {results['ready_seconds']:.1f}s")
    for key, value in [*results.items(), *results["in_process"].items()]:
        if key.endswith("_ms"):
            print(f"{key:28s} p50 {value['p50']:7.1f} ms   p95 {value['p95']:7.1f} ms   ({value['n']} calls)")
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
