"""Bad input at every entry point: exit code 2, one line naming the problem and the fix, no traceback, and no
file that was in the way changed; in the Space, the one-line message a user sees. One table; each row builds its
input in a fresh folder."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.conftest import ROOT, make_tiny_data, tiny_args, writable_copy
from tests.hub_server import FakeHub
from tests.test_push import TOKEN, hub_env


@dataclass
class Ctx:
    tmp: Path
    model: Path
    train: Path
    dev: Path
    tiny_run: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def run(self) -> Path:
        return writable_copy(self.tiny_run, self.tmp / "run", "onnx")

    def train_args(self, *extra: str, train: Path | None = None, dev: Path | None = None) -> list[str]:
        return tiny_args(self.model, (train or self.train, dev or self.dev), self.tmp / "out", *extra)


@dataclass
class Case:
    entry: str  # an entry point's main(); push: a subprocess against a local Hub; space: an endpoint of the app
    build: Callable[[Ctx], list]  # argv; for the Space, the endpoint and its inputs
    says: str  # a part of the one line
    slow: bool = False  # over ~4 s (see the `slow` marker)
    mirror: str = ""  # the dataset of the data mirror the row reads (see the `data_mirror` marker)
    fresh: bool = False  # as on a fresh clone: its own process, in a folder with no runs/, the Hub a local server


# A fresh clone has no model yet: every command, and the Space, says this one line, and asks the Hub nothing.
NO_MODEL = "no model at runs/latest: train one with `make train`, or pass a run folder, a model folder or a Hub id"


def rows(ctx: Ctx, text: str) -> Path:
    return ctx.write("data.tsv", "sentence\tlabel\n" + text)


def unsafe(ctx: Ctx) -> Path:
    folder = writable_copy(ctx.model, ctx.tmp / "pickle-model")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    return folder


def read_only(ctx: Ctx) -> Path:
    """A folder nothing can be written to; root ignores permissions, so then a read-only filesystem path."""
    if os.geteuid() == 0:
        return Path("/sys/kernel/sentiment-trainer-test")
    folder = ctx.tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "run"


CASES = {
    # train: files
    "train: missing file": Case("train", lambda c: c.train_args(train=c.tmp / "nope.tsv"), "file not found"),
    "train: empty file": Case("train", lambda c: c.train_args(train=c.write("e.tsv", "")), "the file is empty"),
    "train: header only": Case("train", lambda c: c.train_args(train=c.write("h.tsv", "sentence\tlabel\n")), "no data rows"),
    "train: unreadable": Case("train", lambda c: c.train_args(train=c.write("x.parquet", b"not parquet")), "cannot read it as parquet"),
    "train: wrong format": Case("train", lambda c: c.train_args(train=c.write("x.xlsx", "a")), "unsupported file type '.xlsx'"),
    "train: a directory": Case("train", lambda c: c.train_args(train=c.tmp), "unsupported file type"),
    "train: no text column": Case("train", lambda c: c.train_args(train=c.write("t.tsv", "review\tlabel\ngood\t1\n")), "column 'sentence' not found"),
    "train: no label column": Case("train", lambda c: c.train_args(train=c.write("t.tsv", "sentence\tstars\ngood\t1\n")), "column 'label' not found"),
    "train: unknown label": Case("train", lambda c: c.train_args(train=rows(c, "good\tmaybe\nbad\t0\n")), "values ['maybe'] outside the label set"),
    "train: non-binary label": Case("train", lambda c: c.train_args(train=rows(c, "good\t1\nbad\t0\nhuh\t2\n")), "values ['2'] outside the label set"),
    "train: NaN text": Case("train", lambda c: c.train_args(train=rows(c, "good\t1\n\t0\n")), "1 empty or missing texts (the first in data row 2)"),
    "train: blank text": Case("train", lambda c: c.train_args(train=rows(c, "good\t1\n   \t0\n")), "empty or missing texts"),
    "train: non-UTF-8": Case("train", lambda c: c.train_args(train=c.write("l.tsv", b"sentence\tlabel\ncaf\xe9\t1\n")), "not UTF-8 text (byte 0xe9"),
    "train: 1 MB text": Case("train", lambda c: c.train_args(train=rows(c, "good " * 200_000 + "\t1\nbad\t0\n")), "holds 1,000,000 characters"),
    "train: one class": Case("train", lambda c: c.train_args(train=rows(c, "good\t1\ngreat\t1\n")), "a single label"),
    # train: model and options
    "train: wrong model path": Case("train", lambda c: c.train_args("--model_name_or_path", str(c.tmp / "no-model")), "model folder"),
    "train: folder without config": Case("train", lambda c: c.train_args("--model_name_or_path", str(c.tmp)), "has no config.json"),
    "train: pickle weights only": Case("train", lambda c: c.train_args("--model_name_or_path", str(unsafe(c))), "only pickle weights (pytorch_model.bin)"),
    "train: config key typo": Case("train", lambda c: ["--config", str(c.write("p.yaml", "learnin_rate: 1e-4\n"))], "unknown option 'learnin_rate'"),
    "train: flag typo": Case("train", lambda c: c.train_args("--num_train_epoch", "2"), "did you mean --num_train_epochs?"),
    "train: bad YAML": Case("train", lambda c: ["--config", str(c.write("p.yaml", "a: [1,\n"))], "is not valid YAML"),
    "train: missing preset": Case("train", lambda c: ["--config", str(c.tmp / "none.yaml")], "not found: pass one of configs/"),
    "train: negative batch": Case("train", lambda c: c.train_args("--per_device_train_batch_size", "-8"), "per_device_train_batch_size=-8 must be at least 1"),
    "train: zero batch": Case("train", lambda c: c.train_args("--per_device_train_batch_size", "0"), "must be at least 1"),
    "train: max_steps 0": Case("train", lambda c: c.train_args("--max_steps", "0"), "max_steps=0 trains nothing"),
    "train: output is a file": Case("train", lambda c: tiny_args(c.model, (c.train, c.dev), c.write("taken", "x")), "is a file"),
    "train: read-only output": Case("train", lambda c: tiny_args(c.model, (c.train, c.dev), read_only(c)), "cannot write"),
    "train: existing run": Case("train", lambda c: tiny_args(c.model, (c.train, c.dev), c.run()), "already holds a run"),
    "train: resume nothing": Case("train", lambda c: ["--resume", str(c.tmp / "nothing")], "no run to resume there"),
    "train: test split selects": Case("train", lambda c: c.train_args("--train_file", "", "--dataset_name", "stanfordnlp/sst2", "--test_split", "validation"), "a test split must be held out"),
    "train: split not in mirror": Case("train", lambda c: c.train_args("--train_file", "", "--dataset_name", "stanfordnlp/sst2", "--test_split", "test"), "has no 'test' split (it has: train, validation)", mirror="sst2"),
    "train: steps disagree": Case("train", lambda c: c.train_args("--save_steps", "3", "--eval_steps", "2"), "pass --eval_steps 3, or --save_steps 2"),
    "train: bad validation share": Case("train", lambda c: c.train_args("--validation_split_percentage", "80"), "must be in (0, 50]"),
    # check_data and the data checks of train
    "check_data: missing --check_against": Case("check_data", lambda c: ["--report_dir", str(c.tmp / "dc"), *c.train_args("--check_against", str(c.tmp / "nope.tsv"), "--check_mirror", "false")], "nope.tsv: file not found: pass a labelled file or a Hub dataset id"),
    "check_data: strict with overlap": Case("check_data", lambda c: ["--report_dir", str(c.tmp / "dc"), *c.train_args("--strict_data", "--check_mirror", "false")], "--strict_data: 16 validation texts are also in train"),
    "train: drop_overlap drops all": Case("train", lambda c: c.train_args("--drop_overlap", "--check_mirror", "false"), "--drop_overlap would remove every training row"),
    "train: strict with overlap": Case("train", lambda c: c.train_args("--strict_data", "--check_mirror", "false"), "--strict_data: 16 validation texts are also in train"),
    # train: multi-label data and calibration
    "train: multi-label row without label": Case("train", lambda c: c.train_args("--label_names", "joy", "fear", train=c.write("m.csv", "sentence,label\ngood,joy;fear\nbad,\n")), "data row 2 has no label in 'label'"),
    "train: multi-label unknown name": Case("train", lambda c: c.train_args("--label_names", "joy", "fear", train=c.write("m.csv", "sentence,label\ngood,joy;fear\nbad,anger\n")), "has label 'anger', not in the label set"),
    "train: label column not 0/1": Case("train", lambda c: c.train_args("--label_columns", "joy", "fear", train=c.write("m.csv", "sentence,joy,fear\ngood,1,0\nbad,2,1\n")), "label column 'joy' holds 2 in data row 2"),
    "train: label_map unknown label": Case("train", lambda c: c.train_args("--label_map", str(c.write("map.json", '{"good side": ["positive", "delight"]}'))), "'delight' (group 'good side') is not a label of the data"),
    "train: label_map not JSON": Case("train", lambda c: c.train_args("--label_map", str(c.write("map.json", "{positive"))), "not valid JSON"),
    "train: unknown calibration": Case("train", lambda c: c.train_args("--calibrate", "platt"), "calibrate='platt': use one of temperature, none"),
    "predict: min_confidence out of range": Case("predict", lambda c: ["--model", str(c.run()), "--min_confidence", "1.5", "ok"], "--min_confidence 1.5: use a probability in [0, 1)"),
    "predict: threshold out of range": Case("predict", lambda c: ["--model", str(c.run()), "--threshold", "0", "ok"], "--threshold 0.0: use a probability in (0, 1)"),
    "predict: threshold on single-label": Case("predict", lambda c: ["--model", str(c.run()), "--threshold", "0.3", "ok"], "a decision threshold is for multi-label models"),
    "evaluate: min_confidence out of range": Case("evaluate", lambda c: ["--model", str(c.run()), "--data", str(c.dev), "--output_dir", str(c.tmp / "e"), "--min_confidence", "-0.1"], "--min_confidence -0.1: use a probability in [0, 1)"),
    # evaluate, predict, card, bench, hpo
    "evaluate: missing data": Case("evaluate", lambda c: ["--model", str(c.run()), "--data", str(c.tmp / "no.tsv"), "--output_dir", str(c.tmp / "e")], "file not found"),
    "evaluate: no label column": Case("evaluate", lambda c: ["--model", str(c.run()), "--data", str(c.write("u.tsv", "sentence\ngood\n")), "--output_dir", str(c.tmp / "e")], "no label column 'label'"),
    "evaluate: wrong model": Case("evaluate", lambda c: ["--model", str(c.tmp / "gone"), "--data", str(c.dev), "--output_dir", str(c.tmp / "e")], "no model at"),
    "compare: not a run": Case("compare", lambda c: [str(c.run()), str(c.tmp / "gone"), "--output_dir", str(c.tmp / "c")], "no model at"),
    "compare: no predictions": Case("compare", lambda c: [str(c.run()), str(run_b(c, "no predictions")), "--output_dir", str(c.tmp / "c")], "has no predictions.parquet"),
    "compare: different texts": Case("compare", lambda c: [str(c.run()), str(run_b(c, "fewer texts")), "--output_dir", str(c.tmp / "c")], "predictions are on different texts (A: 16, B: 10"),
    "compare: different label sets": Case("compare", lambda c: [str(c.run()), str(run_b(c, "other labels")), "--output_dir", str(c.tmp / "c")], "different label sets (A: negative, positive; B: bad, good)"),
    "compare: missing data": Case("compare", lambda c: [str(r := c.run()), str(r), "--data", str(c.tmp / "no.tsv"), "--output_dir", str(c.tmp / "c")], "file not found"),
    "compare: no resamples": Case("compare", lambda c: [str(r := c.run()), str(r), "--n_bootstrap", "0", "--output_dir", str(c.tmp / "c")], "--n_bootstrap 0: use at least 1"),
    "label_next: missing texts": Case("label_next", lambda c: ["--model", str(c.run()), "--texts", str(c.tmp / "no.txt")], "file not found"),
    "label_next: nothing to choose from": Case("label_next", lambda c: ["--model", str(c.run())], "nothing to choose from: pass --texts FILE"),
    "label_next: relabel without analysis": Case("label_next", lambda c: ["--relabel", str(c.tmp)], "no predictions here: pass a run folder"),
    "label_next: zero texts wanted": Case("label_next", lambda c: ["--model", str(c.run()), "--texts", str(c.write("u.txt", "a film\n")), "--n", "0"], "--n 0: choose at least one text"),
    "predict: nothing to classify": Case("predict", lambda c: ["--model", str(c.run())], "nothing to classify"),
    "predict: empty file": Case("predict", lambda c: ["--model", str(c.run()), "--file", str(c.write("e.txt", "\n \n"))], "no texts found"),
    "predict: non-UTF-8 file": Case("predict", lambda c: ["--model", str(c.run()), "--file", str(c.write("b.txt", b"bon\xe9\n"))], "not UTF-8 text"),
    "predict: 1 MB text": Case("predict", lambda c: ["--model", str(c.run()), "x" * 1_000_000], "holds 1,000,000 characters"),
    "predict: zero batch": Case("predict", lambda c: ["--model", str(c.run()), "--batch_size", "0", "ok"], "--batch_size 0"),
    "predict: custom code": Case("predict", lambda c: ["--model", str(custom_code(c)), "ok"], "remote code is never run here"),
    "history: missing path": Case("history", lambda c: [str(c.tmp / "nowhere")], "does not exist: pass a run folder"),
    "history: not a log": Case("history", lambda c: [str(c.write("trainer_state.json", "[1, 2]"))], "trainer_state"),
    "card: not a run": Case("card", lambda c: ["--run_dir", str(c.tmp / "none")], "train one with `make train`"),
    "bench: wrong model": Case("bench", lambda c: ["--quick", "--model", str(c.tmp / "none"), "--output", str(c.tmp / "b.json")], "model folder", slow=True),
    "bench: output read-only": Case("bench", lambda c: ["--quick", "--output", str(read_only(c) / "b.json")], "cannot write"),
    "gpu_check: output read-only": Case("gpu_check", lambda c: ["--output", str(read_only(c) / "g.json")], "cannot write"),
    "gpu_check: student model missing": Case("gpu_check", lambda c: ["--student_model", str(c.tmp / "none"), "--output", str(c.tmp / "g.json")], "model folder"),
    "gpu_check: negative time limit": Case("gpu_check", lambda c: ["--time_limit", "-5", "--output", str(c.tmp / "g.json")], "--time_limit -5"),
    "transformers_js: not a run": Case("transformers_js", lambda c: ["--model", str(c.tmp / "none")], "train one with `make train`"),
    "transformers_js: unknown dtype": Case("transformers_js", lambda c: ["--model", str(c.run()), "--dtype", "q4", "--n", "2"], "unknown dtype q4"),
    "transformers_js: no texts": Case("transformers_js", lambda c: ["--model", str(c.run()), "--n", "0"], "--n 0"),
    "hpo: no trials": Case("hpo", lambda c: ["--n_trials", "0"], "run at least one trial"),
    "hpo: search space typo": Case("hpo", lambda c: ["--n_trials", "1", "--search_space", str(c.write("s.yaml", yaml.safe_dump({"learnin_rate": [1e-5]})))], "unknown option 'learnin_rate'"),
    # push: a subprocess against the local Hub
    "push: no token": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "alice/x", "@no-token"], "hf auth login"),
    "push: bad repo id": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "not a repo/id!"], "repo id"),
    "push: incomplete run": Case("push", lambda c: ["--run_dir", str(c.tmp), "--hub_model_id", "alice/x"], "model.safetensors"),
    "push: 401": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "alice/x", "@bad-token"], "401", slow=True),
    "push: 403": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "bob/x"], "403", slow=True),
    "push: 404": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "alice/x", "--revision", "dev", "@fail:branch:404"], "404", slow=True),
    "push: 500": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "alice/x", "--retries", "1", "@fail:commit:500"], "500", slow=True),
    "push: connection refused": Case("push", lambda c: ["--run_dir", str(c.run()), "--hub_model_id", "alice/x", "--retries", "0", "@refused"], "cannot reach", slow=True),
    "push_space: local model": Case("push_space", lambda c: ["--model_id", str(c.run())], "push the model first"),
    "launch: no processes": Case("launch", lambda c: ["--nproc_per_node", "0", "-m", "trainer.train"], "start at least one process"),
    # no model yet: a fresh clone, every default as the Makefile passes it (the Space: make space)
    "predict: no model yet": Case("predict", lambda c: ["a fine film"], NO_MODEL, slow=True, fresh=True),
    "evaluate: no model yet": Case("evaluate", lambda c: ["--data", str(c.dev), "--output_dir", str(c.tmp / "e")], NO_MODEL, slow=True, fresh=True),
    "card: no model yet": Case("card", lambda c: [], NO_MODEL, fresh=True),
    "push: no model yet": Case("push", lambda c: [], NO_MODEL, fresh=True),
    "space: no model yet": Case("space", lambda c: [], NO_MODEL, slow=True, fresh=True),
    # the Space: its endpoints through gradio_client, as a visitor's browser calls them
    "space: empty text": Case("space", lambda c: ["/predict", "   "], "Type a sentence first"),
    "space: over-long text": Case("space", lambda c: ["/explain", "x" * 2001], "2,001 characters; the limit is 2,000"),
    "space: non-UTF-8 upload": Case("space", lambda c: ["/batch", "", handle_file(str(c.write("u.txt", b"caf\xe9\n")))], "u.txt is not UTF-8 text"),
    "space: table without text": Case("space", lambda c: ["/batch", "", handle_file(str(c.write("u.csv", "a,b\n1,2\n")))], "no column named text or sentence (columns: a, b)"),
    "space: nothing to score": Case("space", lambda c: ["/batch", " \n ", None], "No text found in the text box"),
    "space: too many lines": Case("space", lambda c: ["/batch", "x\n" * 5001, None], "the text box has 5,001 texts; the limit is 5,000"),
}  # fmt: skip


def run_b(ctx: Ctx, change: str) -> Path:
    """A second copy of the tiny run, changed: without its predictions, on fewer texts, or on other label names."""
    folder = writable_copy(ctx.tiny_run, ctx.tmp / "run-b", "onnx", "checkpoints")
    predictions = folder / "predictions.parquet"
    if change == "no predictions":
        predictions.unlink()
    elif change == "fewer texts":
        pd.read_parquet(predictions).head(10).to_parquet(predictions)
    else:
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["label_set"]["names"] = ["bad", "good"]
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def custom_code(ctx: Ctx) -> Path:
    folder = writable_copy(ctx.model, ctx.tmp / "custom-model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    return folder


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def problems(stderr: str) -> list[str]:
    """What a user reads: stderr without progress bars, log lines and retry notices."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not re.search(r"\d+%\|", line)
        and not line.startswith(("INFO", "WARNING", "[transformers]"))
        and "retry" not in line
    ]


