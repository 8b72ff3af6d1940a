"""Publishing to a Hub-compatible server on 127.0.0.1: what is uploaded, what loads back, how failures read."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import ModelCard

from tests.conftest import ROOT, tiny_args, writable_copy
from tests.hub_server import FakeHub

TOKEN = "hf_alice_0123456789abcdef"
EXPECTED = {
    ".gitattributes", "README.md", "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
    "train_config.yaml", "training_args.json", "metrics.json", "log_history.json", "classification_report.txt",
    "incorrect_predictions.csv",
    "slices.csv", "behavioral_tests.json", "error_analysis.md", "training_summary.json", "predictions.parquet",
    "embeddings.parquet", "plots/training_curves.png", "plots/confusion_matrix.png", "plots/reliability_diagram.png",
    "plots/sample_predictions.png",
    "plots/confidence_histogram.png", "plots/slice_accuracy.png", "plots/embeddings_pca.png", "plots/risk_coverage.png",
    "onnx/model.onnx", "onnx/model_quantized.onnx", "onnx/model_fp16.onnx", "onnx/int8_check.json", "data_checks.json",
    "plots/data_checks.png",
}  # fmt: skip


@pytest.fixture
def hub():
    with FakeHub(tokens={TOKEN: "alice", "hf_bob_0123456789abcdef": "bob"}) as server:
        yield server


def hub_env(hub_url: str, tmp_path, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub_url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))
    if token:
        env["HF_TOKEN"] = token
    return env


def push(env: dict, run, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer.push", "--run_dir", str(run), "--retry_wait", "0", *flags],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run as training left it (no ONNX export yet), plus things that must never be uploaded."""
    folder = writable_copy(tiny_run, tmp_path / "tiny-run", "onnx")  # as trained
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "wandb").mkdir()
    (folder / "wandb" / "settings").write_text(f"api_key={TOKEN}\n")
    (folder / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    return folder


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 and a single `error:` line with the fix; retry notices may come before it, a traceback never."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and all("retry" in line for line in lines[:-1]), done.stderr
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr + done.stdout
    for word in words:
        assert word in lines[-1], lines[-1]


@pytest.mark.slow  # a push and a pipeline process, ~8 s
def test_push_uploads_the_allow_list_in_one_commit_and_pipeline_loads_it(hub, run, tmp_path):
    env = hub_env(hub.url, tmp_path)
    done = push(env, run, "--hub_model_id", "alice/tiny-sentiment")
    assert done.returncode == 0, done.stderr
    assert f"pushed {len(EXPECTED) - 1} files to alice/tiny-sentiment" in done.stdout  # all but .gitattributes

    repo = hub.repo("alice/tiny-sentiment")
    files = repo.files("main")
    assert set(files) == EXPECTED  # no checkpoints, .bin, wandb or .env
    assert len(repo.commits) == 2  # the repo's initial commit + ours
    assert all(TOKEN.encode() not in data for data in files.values())
    card = ModelCard(files["README.md"].decode())
    accuracy = json.loads(files["metrics.json"])["accuracy"]
    assert card.data.eval_results[0].metric_value == round(accuracy, 4)
    assert 'pipeline("text-classification", model="alice/tiny-sentiment")' in card.text
    assert (run / "README.md").read_text() == files["README.md"].decode()  # the local card is the pushed card

    code = (
        "from transformers import pipeline\n"
        "hub = pipeline('text-classification', model='alice/tiny-sentiment')\n"
        f"local = pipeline('text-classification', model={str(run)!r})\n"
        "texts = ['good film , really good', 'worst film , really worst']\n"
        "print(hub(texts) == local(texts), sorted({p['label'] for p in hub(texts)}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split(" ", 1)[0] == "True"
    assert set(eval(loaded.stdout.split(" ", 1)[1])) <= {"negative", "positive"}


@pytest.mark.slow  # two push processes, ~6 s
def test_pushing_the_same_run_again_makes_no_commit(hub, run, tmp_path):
    env = hub_env(hub.url, tmp_path)
    assert push(env, run, "--hub_model_id", "alice/again").returncode == 0
    head = hub.repo("alice/again").refs["main"]

    done = push(env, run, "--hub_model_id", "alice/again")
    assert done.returncode == 0 and "nothing to commit" in done.stdout
    assert hub.repo("alice/again").refs["main"] == head


@pytest.mark.slow  # a push process, ~5.5 s
def test_default_repo_id_is_the_users_namespace_and_run_name(hub, run, tmp_path):
    done = push(hub_env(hub.url, tmp_path), run)
    assert done.returncode == 0, done.stderr
    assert set(hub.repo("alice/tiny-run").files("main")) == EXPECTED


@pytest.mark.slow  # two push processes, ~6 s
def test_a_branch_and_a_pull_request_leave_main_alone(hub, run, tmp_path):
    env = hub_env(hub.url, tmp_path)
    assert push(env, run, "--hub_model_id", "alice/branches", "--revision", "dev").returncode == 0
    repo = hub.repo("alice/branches")
    assert "model.safetensors" in repo.files("dev") and "model.safetensors" not in repo.files("main")

    done = push(env, run, "--hub_model_id", "alice/branches", "--create_pr", "--commit_message", "try this")
    assert done.returncode == 0 and "/discussions/1" in done.stdout
    assert "model.safetensors" in repo.files("refs/pr/1") and "model.safetensors" not in repo.files("main")
    assert repo.commits[repo.refs["refs/pr/1"]]["summary"] == "try this"


def test_dry_run_lists_files_with_sizes_and_touches_nothing(hub, run, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    done = push(hub_env(hub.url, tmp_path), run, "--hub_model_id", "alice/dry", "--dry_run")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[-1] for line in done.stdout.splitlines()[1:-1]]
    assert set(listed) == EXPECTED - {".gitattributes"}
    assert "MB  model.safetensors" in done.stdout and "total, 31 files" in done.stdout
    assert "at push  onnx/model_quantized.onnx" in done.stdout  # exported when pushed, not by a dry run
    assert hub.requests == [] and not (run / "README.md").exists()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_no_token_is_one_line_with_how_to_log_in(hub, run, tmp_path):
    one_line_error(push(hub_env(hub.url, tmp_path, token=None), run, "--hub_model_id", "alice/x"), "hf auth login")
    assert hub.repo("alice/x") is None


@pytest.mark.slow  # a push process, ~5.5 s
def test_rejected_token_is_401_with_how_to_log_in(hub, run, tmp_path):
    done = push(hub_env(hub.url, tmp_path, token="hf_not_a_known_token_123"), run, "--hub_model_id", "alice/x")
    one_line_error(done, "401", "hf auth login")


@pytest.mark.slow  # a push process, ~5.5 s
def test_someone_elses_repo_is_403_with_the_fix(hub, run, tmp_path):
    hub.add_repo("bob/their-model")
    done = push(hub_env(hub.url, tmp_path), run, "--hub_model_id", "bob/their-model")
    one_line_error(done, "cannot write to bob/their-model", "--hub_model_id <you>/<name>")
    assert set(hub.repo("bob/their-model").files("main")) == {".gitattributes"}


@pytest.mark.slow  # two push processes, ~6 s
def test_hub_500_leaves_the_repo_at_its_previous_commit_and_a_rerun_completes(hub, run, tmp_path):
    env = hub_env(hub.url, tmp_path)
    hub.fail["commit"] = (500, -1)
    done = push(env, run, "--hub_model_id", "alice/flaky", "--retries", "2")
    one_line_error(done, "500", "rerunning the same command is safe")
    repo = hub.repo("alice/flaky")
    assert set(repo.files("main")) == {".gitattributes"} and len(repo.commits) == 1
    assert sum(path.endswith("/commit/main") for _, path in hub.requests) == 3  # first try + 2 retries

    hub.fail.clear()
    assert push(env, run, "--hub_model_id", "alice/flaky").returncode == 0
    assert set(repo.files("main")) == EXPECTED


@pytest.mark.slow  # a push process, ~5.5 s
def test_transient_500s_are_retried_with_backoff(hub, run, tmp_path):
    hub.fail["commit"] = (503, 2)
    done = push(hub_env(hub.url, tmp_path), run, "--hub_model_id", "alice/retried", "--retries", "3")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("retry") == 2 and set(hub.repo("alice/retried").files("main")) == EXPECTED


@pytest.mark.slow  # a push process, ~5.5 s
def test_unreachable_hub_is_one_line(run, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = push(hub_env(f"http://127.0.0.1:{port}", tmp_path), run, "--hub_model_id", "alice/x", "--retries", "1")
    one_line_error(done, "cannot reach the Hub", "HF_ENDPOINT")


@pytest.mark.parametrize(
    ("change", "flags", "words"),
    [
        ("delete model.safetensors", ["--hub_model_id", "alice/x"], ["folder (missing model.safetensors)"]),
        (None, ["--hub_model_id", "not a repo id"], ["bad repo id", "<user or org>/<name>"]),
        ("plant a token", ["--hub_model_id", "alice/x"], ["classification_report.txt contains one of your tokens"]),
    ],
)  # fmt: skip
def test_bad_runs_and_repo_ids_fail_before_any_upload(hub, run, tmp_path, change, flags, words):
    if change == "delete model.safetensors":
        (run / "model.safetensors").unlink()
    if change == "plant a token":
        (run / "classification_report.txt").write_text(f"leaked {TOKEN}\n")
    one_line_error(push(hub_env(hub.url, tmp_path), run, *flags), *words)
    assert not [path for _, path in hub.requests if "/commit/" in path]


@pytest.mark.slow  # trains in a subprocess
def test_train_push_to_hub_publishes_at_the_end(hub, tiny_model_dir, tiny_data, tmp_path):
    env = hub_env(hub.url, tmp_path)
    flags = tiny_args(tiny_model_dir, tiny_data, tmp_path / "run", "--push_to_hub", "true",
                      "--hub_model_id", "alice/trained", "--hub_token", TOKEN)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "trainer.train", *flags], capture_output=True, text=True, env=env,
                          cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pushed to alice/trained" in done.stdout
    files = hub.repo("alice/trained").files("main")
    assert set(files) == EXPECTED and not any(name.startswith("checkpoints") for name in files)
    saved = (tmp_path / "run" / "train_config.yaml").read_text()
    assert not [key for key in yaml.safe_load(saved) if "hub" in key] and TOKEN not in saved
    assert all(TOKEN.encode() not in data for data in files.values())  # the command line's token is redacted
