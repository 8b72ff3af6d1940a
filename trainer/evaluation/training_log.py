"""A run's training history from the Trainer's log: the table by step, lowest losses, the learning-rate schedule
and grad-norm spikes (`python -m trainer.history`).

It reads a run folder (`log_history.json`, else its latest checkpoint), a `checkpoint-N/` folder or a bare
`trainer_state.json`. Everything but `read_log_history` and `write_history` is a pure function of the log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import UserError, files
from trainer.evaluation.analysis import training_summary
from trainer.evaluation.plots import plot_training_history
from trainer.run_folder import LOG_HISTORY

STATE_FILE = "trainer_state.json"
COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy"]
SPIKE_WINDOW = 20  # a spike is judged against the median of the previous 20 logged grad norms ...
SPIKE_MIN_HISTORY = 5  # ... once at least 5 are there (the first logs of warm-up have nothing to compare with)
KINDS = "a run folder, a checkpoint-N folder or a trainer_state.json"


def history_source(path: str | Path) -> Path:
    """The file holding the log history of `path`: a run folder's log_history.json, else the trainer_state.json of
    the folder itself or of its latest checkpoint-N (under checkpoints/ or directly inside)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass {KINDS}")
    if path.is_file():
        return path
    for candidate in (path / LOG_HISTORY, path / STATE_FILE):
        if candidate.is_file():
            return candidate
    checkpoints = [p for p in [*path.glob("checkpoint-*"), *path.glob("checkpoints/checkpoint-*")]
                   if re.fullmatch(r"checkpoint-\d+", p.name) and (p / STATE_FILE).is_file()]  # fmt: skip
    if not checkpoints:
        raise UserError(f"{path} holds no {LOG_HISTORY}, {STATE_FILE} or checkpoint-N/{STATE_FILE}: pass {KINDS}")
    return max(checkpoints, key=lambda p: int(p.name.split("-")[1])) / STATE_FILE