def run_entry(entry: str, argv: list[str], ctx: Ctx, capsys) -> tuple[int, str]:
    if entry == "push":
        return run_push(argv, ctx)
    from trainer.bench import main as bench_main
    from trainer.card import main as card_main
    from trainer.check_data import main as check_data_main
    from trainer.compare import main as compare_main
    from trainer.evaluate import main as evaluate_main
    from trainer.gpu_check import main as gpu_check_main
    from trainer.history import main as history_main
    from trainer.hpo import main as hpo_main
    from trainer.label_next import main as label_next_main
    from trainer.launch import main as launch_main
    from trainer.predict import main as predict_main
    from trainer.push_space import main as push_space_main
    from trainer.train import main as train_main
    from trainer.transformers_js import main as transformers_js_main

    mains = {"train": train_main, "evaluate": evaluate_main, "predict": predict_main, "card": card_main,
             "bench": bench_main, "hpo": hpo_main, "push_space": push_space_main, "launch": launch_main,
             "history": history_main, "compare": compare_main, "check_data": check_data_main,
             "label_next": label_next_main, "gpu_check": gpu_check_main,
             "transformers_js": transformers_js_main}  # fmt: skip
    capsys.readouterr()
    code = mains[entry](argv)
    return code, capsys.readouterr().err


