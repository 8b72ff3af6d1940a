"""Plots of training and evaluation, written as PNGs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainer.evaluation.metrics import CALIBRATION_BINS  # noqa: E402
from trainer.files import save_figure  # noqa: E402
from trainer.palette import class_colours  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
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


def plot_training_history(table, summary: dict, path: str | Path) -> Path:
    """Three stacked panels over the step: loss (train, eval) with the lowest points, learning rate, grad norm with
    its spikes; `table` and `summary` are `history_table` and `history_summary` of trainer.evaluation.training_log."""
    fig, (ax_loss, ax_lr, ax_grad) = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True, height_ratios=[1.4, 1, 1])
    train, evals = table.dropna(subset=["loss"]), table.dropna(subset=["eval_loss"])
    ax_loss.plot(train["step"], train["loss"], alpha=0.8, label="train loss")
    if len(evals):
        ax_loss.plot(evals["step"], evals["eval_loss"], "o-", label="eval loss")
    for low, key, colour in ((summary["lowest_loss"], "loss", "tab:blue"),
                             (summary["lowest_eval_loss"], "eval_loss", "tab:orange")):  # fmt: skip
        if low:
            ax_loss.plot(low["step"], low[key], "*", ms=14, color=colour, mec="black", zorder=3)
            ax_loss.annotate(f"lowest {low[key]:.4f}\nstep {low['step']}", (low["step"], low[key]), fontsize=8,
                             textcoords="offset points", xytext=(6, 8))  # fmt: skip
    ax_loss.set(ylabel="loss", title="Loss (lowest marked with a star)")
    ax_loss.legend(loc="best")
    lr = table.dropna(subset=["learning_rate"])
    ax_lr.plot(lr["step"], lr["learning_rate"], color="tab:purple")
    if schedule := summary["learning_rate"]:
        ax_lr.axvline(schedule["peak_step"], ls=":", color="grey")
        ax_lr.set_title(f"Learning rate: {schedule['shape']} (peak {schedule['peak']:.3g})")
    ax_lr.set(ylabel="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    norms = table.dropna(subset=["grad_norm"])
    ax_grad.plot(norms["step"], norms["grad_norm"], color="tab:grey", label="grad norm")
    spikes = summary["spikes"]
    if spikes:
        ax_grad.plot([s["step"] for s in spikes], [s["grad_norm"] for s in spikes], "o", mfc="none", mec="tab:red",
                     ms=10, mew=2, label=f"spike ({len(spikes)})")  # fmt: skip
    ax_grad.set(xlabel="step", ylabel="grad norm", title=f"Grad norm; spike: {summary['spike_rule']}")
    ax_grad.legend(loc="best", framealpha=0.9)
    for ax in (ax_loss, ax_lr, ax_grad):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(matrix, names: list[str], path: str | Path) -> Path:
    """Counts and row-normalised rates, side by side up to four labels and one above the other from five, each panel
    and its numbers growing with the labels so 5 to 28 stay readable at the image's own size."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(names)
    stacked = k > 4
    side = max(4.2, 0.95 * k + 1.6) if not stacked else max(6.0, 0.55 * k + 3.0)
    shape, size = ((2, 1), (side + 1.2, 2 * side)) if stacked else ((1, 2), (2 * side + 1.6, side))
    fig, axes = plt.subplots(*shape, figsize=size)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    rotation = 30 if 3 < k <= 8 else 90 if k > 8 else "horizontal"
    font = None if k <= 4 else max(6.5, 12 - 0.2 * k)  # matplotlib's default below five labels, as before
    for ax, values, fmt in ((axes[0], matrix, "d"), (axes[1], rates, ".1%" if k <= 12 else ".0%")):
        ConfusionMatrixDisplay(values, display_labels=names).plot(ax=ax, colorbar=False, values_format=fmt,
                                                                  xticks_rotation=rotation,
                                                                  text_kw=font and {"fontsize": font})  # fmt: skip
        if font:
            ax.tick_params(labelsize=max(font, 8))
    axes[0].set_title("Counts")
    axes[1].set_title("Row-normalised (recall per true label)")
    return _save(fig, path)


