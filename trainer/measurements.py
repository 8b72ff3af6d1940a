"""The measurements behind `python -m trainer.bench`: our training step and inference core against the notebook
recipe and `pipeline()`, in one run.

Every number is a ratio against a baseline measured here, in the same run, on the same model, data and number of
examples. Each measurement runs in its own process so its peak memory (RSS) is its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer import files
from trainer.provenance import cpu_name

logger = logging.getLogger(__name__)
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = {
    "20_words": "the first hour is slow and a little clumsy but the final act is moving funny and beautifully acted "
    "throughout",
}
SENTENCES["60_words"] = " ".join([SENTENCES["20_words"]] * 3)


def _isolated(fn, *args):
    """Run `fn(*args)` in a fresh process; returns its result with the process's peak RSS in MB."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_with_rss, (fn, *args))


def _with_rss(fn, *args):
    logging.disable(logging.WARNING)
    result = fn(*args)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _sst2(split: str, n: int | None) -> tuple[list[str], np.ndarray]:
    from trainer.config import DataConfig
    from trainer.data import encode_labels, load_split

    cfg = DataConfig()
    frame = encode_labels(load_split(cfg.dataset_name, None, split), cfg, f"sst2:{split}")
    frame = frame.head(n) if n else frame
    return frame["text"].tolist(), frame["label"].to_numpy()


def train_ours(model: str, n: int, steps: int, workdir: str, max_length: int) -> dict:
    """The default preset's step: dynamic padding, length-grouped batches, bf16 autocast where native, fused AdamW."""
    from trainer.training.loop import train

    cfg = default_preset(
        model_name_or_path=model, max_train_samples=n, max_steps=steps, max_length=max_length, eval_strategy="no",
        save_strategy="no", load_best_model_at_end=False, run_analysis=False, max_eval_samples=32, ema_decay=0,
        logging_steps=steps, disable_tqdm=True, report_to="none", output_dir=f"{workdir}/ours",
    )  # fmt: skip
    _, metrics = train(cfg)
    return {"samples_per_s": metrics["train_samples_per_second"], "seconds": metrics["train_runtime"]}


def default_preset(**overrides):
    """The default preset's config with these options changed."""
    from trainer.config import derive, load_config

    return derive(load_config(["--config", "configs/sst2-minilm.yaml"]), **overrides)