def run_push(argv: list[str], ctx: Ctx) -> tuple[int, str]:
    markers = [a for a in argv if a.startswith("@")]
    argv = [a for a in argv if not a.startswith("@")]
    with FakeHub(tokens={TOKEN: "alice"}) as hub:
        hub.add_repo("bob/x")
        for marker in markers:
            if marker.startswith("@fail:"):
                _, endpoint, status = marker.split(":")
                hub.fail[endpoint] = (int(status), -1)
        token = None if "@no-token" in markers else "hf_unknown_0123456789" if "@bad-token" in markers else TOKEN
        env = hub_env(hub.url, ctx.tmp, token=token)
        if "@refused" in markers:
            env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens on the discard port
        done = subprocess.run([sys.executable, "-m", "trainer.push", "--retry_wait", "0", *argv],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)  # fmt: skip
    return done.returncode, done.stderr


def run_fresh(entry: str, argv: list[str], ctx: Ctx) -> tuple[int, str, list]:
    """A command as a user runs it on a fresh clone: its own process in a folder with no runs/, online, the Hub a local
    server whose requests come back with the exit code and stderr."""
    clone = ctx.tmp / "clone"
    clone.mkdir()
    command = ["app.py"] if entry == "space" else ["-m", f"trainer.{entry}"]
    with FakeHub(tokens={TOKEN: "alice"}) as hub:
        env = {**hub_env(hub.url, ctx.tmp), "MODEL_ID": "runs/latest"}
        done = subprocess.run([sys.executable, *command, *argv], capture_output=True, text=True,
                              cwd=ROOT / "space" if entry == "space" else clone, env=env, timeout=120)  # fmt: skip
    return done.returncode, done.stderr, hub.requests


