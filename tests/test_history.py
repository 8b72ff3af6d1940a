"""`python -m trainer.history`: the log history of a run folder, a checkpoint or a trainer_state.json, its lowest
losses, learning-rate schedule and grad-norm spikes, on a hand-written log and on a real tiny run."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, writable_copy
from trainer import UserError
from trainer.evaluation.training_log import (
    grad_norm_spikes,
    history_summary,
    history_table,
    lr_schedule,
    read_log_history,
)
from trainer.history import main


def hand_written_log() -> list[dict]:
    """30 training logs every 10 steps and 3 evaluations, with known extremes:
    - loss 0.70 - 0.02 i, except 0.05 at step 250 (the lowest; the next lowest is 0.12 at step 300);
    - learning rate 1e-5 (i + 1) up to 5e-5 at step 50, then linear decay to 0 at step 300;
    - grad norm alternating 1.0 / 1.2, with 4.0 at step 20 (too early to judge: one value before it) and the one
      spike, 9.0 at step 200: the 19 values before it are ten 1.0, eight 1.2 and the 4.0, median 1.0;
    - eval loss 0.40, 0.30, 0.35 at steps 100, 200, 300 (the lowest at 200)."""
    logs = []
    for i in range(30):
        step = 10 * (i + 1)
        loss = 0.05 if step == 250 else round(0.70 - 0.02 * i, 4)
        lr = 1e-5 * (i + 1) if i <= 4 else 5e-5 * (29 - i) / 25
        norm = {20: 4.0, 200: 9.0}.get(step, 1.0 if i % 2 == 0 else 1.2)
        logs.append({"loss": loss, "grad_norm": norm, "learning_rate": lr, "epoch": step / 1000, "step": step})
        if step % 100 == 0:
            eval_loss, accuracy = {100: (0.40, 0.80), 200: (0.30, 0.85), 300: (0.35, 0.84)}[step]
            logs.append({"eval_loss": eval_loss, "eval_accuracy": accuracy, "eval_runtime": 1.5, "epoch": step / 1000,
                         "step": step})  # fmt: skip
    logs.append({"train_runtime": 60.0, "train_loss": 0.3, "epoch": 0.3, "step": 300})
    return logs


def write_state(folder: Path, logs: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {"log_history": logs, "global_step": logs[-1]["step"], "best_metric": 0.85,
             "best_model_checkpoint": str(folder.parent / "checkpoint-200")}  # fmt: skip
    path = folder / "trainer_state.json"
    path.write_text(json.dumps(state))
    return path


def test_table_has_one_row_per_logged_step_with_evaluations_merged():
    table = history_table(hand_written_log())
    assert table["step"].tolist() == list(range(10, 301, 10))  # the train_loss summary entry is no row
    evals = table.dropna(subset=["eval_loss"])
    assert evals[["step", "eval_loss", "eval_accuracy", "loss"]].values.tolist() == [
        [100, 0.40, 0.80, 0.52], [200, 0.30, 0.85, 0.32], [300, 0.35, 0.84, 0.12]
    ]  # fmt: skip


def test_lowest_losses_schedule_and_the_one_spike_are_the_known_ones():
    summary = history_summary(hand_written_log(), spike_factor=3.0)
    assert summary["lowest_loss"] == {"loss": 0.05, "step": 250, "epoch": 0.25}
    assert summary["lowest_eval_loss"] == {"eval_loss": 0.30, "step": 200, "epoch": 0.2}
    lr = summary["learning_rate"]
    assert (lr["first"], lr["first_step"], lr["peak_step"], lr["last"], lr["last_step"]) == (1e-5, 10, 50, 0.0, 300)
    assert lr["peak"] == pytest.approx(5e-5) and lr["shape"] == "warm-up to step 50, then decay"
    assert summary["spikes"] == [{"step": 200, "grad_norm": 9.0, "median": 1.0, "ratio": 9.0}]


def test_spike_factor_and_schedule_shapes():
    table = history_table(hand_written_log())
    assert grad_norm_spikes(table, factor=9.0).empty  # 9.0 is not over 9 x 1.0
    assert grad_norm_spikes(table, factor=8.9)["step"].tolist() == [200]
    # 1.2 never exceeds 1.5 x its median (1.0 or 1.2); the 4.0 at step 20 has one value before it, so is not judged
    assert grad_norm_spikes(table, factor=1.5)["step"].tolist() == [200]
    flat = pd.DataFrame({"step": [1, 2, 3], "learning_rate": [2e-5] * 3})
    assert lr_schedule(flat)["shape"] == "constant"
    assert lr_schedule(flat.assign(learning_rate=[3e-5, 2e-5, 1e-5]))["shape"] == "decay from the first step"


def make_run(tmp_path: Path) -> Path:
    """A run folder: log_history.json, and checkpoints 20 and 100 (numeric order: checkpoint-100 is the latest)."""
    run = tmp_path / "run"
    logs = hand_written_log()
    write_state(run / "checkpoints" / "checkpoint-20", [r for r in logs if r["step"] <= 20])
    write_state(run / "checkpoints" / "checkpoint-100", [r for r in logs if r["step"] <= 100])
    (run / "log_history.json").write_text(json.dumps(logs))
    return run


def test_the_three_kinds_of_path(tmp_path):
    run = make_run(tmp_path)
    logs, source = read_log_history(run)
    assert source == run / "log_history.json" and logs == hand_written_log()
    checkpoint = run / "checkpoints" / "checkpoint-100"
    assert read_log_history(checkpoint) == read_log_history(checkpoint / "trainer_state.json")
    assert history_table(read_log_history(checkpoint)[0])["step"].max() == 100
    (run / "log_history.json").unlink()  # no log_history.json: the latest checkpoint's state
    assert read_log_history(run)[1] == checkpoint / "trainer_state.json"


def test_writes_csv_and_png_beside_the_input_and_prints_the_findings(tmp_path, capsys):
    state = write_state(tmp_path / "checkpoint-300", hand_written_log())
    assert main([str(state.parent)]) == 0
    out = capsys.readouterr().out
    assert "lowest training loss 0.0500 at step 250 (epoch 0.25)" in out
    assert "lowest eval loss     0.3000 at step 200 (epoch 0.20)" in out
    assert "warm-up to step 50, then decay" in out and "step 200: 9.000 (9.0x the median 1.000)" in out
    written = pd.read_csv(state.parent / "history.csv")
    assert written["step"].tolist() == list(range(10, 301, 10)) and written["loss"].min() == 0.05
    assert (state.parent / "training_history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([str(state), "--output_dir", str(tmp_path / "elsewhere")]) == 0
    assert {p.name for p in (tmp_path / "elsewhere").iterdir()} == {"history.csv", "training_history.png"}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist: pass a run folder, a checkpoint-N folder or a trainer_state.json"),
        ("{not json", "is not JSON"),
        (json.dumps({"best_metric": 0.9}), "is not a trainer_state.json or a log history"),
        (json.dumps([{"loss": 0.5}]), "is not a trainer_state.json or a log history"),
        (json.dumps({"log_history": []}), "has an empty log history (no loss logged): train with --logging_steps N"),
    ],
)
def test_bad_inputs_are_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "trainer_state.json"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_bad_spike_factor_and_unwritable_output_are_one_line(tmp_path, capsys):
    state = write_state(tmp_path / "checkpoint-300", hand_written_log())
    with pytest.raises(UserError, match="--spike_factor is 0.0: pass a factor above 0"):
        history_summary(hand_written_log(), spike_factor=0.0)
    (tmp_path / "a_file").write_text("")
    assert main([str(state), "--output_dir", str(tmp_path / "a_file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot write ") and err.rstrip().endswith("--output_dir DIR")


def test_the_command_in_a_process_fails_in_one_line_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer.history", str(tmp_path / "missing")], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == f"error: {tmp_path / 'missing'} does not exist: pass a run folder, a checkpoint-N folder " \
                          "or a trainer_state.json\n"  # fmt: skip


def test_a_real_runs_history_from_its_folder_and_its_checkpoints(tiny_run, tmp_path, capsys):
    run = writable_copy(tiny_run, tmp_path / "run", "onnx", "*.safetensors")
    logs, source = read_log_history(run)
    assert source == run / "log_history.json"
    table = history_table(logs)
    assert table["step"].tolist() == [1, 2, 3, 4, 5, 6]  # --logging_steps 1, --max_steps 6
    assert table.dropna(subset=["eval_loss"])["step"].tolist() == [3, 6]  # --eval_steps 3
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert history_table(state["log_history"]).equals(table)  # the last checkpoint holds the whole log
    losses = {r["step"]: r["loss"] for r in state["log_history"] if "loss" in r}
    low_step = min(losses, key=losses.get)
    assert history_summary(logs)["lowest_loss"]["step"] == low_step
    lr = history_summary(logs)["learning_rate"]  # quick.yaml's warmup_steps 0.1 of 6 steps: 1 step, linear decay
    assert (lr["first"], lr["peak"], lr["peak_step"], lr["last_step"]) == (0.0, 1e-3, 2, 6)
    assert lr["last"] == pytest.approx(2e-4) and lr["shape"] == "warm-up to step 2, then decay"
    assert main([str(run / "checkpoints" / "checkpoint-3")]) == 0
    assert pd.read_csv(run / "checkpoints" / "checkpoint-3" / "history.csv")["step"].tolist() == [1, 2, 3]
    early_low = min((1, 2, 3), key=losses.get)
    assert f"lowest training loss {losses[early_low]:.4f} at step {early_low}" in capsys.readouterr().out