def plot_reliability(bins, ece: float, path: str | Path, n_bins: int = CALIBRATION_BINS, k: int | None = 2,
                     before=None, before_ece: float | None = None) -> Path:  # fmt: skip
    """Accuracy against confidence per bin (`reliability_bins`) over the whole [0, 1] range (a k-class model's
    confidence can be as low as 1/k, marked); the title's ECE is over the same `n_bins` bins. `before`: the bins of
    the uncalibrated scores, drawn as a second curve. `k=None`: a multi-label model's bins, of every label's
    probability against how often the label is there."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if k:
        ax.axvspan(0, 1 / k, color="0.92", label=f"below 1/k = {1 / k:.2f} (impossible)")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    if before is not None:
        ax.plot(before["confidence"], before["accuracy"], "s:", color="tab:orange", alpha=0.8,
                label=f"before calibration (ECE {before_ece:.3f})")  # fmt: skip
    label = "model" if before is None else f"calibrated (ECE {ece:.3f})"
    ax.plot(bins["confidence"], bins["accuracy"], "o-", label=label)
    for _, row in bins.iterrows():
        ax.annotate(f"{int(row['n'])}", (row["confidence"], row["accuracy"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")  # fmt: skip
    title = f"Reliability diagram (ECE {ece:.3f}, {n_bins} bins)"
    if before is not None:
        title = f"Reliability diagram ({n_bins} bins)\nECE {before_ece:.3f} before calibration, {ece:.3f} after"
    axis = ("confidence (max probability)", "accuracy") if k else ("probability of a label", "share of texts with it")
    ax.set(xlabel=axis[0], ylabel=axis[1], title=title)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_risk_coverage(confidence, correct, found: dict, path: str | Path) -> Path:
    """Accuracy on the most confident texts against the share of texts answered (`metrics.risk_coverage`), every
    cut-off drawn, the table's points marked and the 90% point named."""
    import numpy as np

    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    n = len(confidence)
    accuracy = np.cumsum(correct[np.argsort(-confidence, kind="stable")]) / np.arange(1, n + 1)
    measure = found["accuracy_measure"].replace("_", " ")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(np.arange(1, n + 1) / n, accuracy, color="tab:blue", label=f"{measure} of the most confident")
    points = found["points"]
    ax.plot([p["coverage"] for p in points], [p["accuracy"] for p in points], "o", color="tab:blue", ms=4)
    ax.axhline(accuracy[-1], ls=":", color="grey", label=f"answering every text: {accuracy[-1]:.1%}")
    at_90 = next((p for p in points if p["coverage"] == 0.9), None)
    if at_90:
        label = f"90% coverage: {at_90['accuracy']:.1%} (confidence >= {at_90['min_confidence']:.3f})"
        ax.plot(0.9, at_90["accuracy"], "*", ms=14, color="tab:red", mec="black", zorder=3, label=label)
    ax.set(xlabel="coverage (share of texts answered, most confident first)", ylabel=measure, xlim=(0, 1.02),
           title=f"Risk-coverage (AURC {found['aurc']:.4f}, lower is better)")  # fmt: skip
    ax.legend(loc="best", fontsize=8)  # the curve falls from top left to bottom right: most often upper right
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_label_cooccurrence(labels, names: list[str], path: str | Path) -> Path:
    """How often the true labels come together: row label's texts that also hold the column label (the diagonal,
    always 100%, left blank; each row's text count in its name), large enough for 28 labels."""
    import numpy as np

    y = np.asarray(labels, dtype=float)
    together = y.T @ y
    held = np.diag(together).copy()
    rates = together / np.maximum(held[:, None], 1)
    np.fill_diagonal(rates, np.nan)
    k = len(names)
    side = max(5.0, 0.42 * k + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=max(float(np.nanmax(rates, initial=0)), 0.01))
    font = max(6.0, 11 - 0.18 * k)
    for i, j in zip(*np.nonzero(~np.isnan(rates) & (rates >= (0.005 if k <= 12 else 0.05)))):
        ax.text(j, i, f"{rates[i, j]:.0%}", ha="center", va="center", fontsize=font,
                color="white" if rates[i, j] > 0.6 * np.nanmax(rates) else "black")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=90 if k > 6 else 30, fontsize=max(font, 8))
    ax.set_yticks(range(k), [f"{name} ({int(n)})" for name, n in zip(names, held)], fontsize=max(font, 8))
    title = "Label co-occurrence (true labels):\nshare of the row's texts that also hold the column's label"
    ax.set(xlabel="also labelled", ylabel="texts labelled (count)", title=title)
    fig.colorbar(image, ax=ax, fraction=0.04, format=lambda v, _: f"{v:.0%}")
    return _save(fig, path)