def read_log_history(path: str | Path) -> tuple[list[dict], Path]:
    """The Trainer's log (a list of dicts, each with a `step`) behind `path`, and the file it came from."""
    source = history_source(path)
    try:
        data = json.loads(source.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{source} is not JSON ({err}): pass {KINDS}") from None
    logs = data.get("log_history") if isinstance(data, dict) else data
    if not isinstance(logs, list) or not all(isinstance(r, dict) and "step" in r for r in logs):
        raise UserError(
            f"{source} is not a trainer_state.json or a log history (a list of Trainer logs, each with a step): "
            f"pass {KINDS}"
        )
    if not any("loss" in r or "eval_loss" in r for r in logs):
        raise UserError(f"{source} has an empty log history (no loss logged): train with --logging_steps N")
    return logs, source


def history_table(log_history: list[dict]) -> pd.DataFrame:
    """One row per logged step: epoch, training loss, learning rate, grad norm, and eval loss / accuracy where an
    evaluation ran at that step (the final train_loss summary entry is left out)."""
    rows = [{k: r[k] for k in COLUMNS if k in r} for r in log_history if "loss" in r or "eval_loss" in r]
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table = table.groupby("step", as_index=False, sort=True).first()  # train and eval logs of one step: one row
    table["step"] = table["step"].astype(int)
    return table.reset_index(drop=True)


def lr_schedule(table: pd.DataFrame) -> dict | None:
    """First, peak and last learning rate with their steps, and the shape: warm-up to the peak, then decay."""
    lr = table.dropna(subset=["learning_rate"])
    if lr.empty:
        return None
    values, steps = lr["learning_rate"].to_numpy(), lr["step"].to_numpy()
    peak = int(np.argmax(values))  # the first of equal maxima: where warm-up ends
    if np.allclose(values, values[0], rtol=1e-9, atol=0):
        shape = "constant"
    elif peak == 0:
        shape = "decay from the first step"
    elif peak == len(values) - 1 or values[-1] >= values[peak]:
        shape = f"rising to step {steps[peak]}"
    else:
        shape = f"warm-up to step {steps[peak]}, then decay"
    return {
        "first": float(values[0]), "first_step": int(steps[0]),
        "peak": float(values[peak]), "peak_step": int(steps[peak]),
        "last": float(values[-1]), "last_step": int(steps[-1]),
        "shape": shape,
    }  # fmt: skip


def grad_norm_spikes(table: pd.DataFrame, factor: float = 3.0) -> pd.DataFrame:
    """Steps whose grad norm is over `factor` times the median of the previous SPIKE_WINDOW logged grad norms
    (judged once SPIKE_MIN_HISTORY are there); columns step, grad_norm, median, ratio.

    The median of earlier values only, so a spike does not raise its own bar and a slow drift is not a spike.
    """
    norms = table.dropna(subset=["grad_norm"])[["step", "grad_norm"]].reset_index(drop=True)
    median = norms["grad_norm"].shift(1).rolling(SPIKE_WINDOW, min_periods=SPIKE_MIN_HISTORY).median()
    spikes = norms.assign(median=median, ratio=norms["grad_norm"] / median)
    return spikes[spikes["grad_norm"] > factor * spikes["median"]].reset_index(drop=True)


def lowest_eval_loss(table: pd.DataFrame) -> dict | None:
    evals = table.dropna(subset=["eval_loss"])
    if evals.empty:
        return None
    low = evals.loc[evals["eval_loss"].idxmin()]  # the first of equal minima
    return {"eval_loss": float(low["eval_loss"]), "step": int(low["step"]), "epoch": _or_none(low["epoch"])}


def history_summary(log_history: list[dict], spike_factor: float = 3.0) -> dict:
    """Lowest training loss (from `training_summary`) and eval loss with their steps, the schedule, the spikes."""
    if spike_factor <= 0:
        raise UserError(f"--spike_factor is {spike_factor}: pass a factor above 0, e.g. 3.0")
    table = history_table(log_history)
    spikes = grad_norm_spikes(table, spike_factor)
    return {
        "lowest_loss": training_summary(log_history).get("lowest_loss"),
        "lowest_eval_loss": lowest_eval_loss(table),
        "learning_rate": lr_schedule(table),
        "spike_rule": f"grad_norm > {spike_factor:g} x median of the previous {SPIKE_WINDOW} logged values",
        "spikes": spikes.to_dict("records"),
    }


def render_history(table: pd.DataFrame, summary: dict, max_rows: int = 40) -> str:
    """The table (head and tail when long) and the findings, as printed by `python -m trainer.history`."""
    shown = table.dropna(axis=1, how="all")
    lines = [shown.to_string(index=False, max_rows=max_rows, float_format=_fmt, na_rep=""), ""]
    if low := summary["lowest_loss"]:
        lines.append(f"lowest training loss {low['loss']:.4f} at step {low['step']}{_epoch(low['epoch'])}")
    if low := summary["lowest_eval_loss"]:
        lines.append(f"lowest eval loss     {low['eval_loss']:.4f} at step {low['step']}{_epoch(low['epoch'])}")
    if lr := summary["learning_rate"]:
        path = f"{lr['first']:.3g} (step {lr['first_step']}) -> peak {lr['peak']:.3g} (step {lr['peak_step']})"
        lines.append(f"learning rate        {path} -> {lr['last']:.3g} (step {lr['last_step']}): {lr['shape']}")
    spikes = summary["spikes"]
    lines.append(f"grad-norm spikes     {len(spikes)} ({summary['spike_rule']})")
    lines += [f"  step {s['step']}: {s['grad_norm']:.3f} ({s['ratio']:.1f}x the median {s['median']:.3f})"
              for s in spikes]  # fmt: skip
    return "\n".join(lines)


def write_history(table: pd.DataFrame, summary: dict, out: Path) -> tuple[Path, Path]:
    """history.csv and training_history.png into `out`; a folder that cannot be written is one UserError line."""
    csv, png = out / "history.csv", out / "training_history.png"
    try:
        files.write_text(csv, table.to_csv(index=False))
        plot_training_history(table, summary, png)
    except OSError as err:
        reason = err.strerror or str(err)
        raise UserError(f"cannot write {err.filename or out} ({reason}): pass --output_dir DIR") from None
    return csv, png


def _or_none(value) -> float | None:
    return None if pd.isna(value) else float(value)


def _epoch(epoch) -> str:
    return "" if epoch is None else f" (epoch {epoch:.2f})"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
