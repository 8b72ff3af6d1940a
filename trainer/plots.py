"""Training curves from Trainer's log history, as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
