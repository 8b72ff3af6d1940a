"""Interruptions, reproducibility, secrets and unsafe models: tests that fail if a run is lost or a token leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

from tests.conftest import ROOT, tiny_args, writable_copy
from tests.hub_server import FakeHub
from tests.test_push import hub_env
from trainer import UserError, files
from trainer.config import load_config
from trainer.modeling import check_safe_folder
from trainer.train import main
from trainer.training.loop import train
from trainer.training.run_dir import last_complete_checkpoint

TIMING_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "eval_runtime",
               "eval_samples_per_second", "eval_steps_per_second", "total_flos", "wall_time_seconds",
               "evaluation_seconds", "final_runtime", "final_samples_per_second", "final_steps_per_second"}  # fmt: skip

# A run slowed down from step 5 on (50 ms a step), so that a kill lands after the first checkpoint (step 4).
SLOW_RUN = """
import sys, time
from transformers import TrainerCallback
from trainer.config import load_config
from trainer.training.loop import train

class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= 4:
            time.sleep(0.05)

train(load_config(sys.argv[1:]), callbacks=[Slow()])
"""


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def comparable(metrics: dict) -> dict:
    """metrics.json without wall-clock figures and the paths that name the run folder."""
    skip = TIMING_KEYS | {"environment", "best_checkpoint"}
    return {k: v for k, v in metrics.items() if k not in skip}


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
def test_sigkill_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(tiny_model_dir, tiny_data, tmp_path):
    flags = ["--max_steps", "16", "--save_steps", "4", "--eval_steps", "4", "--bf16", "false", "--ema_decay", "0.9"]
    reference, ref_metrics = train(load_config(tiny_args(tiny_model_dir, tiny_data, tmp_path / "reference", *flags)))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, *tiny_args(tiny_model_dir, tiny_data, killed, *flags)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while last_complete_checkpoint(killed / "checkpoints", need_ema=True) is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped = last_complete_checkpoint(killed / "checkpoints", need_ema=True)
    assert stopped is not None and not (killed / "metrics.json").exists()  # killed mid-run, after a checkpoint
    # A checkpoint cut off while being written is skipped, not resumed from.
    partial = killed / "checkpoints" / "checkpoint-99"
    partial.mkdir()
    (partial / "trainer_state.json").write_text('{"global_st')

    _, metrics = train(load_config(["--resume", str(killed), "--disable_tqdm", "true"]))
    assert metrics["global_step"] == ref_metrics["global_step"] == 16
    history = json.loads((killed / "log_history.json").read_text())
    expected = json.loads((reference / "log_history.json").read_text())
    # Every step's loss, grad norm and learning rate and every evaluation: exactly equal. Only the closing summary
    # differs: Trainer's train_loss there averages the steps the resumed process ran.
    assert without_timings(history[:-1]) == without_timings(expected[:-1])
    assert history[-1]["step"] == expected[-1]["step"] == 16
    assert metrics["train_loss"] == pytest.approx(ref_metrics["train_loss"], rel=1e-6)  # ours spans all 16 steps
    assert comparable(metrics) | {"train_loss": 0} == comparable(ref_metrics) | {"train_loss": 0}
    final, ref_final = load_file(killed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert all((final[name] == ref_final[name]).all() for name in ref_final)


def test_two_runs_with_the_same_seed_write_identical_metrics(tiny_model_dir, tiny_run, tmp_path):
    data = (tiny_run.parent / "train.tsv", tiny_run.parent / "dev.tsv")  # the session's run: the same flags and data
    runs = [tiny_run, train(load_config(tiny_args(tiny_model_dir, data, tmp_path / "b")))[0]]
    first, second = (json.loads((run / "metrics.json").read_text()) for run in runs)
    assert comparable(first) == comparable(second)
    assert first["environment"]["versions"] == second["environment"]["versions"]
    for name in ("predictions.parquet", "incorrect_predictions.csv", "slices.csv", "behavioral_tests.json"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


def test_an_existing_run_is_never_overwritten_unless_asked(tiny_model_dir, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main(tiny_args(tiny_model_dir, tiny_data, run)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {run} already holds a run: continue it with --resume {run}, replace it with "
        "--overwrite_output_dir true, or choose another --output_dir"
    )
    assert [p.name for p in run.iterdir()] == ["notes.txt"]
    assert main(tiny_args(tiny_model_dir, tiny_data, run, "--overwrite_output_dir", "true")) == 0
    assert (run / "notes.txt").read_text() == "mine" and (run / "metrics.json").is_file()
    assert "overwrite_output_dir" not in (run / "train_config.yaml").read_text()  # a rerun must ask again


def test_atomic_writes_leave_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    files.write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


SECRETS = {"HF_TOKEN": "hf_PLANTEDenvironmentTOKEN0001", "WANDB_API_KEY": "PLANTEDwandbKEY0123456789abcdef01234567"}
FLAG_TOKEN = "hf_PLANTEDflagTOKEN0002"


@pytest.mark.slow  # trains in a subprocess
def test_planted_tokens_never_reach_a_file_a_log_the_card_or_the_hub(tiny_model_dir, tiny_data, tmp_path):
    with FakeHub(tokens={FLAG_TOKEN: "alice", SECRETS["HF_TOKEN"]: "alice"}) as hub:
        env = {**hub_env(hub.url, tmp_path, token=None), **SECRETS, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
        env.pop("WANDB_DIR", None)
        run = tmp_path / "run"
        flags = tiny_args(tiny_model_dir, tiny_data, run, "--push_to_hub", "true", "--hub_model_id", "alice/tiny",
                          "--hub_token", FLAG_TOKEN)  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "trainer.train", *flags], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        card = subprocess.run([sys.executable, "-m", "trainer.card", "--run_dir", str(run)], capture_output=True,
                              text=True, cwd=ROOT, env=env)  # fmt: skip
        assert card.returncode == 0, card.stderr
        uploaded = hub.repo("alice/tiny").files("main")
    assert (run / "wandb").is_dir() and (run / "README.md").is_file()
    written = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    logs = done.stdout + done.stderr + card.stdout + card.stderr
    for secret in (*SECRETS.values(), FLAG_TOKEN):
        assert secret not in logs
        assert not [str(p) for p, data in written.items() if secret.encode() in data], secret
        assert not [name for name, data in uploaded.items() if secret.encode() in data], secret
    assert "--hub_token '***'" in json.loads((run / "metrics.json").read_text())["environment"]["command"]


@pytest.mark.slow  # three push processes, ~6 s
def test_a_push_killed_midway_leaves_the_repo_as_it_was_and_a_rerun_completes(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run")
    with FakeHub(tokens={"hf_alice_0123456789abcdef": "alice"}) as hub:
        env = hub_env(hub.url, tmp_path)
        command = [sys.executable, "-m", "trainer.push", "--run_dir", str(run), "--hub_model_id", "alice/tiny"]
        assert subprocess.run(command, cwd=ROOT, env=env, capture_output=True).returncode == 0
        repo = hub.repo("alice/tiny")
        before = dict(repo.refs)
        metrics = json.loads((run / "metrics.json").read_text())
        files.write_text(run / "metrics.json", json.dumps({**metrics, "retrained": True}))
        hub.delay["preupload"] = 30  # the upload is under way when the process dies
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not any(path.endswith("/preupload/main") for _, path in hub.requests) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert repo.refs == before  # still at the previous commit: nothing half-uploaded
        hub.delay.clear()
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(repo.files("main")["metrics.json"])["retrained"] is True
        assert len(repo.commits) == 3  # the repo's first commit, the first push, the completed rerun


def unsafe_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    BertForSequenceClassification(config).save_pretrained(folder)
    if kind == "pickle":
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a model")
    else:
        settings = json.loads((folder / "config.json").read_text())
        settings["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(settings))
        (folder / "modeling_evil.py").write_text("import os\nos.system('touch /tmp/pwned')\n")
    return folder


@pytest.mark.slow  # four CLI processes, ~7 s
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("pickle", "has only pickle weights (pytorch_model.bin): weights load from safetensors only"),
        ("custom-code", "needs its own code (config.json has auto_map), and remote code is never run here"),
    ],
)
def test_pickle_weights_and_custom_code_are_refused(tmp_path, kind, message):
    folder = unsafe_folder(tmp_path, kind)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_safe_folder(folder)
    evaluate = ["trainer.evaluate", "--model", str(folder), "--data", "x.tsv", "--output_dir", str(tmp_path / "e")]
    for command in (["trainer.predict", "--model", str(folder), "a film"], evaluate):
        done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not os.path.exists("/tmp/pwned")
