"""Every preset in configs/ trains for real, for a few steps, on its offline data (or a stand-in for IMDb)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import DATA_MIRROR, ROOT, read_sst2
from trainer.config import derive, load_config
from trainer.training.loop import train

pytestmark = [pytest.mark.data_mirror("sst2", "rotten_tomatoes", "sst5", "go_emotions"), pytest.mark.slow]  # 2-5 s
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def long_reviews(n: int, seed: int = 0) -> pd.DataFrame:
    """IMDb-like reviews: several SST-2 sentences of one polarity joined, a few hundred words each."""
    sentences = read_sst2("train", 4000)
    rows = []
    for i in range(n):
        label = i % 2
        pool = sentences[sentences["label"] == label]["sentence"]
        rows.append((" ".join(pool.sample(12, random_state=seed + i)), label))
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The offline data mirror plus an `imdb/` stand-in with IMDb's layout: train and test, no validation."""
    folder = tmp_path_factory.mktemp("mirror")
    for name in ("sst2", "rotten_tomatoes", "sst5", "go_emotions"):
        (folder / name).symlink_to(DATA_MIRROR / name)
    (folder / "imdb").mkdir()
    long_reviews(200).to_parquet(folder / "imdb" / "train-00000-of-00001.parquet")
    long_reviews(40, seed=1000).sort_values("label").to_parquet(
        folder / "imdb" / "test-00000-of-00001.parquet", index=False
    )
    return folder


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_trains_on_its_data(preset, mirror, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_MIRROR", str(mirror))
    cfg = derive(
        load_config(["--config", str(preset)]), model_name_or_path=str(tiny_model_dir), max_length=64, max_steps=2,
        per_device_train_batch_size=8, max_train_samples=64, max_eval_samples=16, max_test_samples=16,
        n_bootstrap=10, output_dir=str(tmp_path / "run"), disable_tqdm=True,
    )  # fmt: skip
    run_dir, metrics = train(cfg)
    assert metrics["global_step"] == 2 and (run_dir / "model.safetensors").is_file()
    counts = metrics["label_counts"]  # seeded stratified subsets: every class, in the data's proportions
    if preset.stem.startswith("go-emotions"):  # multi-label: a seeded random subset, one or more labels a text
        config = json.loads((run_dir / "config.json").read_text())
        assert metrics["multi_label"] and config["problem_type"] == "multi_label_classification"
        grouped = "sentiment" in preset.stem
        assert list(counts["train"]) == (["positive", "negative", "ambiguous", "neutral"] if grouped else
                                         list(config["id2label"].values()))  # fmt: skip
        assert len(counts["train"]) == (4 if grouped else 28) and sum(counts["train"].values()) >= 64
        assert sorted(config["decision_thresholds"]) == sorted(counts["train"])
        assert {"f1_micro", "f1_macro", "hamming_loss"} <= set(metrics["test"])
        return
    k = len(counts["train"])
    assert sum(counts["train"].values()) == 64 and min(counts["train"].values()) >= (28 if k == 2 else 7)
    assert sum(counts["eval"].values()) == 16 and min(counts["eval"].values()) >= (7 if k == 2 else 1)
    read = json.dumps(metrics["data_sources"])
    assert str(mirror.resolve()) in read or str(DATA_MIRROR.resolve()) in read  # read offline; the run says where
    saved = (run_dir / "train_config.yaml").read_text()
    if preset.stem.startswith("sst5"):  # names from the data's ClassLabel feature, saved for reruns
        names = ["very negative", "negative", "neutral", "positive", "very positive"]
        assert list(counts["train"]) == names and metrics["label_set"]["ordinal"]
        assert "label_names:\n- very negative\n- negative\n- neutral" in saved
        assert {"mae", "within_one", "polarity_flips"} <= set(metrics["evaluation"])
        assert "off_by_one" in (run_dir / "error_analysis.md").read_text()
    elif "test_split" in preset.read_text():
        assert counts["test"] == {"negative": 8, "positive": 8}  # a label-sorted split, balanced
        assert 0 <= metrics["test"]["accuracy"]["value"] <= 1
        assert (run_dir / "evaluations" / "test" / "error_analysis.md").is_file()
        assert "test_split: test" in saved
    if "imdb" in preset.stem:  # no validation split: 10% of train selects, test only reports
        assert metrics["data_sources"]["validation"] == "10% of train, stratified by label (seed 42)"


def test_the_imdb_notebook_recipe_checkpoints_every_step_and_its_history_reads(mirror, tiny_model_dir, tmp_path,
                                                                              monkeypatch, capsys):  # fmt: skip
    """`--logging_steps N --save_steps N` on the IMDb preset (which evaluates every 500 steps): evaluation follows,
    the best checkpoint is chosen on the held-out 10% of train, and trainer.history reads a checkpoint's state."""
    from trainer.history import main as history_main

    monkeypatch.setenv("DATA_MIRROR", str(mirror))
    cfg = derive(
        load_config(["--config", str(ROOT / "configs/imdb-minilm.yaml")]), model_name_or_path=str(tiny_model_dir),
        max_length=64, max_steps=4, per_device_train_batch_size=8, logging_steps=2, save_steps=2, save_total_limit=5,
        n_bootstrap=10, output_dir=str(tmp_path / "run"), disable_tqdm=True,
    )  # fmt: skip
    run_dir, metrics = train(cfg)
    evaluated = [entry["step"] for entry in json.loads((run_dir / "log_history.json").read_text())
                 if "eval_accuracy" in entry]  # fmt: skip
    assert evaluated == [2, 4] and metrics["best_step"] in (2, 4)
    checkpoint = run_dir / "checkpoints" / "checkpoint-4"
    capsys.readouterr()
    assert history_main([str(checkpoint), "--output_dir", str(tmp_path / "history")]) == 0
    printed = capsys.readouterr().out
    assert "lowest eval loss" in printed and (tmp_path / "history" / "training_history.png").is_file()