def space_message(client, argv: list) -> str:
    """What the visitor reads when the endpoint refuses the input: the app's gr.Error message."""
    endpoint, *inputs = argv
    with pytest.raises(AppError) as raised:
        client.predict(*inputs, api_name=endpoint)
    return str(raised.value)


def marks(case: Case) -> list:
    """The row's markers: slow, and the data mirror it reads."""
    return ([pytest.mark.slow] if case.slow else []) + ([pytest.mark.data_mirror(case.mirror)] if case.mirror else [])


ROWS = [pytest.param(name, marks=marks(case)) for name, case in CASES.items()]


@pytest.mark.parametrize("name", ROWS)
def test_bad_input(name, tmp_path, tiny_model_dir, tiny_run, capsys, monkeypatch, request):
    case = CASES[name]
    monkeypatch.chdir(ROOT)
    train, dev = make_tiny_data(tmp_path)
    ctx = Ctx(tmp_path, tiny_model_dir, train, dev, tiny_run)
    argv = case.build(ctx)
    before = snapshot(tmp_path)
    if case.entry == "space" and not case.fresh:
        client, _, app = request.getfixturevalue("app_client")
        capsys.readouterr()
        message = space_message(client, argv)
        assert "\n" not in message and case.says in message, message
        assert "Traceback" not in message + capsys.readouterr().err  # nor in the server's log
        expected = app.MODEL.labels[int(app.MODEL.predict_proba(["good film"])[0].argmax())]
        assert client.predict("good film", api_name="/predict")["label"] == expected  # and it still answers
    else:
        if case.fresh:
            code, stderr, requests = run_fresh(case.entry, argv, ctx)
            assert requests == [] and "huggingface.co" not in stderr, requests  # a path is never sent to the Hub
            assert problems(stderr) == [f"error: {case.says}"], stderr[-3000:]  # word for word, from every command
        else:
            code, stderr = run_entry(case.entry, argv, ctx, capsys)
        assert code == 2, stderr[-3000:]
        lines = problems(stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
        assert case.says in lines[0], lines[0]
        assert "Traceback" not in stderr
        assert TOKEN not in stderr
    for path, data in before.items():  # nothing that was there is changed or gone
        assert path.is_file() and path.read_bytes() == data, path


def test_every_entry_point_of_the_product_has_rows():
    """Each module of trainer/ with a main() (the commands the Makefile and README run), and the Space."""
    commands = {path.stem for path in (ROOT / "trainer").glob("*.py") if "\ndef main(" in path.read_text()}
    assert {case.entry for case in CASES.values()} == commands | {"space"}


HELP_ENTRIES = sorted(path.stem for path in (ROOT / "trainer").glob("*.py") if "\ndef main(" in path.read_text())
SPACE_SCRIPTS = ["benchmark.py", "browser.py"]  # the Space folder's own command-line tools


@pytest.mark.parametrize("entry", HELP_ENTRIES)
def test_help_works(entry, capsys):
    """`python -m trainer.X --help` prints usage and every flag's help, and exits 0: a `%` in a help text ("95%
    intervals") is printed as written, not read as a %-format. In this process: the parsers are the ones `-m` runs."""
    module = importlib.import_module(f"trainer.{entry}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err[-3000:]
    assert "usage:" in out and "Traceback" not in err
    if entry == "train":
        assert "Bootstrap resamples for the metrics' 95% intervals." in " ".join(out.split())


@pytest.mark.parametrize("script", SPACE_SCRIPTS)
def test_space_tools_help_works(script):
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT / "space",
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-3000:]


def test_a_percent_in_help_text_is_printed_as_written():
    import argparse

    from trainer import DefaultsHelpFormatter, HelpFormatter

    for formatter in (HelpFormatter, DefaultsHelpFormatter):
        parser = argparse.ArgumentParser(prog="x", formatter_class=formatter)
        parser.add_argument("--n", type=int, default=7, help="95% intervals, 100%% sure, default %(default)s")
        text = " ".join(parser.format_help().split())
        assert "95% intervals, 100% sure, default 7" in text, text