def plot_per_label(scores: dict, names: list[str], path: str | Path) -> Path:
    """A multi-label model's F1 per label with its bootstrap 95% interval, precision and recall marked, and each
    label's support (it takes the confusion matrix's place: a text may hold several labels)."""
    shown = [name for name in names if f"f1_{name}" in scores][::-1]
    value = lambda metric: [scores[f"{metric}_{name}"]["value"] for name in shown]  # noqa: E731
    f1 = value("f1")
    errors = [[max(v - scores[f"f1_{n}"]["ci_low"], 0) for v, n in zip(f1, shown)],
              [max(scores[f"f1_{n}"]["ci_high"] - v, 0) for v, n in zip(f1, shown)]]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(shown) + 1.6))
    labels = [f"{name} (n={int(scores[f'support_{name}']['value'])})" for name in shown]
    ax.barh(labels, f1, xerr=errors, alpha=0.75, color="tab:blue", label="F1 (95% CI)")
    ax.plot(value("precision"), labels, "^", color="tab:orange", ms=5, label="precision")
    ax.plot(value("recall"), labels, "o", color="tab:green", ms=5, mfc="none", label="recall")
    ax.set(xlim=(0, 1), xlabel="at the model's decision thresholds", title="Per label: F1, precision and recall")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_confidence_histogram(frame, path: str | Path, k: int | None = 2) -> Path:
    """Confidence of correct and incorrect predictions over [0, 1], in 40 bins; the floor 1/k is marked (none for a
    multi-label model, `k=None`)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(41)]
    if k:
        ax.axvspan(0, 1 / k, color="0.92", label=f"below 1/k = {1 / k:.2f}")
    ax.hist(frame.loc[frame["correct"], "confidence"], bins=bins, alpha=0.7, label="correct")
    ax.hist(frame.loc[~frame["correct"], "confidence"], bins=bins, alpha=0.7, label="incorrect")
    ax.set_xlim(0, 1)
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


def plot_embeddings(xy, frame, names: list[str], path: str | Path, method: str = "PCA", ordinal: bool = False,
                    colour_by: str = "true label") -> Path:  # fmt: skip
    """Every example coloured by its `label` column, what `colour_by` names (`names` in legend order), mistakes
    drawn as crosses on top."""
    fig, ax = plt.subplots(figsize=(7.5, 5.8))
    colours = class_colours(names, ordinal)
    correct = frame["correct"].to_numpy()
    for name in names:
        mask = (frame["label"] == name).to_numpy()
        right, wrong = mask & correct, mask & ~correct
        ax.scatter(xy[right, 0], xy[right, 1], s=9, alpha=0.55, c=colours[name],
                   label=f"{name}: {right.sum()} right")  # fmt: skip
        ax.scatter(xy[wrong, 0], xy[wrong, 1], s=28, marker="x", linewidths=1.3, c=colours[name],
                   label=f"{name}: {wrong.sum()} wrong (x)")  # fmt: skip
    title = f"Sentence embeddings ({method}, mean-pooled last layer)\ncolour = {colour_by}; x = mistake"
    ax.set(title=title, xlabel=f"{method} 1", ylabel=f"{method} 2")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=1.5)
    return _save(fig, path)


SAMPLE_BARS = 8  # labels drawn per sample at most: with more, a row's true and chosen labels and its most probable


def sample_rows(frame, n_each: int = 6):
    """The `n_each` most confident correct predictions, then the `n_each` most confident mistakes, taking the true
    labels in turn (each label's most confident first, so every class shows; ties keep the frame's order); rows of
    `predictions_frame`, with their index."""
    import pandas as pd

    ranked = frame.sort_values("confidence", ascending=False, kind="stable")
    turn = ranked.groupby(["correct", "label"], sort=False).cumcount()  # 0: each label's most confident, 1 next
    ranked = ranked.assign(_turn=turn).sort_values("_turn", kind="stable").drop(columns="_turn")
    return pd.concat([ranked[ranked["correct"]].head(n_each), ranked[~ranked["correct"]].head(n_each)])


def plot_sample_predictions(frame, path: str | Path, n_each: int = 6, colours: dict[str, str] | None = None,
                            thresholds: dict[str, float] | None = None) -> Path:  # fmt: skip
    """Confident correct examples beside the most confident mistakes, each text with a probability bar per label in
    the label's colour (`colours`, else the shared palette), a wrong prediction's bar hatched; any number of labels.
    A multi-label model's `thresholds` are marked on its bars."""
    names = [column.removeprefix("p_") for column in frame.columns if column.startswith("p_")]
    colours = colours or class_colours(names)
    chosen = sample_rows(frame, n_each)
    groups = [("Correct, most confident of each label first", chosen[chosen["correct"]]),
              ("Wrong, most confident of each true label first", chosen[~chosen["correct"]])]  # fmt: skip
    fig = plt.figure(figsize=(13, n_each * (0.95 + 0.22 * min(len(names), SAMPLE_BARS)) + 0.6), layout="constrained")
    fig.suptitle("Sample predictions: each label's probability in its colour; hatched = a wrong prediction"
                 + ("; | = the label's threshold" if thresholds else ""))  # fmt: skip
    for subfig, (title, rows) in zip(fig.subfigures(1, 2, wspace=0.04), groups):
        subfig.suptitle(title, fontweight="bold")
        axes = subfig.subplots(n_each, 1, squeeze=False)[:, 0]
        for ax, (_, row) in zip(axes, rows.iterrows()):
            _prediction_bars(ax, row, names, colours, thresholds)
        for ax in axes[len(rows) :]:
            ax.axis("off")
        if rows.empty:
            axes[0].text(0.5, 0.5, "none in this set", ha="center", va="center", transform=axes[0].transAxes)
    return _save(fig, path)


