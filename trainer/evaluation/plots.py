"""Plots of training and evaluation, written as PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainer.evaluation.metrics import CALIBRATION_BINS  # noqa: E402
from trainer.files import save_figure  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curves(log_history: list[dict], path: str | Path) -> Path:
    """Loss (train and eval) and eval accuracy against the optimizer step."""
    train = [(r["step"], r["loss"]) for r in log_history if "loss" in r]
    evals = [r for r in log_history if "eval_loss" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(*zip(*train), label="train loss", alpha=0.8)
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
        acc = [(r["step"], r["eval_accuracy"]) for r in evals if "eval_accuracy" in r]
        if acc:
            ax_acc.plot(*zip(*acc), "o-", color="tab:green")
            best_step, best = max(acc, key=lambda x: x[1])
            ax_acc.annotate(f"best {best:.2%}", (best_step, best), textcoords="offset points", xytext=(0, -14))
    ax_loss.set(xlabel="step", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_acc.set(xlabel="step", ylabel="accuracy", title="Validation accuracy")
    ax_acc.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(matrix, names: list[str], path: str | Path) -> Path:
    """Counts and row-normalised rates side by side."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ConfusionMatrixDisplay(matrix, display_labels=names).plot(ax=axes[0], colorbar=False, values_format="d")
    ConfusionMatrixDisplay(rates, display_labels=names).plot(ax=axes[1], colorbar=False, values_format=".1%")
    axes[0].set_title("Counts")
    axes[1].set_title("Row-normalised (recall per true label)")
    return _save(fig, path)


def plot_reliability(bins, ece: float, path: str | Path, n_bins: int = CALIBRATION_BINS) -> Path:
    """Accuracy against confidence per bin (`reliability_bins`); the title's ECE is over the same `n_bins` bins."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(bins["confidence"], bins["accuracy"], "o-", label="model")
    for _, row in bins.iterrows():
        ax.annotate(f"{int(row['n'])}", (row["confidence"], row["accuracy"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")  # fmt: skip
    title = f"Reliability diagram (ECE {ece:.3f}, {n_bins} bins)"
    ax.set(xlabel="confidence (max probability)", ylabel="accuracy", title=title)
    ax.set_xlim(min([0.45, *(bins["confidence"] - 0.05)]), 1.01)  # with k > 2 classes, confidence goes below 0.5
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confidence_histogram(frame, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(20, 41)]
    ax.hist(frame.loc[frame["correct"], "confidence"], bins=bins, alpha=0.7, label="correct")
    ax.hist(frame.loc[~frame["correct"], "confidence"], bins=bins, alpha=0.7, label="incorrect")
    ax.set(xlabel="confidence", ylabel="examples", title="Confidence of correct and incorrect predictions")
    ax.set_yscale("log")
    ax.legend()
    return _save(fig, path)


def plot_slices(slices, path: str | Path) -> Path:
    """Accuracy per slice with its 95% interval."""
    shown = slices[slices["n"] > 0].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1))
    errors = [(shown["accuracy"] - shown["ci_low"]).clip(lower=0), (shown["ci_high"] - shown["accuracy"]).clip(lower=0)]
    ax.barh([f"{s} (n={n})" for s, n in zip(shown["slice"], shown["n"])], shown["accuracy"], xerr=errors, alpha=0.8)
    ax.set(xlabel="accuracy (95% CI)", title="Accuracy per slice", xlim=(0, 1))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_embeddings(xy, frame, positive: str, path: str | Path, method: str = "PCA") -> Path:
    """Correct positive / correct negative / incorrect, as the notebooks draw it."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    correct_pos = frame["correct"] & (frame["label"] == positive)
    groups = [
        (correct_pos, "correct positive", "tab:green"),
        (frame["correct"] & ~correct_pos, "correct negative", "tab:blue"),
        (~frame["correct"], "incorrect", "tab:red"),
    ]
    for mask, name, colour in groups:
        ax.scatter(
            xy[mask.to_numpy(), 0], xy[mask.to_numpy(), 1], s=8, alpha=0.6, c=colour, label=f"{name} ({mask.sum()})"
        )
    ax.set(title=f"Sentence embeddings ({method}, mean-pooled last layer)", xlabel=f"{method} 1", ylabel=f"{method} 2")
    ax.legend()
    return _save(fig, path)
