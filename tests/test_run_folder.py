"""trainer.run_folder: which model a name means, and the one line for each way it is not there."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.hub_server import FakeHub
from tests.test_push import TOKEN, hub_env
from trainer import run_folder
from trainer.config import DEFAULT_MODEL, PACKAGED_MODELS
from trainer.run_folder import NoModel, is_hub_id, locate_model, locate_run, looks_like_path


@pytest.fixture
def no_hub(monkeypatch):
    """Any download attempt fails the test."""

    def refuse(repo_id):
        raise AssertionError(f"{repo_id} was sent to the Hub")

    monkeypatch.setattr(run_folder, "download_model", refuse)


def test_names_that_look_like_paths_are_never_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("runs/latest", "runs", "./model", "/abs/model", "~/model", "a/b/c", "a\\b", "../model"):
        assert looks_like_path(name) and not is_hub_id(name), name
    assert is_hub_id("alice/sst2-minilm") and is_hub_id("bert-base-uncased") and not looks_like_path("alice/x")
    (tmp_path / "alice").mkdir()  # a folder here: alice/x is meant as a path under it
    assert looks_like_path("alice/x") and not is_hub_id("alice/x")


def test_a_missing_path_is_one_line_and_never_downloaded(tmp_path, no_hub, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = "no model at runs/latest: train one with `make train`, or pass a run folder, a model folder or a Hub id"
    for locate in (locate_model, locate_run):
        with pytest.raises(NoModel) as raised:
            locate("runs/latest")
        assert str(raised.value) == expected
    with pytest.raises(NoModel, match="no model at ./gone: "):
        locate_model("./gone")


def test_a_folder_that_is_not_a_model_says_what_it_lacks(tmp_path, tiny_model_dir, no_hub):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NoModel, match="is a file, not a model folder"):
        locate_model(str(tmp_path / "file.txt"))
    with pytest.raises(NoModel, match=r"has no config\.json, so it holds no model: train one with `make train`"):
        locate_model(str(tmp_path))
    (tmp_path / "checkpoints").mkdir()  # a run that stopped before saving its model
    with pytest.raises(NoModel, match=r'finish the run with `make train ARGS="--resume .*"`'):
        locate_model(str(tmp_path))
    pickled = shutil.copytree(tiny_model_dir, tmp_path / "pickled", ignore=shutil.ignore_patterns("*.safetensors"))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(NoModel, match=r"has only pickle weights \(pytorch_model\.bin\)"):
        locate_model(str(pickled))
    assert locate_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_a_model_folder_is_not_a_finished_run_for_the_card_and_push(tiny_model_dir, tiny_run):
    with pytest.raises(NoModel) as raised:
        locate_run(str(tiny_model_dir))
    assert "is not a finished run folder (missing metrics.json, train_config.yaml)" in str(raised.value)
    assert locate_run(str(tiny_run)) == tiny_run


def test_a_packaged_id_is_its_packages_folder_without_the_hub(no_hub):
    folder = locate_model(DEFAULT_MODEL, PACKAGED_MODELS)
    assert folder.endswith("model") and (Path(folder) / run_folder.WEIGHTS).is_file()
    assert locate_model("alice/x", download=False) == "alice/x"  # left to from_pretrained


def test_a_hub_id_offline_and_not_cached_is_one_line_without_the_host():
    # The tests run with HF_HUB_OFFLINE=1 (conftest), as a machine without a connection does.
    with pytest.raises(NoModel) as raised:
        locate_model("alice/never-pushed")
    message = str(raised.value)
    assert message.startswith("cannot download model alice/never-pushed: not in the local cache")
    assert "\n" not in message and "huggingface.co" not in message


@pytest.mark.slow  # trainer.predict in its own process, ~6-13 s
def test_an_unknown_hub_repo_is_one_line_naming_it_and_not_the_host(tmp_path):
    with FakeHub(tokens={TOKEN: "alice"}) as hub:
        done = subprocess.run([sys.executable, "-m", "trainer.predict", "--model", "alice/unknown", "a fine film"],
                              capture_output=True, text=True, cwd=ROOT, env=hub_env(hub.url, tmp_path),
                              timeout=120)  # fmt: skip
        host = hub.url.split("//")[1]
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot download model alice/unknown: no such repo"), lines
    assert host not in done.stderr and "Traceback" not in done.stderr