def _prediction_bars(ax, row, names: list[str], colours: dict[str, str], thresholds: dict | None = None) -> None:
    """One example: its text (wrapped, at most 3 lines) over a horizontal bar per label (a multi-label row: its true
    and chosen labels and the most probable others, at most SAMPLE_BARS, each label chosen but not true hatched)."""
    multi = "missed" in row
    true = set(row["label"].split(";")) if multi else {row["label"]}
    chosen = set(row["predicted"].split(";")) if multi else {row["predicted"]}
    if len(names) > SAMPLE_BARS:
        ranked = sorted(names, key=lambda n: (n not in true | chosen, -row[f"p_{n}"]))[:SAMPLE_BARS]
        names = [n for n in names if n in ranked]
    probs = [row[f"p_{name}"] for name in names]
    wrong = [n in chosen - true for n in names]
    ax.barh(range(len(names)), probs, color=[colours[n] for n in names], height=0.7,
            hatch=["///" if w else "" for w in wrong], edgecolor=["black" if w else "none" for w in wrong])  # fmt: skip
    for y, p in enumerate(probs):
        ax.text(min(p, 1) + 0.01, y, f"{p:.1%}", va="center", fontsize=7)
    for y, name in enumerate(names if thresholds else []):
        ax.plot([thresholds[name]] * 2, [y - 0.45, y + 0.45], color="black", lw=1.5)
    ax.set_yticks(range(len(names)), [f"{n} (true)" if n in true else n for n in names], fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), names):
        if name in true:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    lines = textwrap.wrap(" ".join(str(row["text"]).split()), 62, max_lines=3, placeholder=" …")
    ax.set_title("\n".join(lines), loc="left", fontsize=8)