def train_notebook(model: str, n: int, steps: int, workdir: str, max_length: int) -> dict:
    """The common notebook recipe: every example padded to 128 tokens, fp32, random order, plain AdamW."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments, default_data_collator

    from trainer.inference import SAFE_LOADING
    from trainer.modeling import load_tokenizer, resolve_model_path

    texts, labels = _sst2("train", n)
    tokenizer = load_tokenizer(model)
    data = Dataset.from_dict({"text": texts, "label": labels.tolist()}).map(
        lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=max_length), batched=True,
        remove_columns=["text"],
    )  # fmt: skip
    net = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(model), num_labels=2, **SAFE_LOADING)
    args = TrainingArguments(output_dir=f"{workdir}/notebook", per_device_train_batch_size=32, max_steps=steps,
                             learning_rate=5e-5, optim="adamw_torch", use_cpu=not _cuda(), bf16=False,
                             train_sampling_strategy="random", save_strategy="no", report_to="none",
                             logging_steps=steps, disable_tqdm=True, dataloader_pin_memory=False)  # fmt: skip
    out = Trainer(model=net, args=args, train_dataset=data, data_collator=default_data_collator).train()
    return {"samples_per_s": out.metrics["train_samples_per_second"], "seconds": out.metrics["train_runtime"]}


BENCH_LABELS = ["negative", "positive"]  # SST-2 dev's labels, ids 0 and 1: what the inference measurements score


def unfit_for_bench(model: str) -> str | None:
    """Why `model` cannot be scored on SST-2 dev (another label set or order, or multi-label), or None if it can."""
    from trainer.modeling import model_labels

    names, multi = model_labels(model)
    if multi:
        return f"is a multi-label model ({', '.join(names)})"
    if [name.lower() for name in names] != BENCH_LABELS:
        return f"predicts {', '.join(names)}, not SST-2's {', '.join(BENCH_LABELS)} in that id order"
    return None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def infer(model: str, path: str, n: int | None, calls: int) -> dict:
    """Throughput and accuracy on SST-2 dev, and single-sentence latency, for one inference path."""
    texts, labels = _sst2("validation", n)
    if path == "pipeline":
        from transformers import pipeline

        from trainer.modeling import resolve_model_path

        pipe = pipeline("text-classification", model=resolve_model_path(model))
        label2id = pipe.model.config.label2id

        def classify(batch):
            return np.array([label2id[r["label"]] for r in pipe(batch)])
    else:
        from trainer.export.onnx import export_int8
        from trainer.modeling import load_classifier

        int8_file = export_int8(model) if path == "onnx-int8" else None  # made once, before anything is timed
        classifier = load_classifier(model, backend=path, int8_file=int8_file)

        def classify(batch):
            return classifier.predict_proba(batch).argmax(1)

        probs = classifier.predict_proba(texts)  # kept to compare the int8 path with fp32 text by text

    classify(texts[:8])  # warm-up
    seconds = float("inf")
    for _ in range(2):  # the faster of two passes: steady state for every path alike
        started = time.perf_counter()
        predicted = classify(texts)
        seconds = min(seconds, time.perf_counter() - started)
    latency = {}
    for name, text in SENTENCES.items():
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            classify([text])
            times.append((time.perf_counter() - t0) * 1000)
        latency[name] = {"p50": round(float(np.percentile(times, 50)), 2),
                         "p95": round(float(np.percentile(times, 95)), 2)}  # fmt: skip
    kept = {} if path == "pipeline" else {"probs": probs.tolist()}
    return {"samples_per_s": round(len(texts) / seconds, 1), "accuracy": float((predicted == labels).mean()),
            "n": len(texts), "latency_ms": latency, **kept}  # fmt: skip


def int8_fidelity(exact: np.ndarray, int8: np.ndarray) -> dict:
    """The int8 path against the fp32 model, text by text (length-sorted batches of 64, as trainer.predict runs)."""
    gap = np.abs(int8 - exact).max(1)
    return {
        "label_agreement": round(float((int8.argmax(1) == exact.argmax(1)).mean()), 5),
        "labels_changed": int((int8.argmax(1) != exact.argmax(1)).sum()),
        "prob_gap_mean": round(float(gap.mean()), 5),
        "prob_gap_p95": round(float(np.percentile(gap, 95)), 5),
        "prob_gap_max": round(float(gap.max()), 5),
    }


def time_to_accuracy(target: float, workdir: str) -> dict:
    """Wall time of the default preset until its evaluation first reaches `target` accuracy on SST-2 dev."""
    from transformers import TrainerCallback

    from trainer.training.loop import train

    class StopAt(TrainerCallback):
        def __init__(self):
            self.reached = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and metrics.get("eval_accuracy", 0) >= target and self.reached is None:
                self.reached = {"seconds": round(time.time() - started, 1), "step": state.global_step,
                                "accuracy": metrics["eval_accuracy"]}  # fmt: skip
                control.should_training_stop = True

    stop = StopAt()
    cfg = default_preset(eval_steps=350, save_strategy="no", load_best_model_at_end=False, run_analysis=False,
                         disable_tqdm=True, report_to="none", output_dir=f"{workdir}/tta")  # fmt: skip
    started = time.time()
    train(cfg, callbacks=[stop])
    return stop.reached or {"seconds": None, "step": None, "accuracy": None}


def machine() -> dict:
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}  # fmt: skip


def run(model: str, quick: bool, infer_model: str | None = None, max_length: int = 128, progress: bool = True) -> dict:
    """All measurements; returns the bench.json mapping. Inference uses `infer_model` (a fine-tuned model, so the
    accuracies mean something), or else the model the "ours" training stage just produced."""
    from tqdm.auto import tqdm

    n_train, steps = (640, 20) if quick else (6400, 200)
    n_eval, calls = (256, 10) if quick else (None, 30)
    stages = ["train: notebook recipe", "train: ours", "infer: pipeline()", "infer: ours (torch)",
              "infer: ours (onnx-int8)"] + ([] if quick else ["time to 89% accuracy"])  # fmt: skip
    results: dict = {}
    with tempfile.TemporaryDirectory() as workdir, tqdm(stages, desc="bench", disable=not progress) as bar:
        for stage in bar:
            bar.set_postfix_str(stage)
            if stage == "train: notebook recipe":
                results["train_notebook"] = _isolated(train_notebook, model, n_train, steps, workdir, max_length)
            elif stage == "train: ours":
                results["train_ours"] = _isolated(train_ours, model, n_train, steps, workdir, max_length)
                infer_model = infer_model or f"{workdir}/ours"
            elif stage.startswith("infer"):
                path = {"infer: pipeline()": "pipeline", "infer: ours (torch)": "torch"}.get(stage, "onnx-int8")
                results[f"infer_{path}"] = _isolated(infer, infer_model, path, n_eval, calls)
            else:
                results["time_to_89"] = _isolated(time_to_accuracy, 0.89, workdir)
    base, ours = results["train_notebook"], results["train_ours"]
    pipe, fp32, fast = results["infer_pipeline"], results["infer_torch"], results["infer_onnx-int8"]
    return {
        "train_speedup": round(ours["samples_per_s"] / base["samples_per_s"], 2),
        "inference_speedup": round(fast["samples_per_s"] / pipe["samples_per_s"], 2),
        "inference_speedup_torch": round(fp32["samples_per_s"] / pipe["samples_per_s"], 2),
        "baseline_train_samples_per_s": base["samples_per_s"],
        "train_samples_per_s": ours["samples_per_s"],
        "baseline_infer_samples_per_s": pipe["samples_per_s"],
        "infer_samples_per_s": fast["samples_per_s"],
        "infer_samples_per_s_torch": fp32["samples_per_s"],
        "accuracy_pipeline": pipe["accuracy"],
        "accuracy_fp32": fp32["accuracy"],
        "accuracy_fast": fast["accuracy"],
        "accuracy_drop_points": round((fp32["accuracy"] - fast["accuracy"]) * 100, 2),
        **int8_fidelity(np.asarray(fp32.pop("probs")), np.asarray(fast.pop("probs"))),
        "latency_ms": {"pipeline": pipe["latency_ms"], "torch": fp32["latency_ms"], "onnx-int8": fast["latency_ms"]},
        "peak_rss_mb": {key: value["peak_rss_mb"] for key, value in results.items()},
        "time_to_89_accuracy": results.get("time_to_89"),
        "setup": {
            "quick": quick,
            "model": model,
            "infer_model": str(infer_model),
            "max_length": max_length,
            "train_examples": steps * 32,
            "train_steps": steps,
            "batch_size": 32,
            "eval_examples": pipe["n"],
            "latency_calls": calls,
        },  # fmt: skip
        "gpu": None if not _cuda() else "not measured by this version",
        "machine": machine(),
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    bars = [
        (axes[0], ["notebook recipe", "ours"], [report["baseline_train_samples_per_s"], report["train_samples_per_s"]],
         f"Training samples/s ({report['train_speedup']}x)"),
        (axes[1], ["pipeline()", "ours torch", "ours int8"], [report["baseline_infer_samples_per_s"],
         report["infer_samples_per_s_torch"], report["infer_samples_per_s"]],
         f"Inference samples/s ({report['inference_speedup']}x)"),
        (axes[2], ["pipeline()", "ours torch", "ours int8"], [report["latency_ms"][k]["20_words"]["p50"]
         for k in ("pipeline", "torch", "onnx-int8")], "Latency p50, 20 words (ms)"),
    ]  # fmt: skip
    for ax, names, values, title in bars:
        ax.bar(names, values, color=["#999999"] + ["#3b6fb6"] * (len(values) - 1))
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="bottom", fontsize=9)
    fig.suptitle(f"{report['machine']['cpu']}, {report['machine']['cores']} cores · {report['machine']['device']}",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    files.save_figure(fig, path, dpi=110)
    plt.close(fig)


def table(report: dict) -> str:
    lat = report["latency_ms"]
    rows = [
        ("training samples/s", report["baseline_train_samples_per_s"], report["train_samples_per_s"],
         f"{report['train_speedup']}x"),
        ("inference samples/s (int8)", report["baseline_infer_samples_per_s"], report["infer_samples_per_s"],
         f"{report['inference_speedup']}x"),
        ("inference samples/s (torch)", report["baseline_infer_samples_per_s"], report["infer_samples_per_s_torch"],
         f"{report['inference_speedup_torch']}x"),
        ("dev accuracy (fp32 / int8)", f"{report['accuracy_fp32']:.4f}", f"{report['accuracy_fast']:.4f}",
         f"{-report['accuracy_drop_points']:+.2f} pts"),
        *[(f"latency p50/p95 {k.replace('_', ' ')} (ms)", f"{lat['pipeline'][k]['p50']}/{lat['pipeline'][k]['p95']}",
           f"{lat['onnx-int8'][k]['p50']}/{lat['onnx-int8'][k]['p95']}", "") for k in SENTENCES],
    ]  # fmt: skip
    lines = [f"{'':32s}{'baseline':>14s}{'ours':>14s}{'ratio':>12s}"]
    lines += [f"{name:32s}{base!s:>14s}{ours!s:>14s}{ratio:>12s}" for name, base, ours, ratio in rows]
    reached = report["time_to_89_accuracy"]
    if reached:
        lines.append(f"time to 89% dev accuracy: {reached['seconds']} s (step {reached['step']})")
    return "\n".join(lines)
