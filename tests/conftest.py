"""Shared fixtures: a tiny BERT built from a small BertConfig, and small labelled files."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
DATA_MIRROR = Path(os.environ.get("DATA_MIRROR") or ROOT.parent / "shared" / "data")
SST2_DIR = DATA_MIRROR / "sst2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

WORDS = [
    "a",
    "the",
    "film",
    "movie",
    "is",
    "was",
    "good",
    "great",
    "wonderful",
    "moving",
    "fun",
    "best",
    "bad",
    "dull",
    "boring",
    "worst",
    "awful",
    "not",
    "but",
    "and",
    "it",
    ",",
    ".",
    "!",
    "really",
    "very",
    "plot",
    "acting",
    "story",
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "data_mirror(*datasets): reads the data mirror (DATA_MIRROR, default ../shared/data), or these datasets in "
        "it; skipped with the reason when missing, failed instead in CI (CI=true)",
    )


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures, which may read the mirror themselves
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("data_mirror")
    missing = marker and [p for p in (DATA_MIRROR, *(DATA_MIRROR / n for n in marker.args)) if not p.is_dir()]
    if missing:
        reason = f"needs the data mirror: {missing[0]} is missing (set DATA_MIRROR to a copy of ../shared/data)"
        if os.environ.get("CI", "").lower() in {"true", "1"}:  # CI must run every test, so a missing copy fails
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


# The session-wide folders (the tiny model and runs) are shared by hundreds of tests, so they are sealed: no write
# bit for anyone, which stops every user but root; for root (these tests usually run as root) each file is also
# made immutable (chattr +i, ext4/xfs/btrfs/tmpfs), which stops root too, at the first write. Where neither holds
# (root without CAP_LINUX_IMMUTABLE, a file system without the flag), `shared_folders_unchanged` below still fails
# the test that changed one. Copy a sealed folder with `writable_copy` before changing anything in it.
SEALED: list[Path] = []


def seal(folder: Path) -> Path:
    """Make a session-wide folder read-only (see above) and check it after every test."""
    for path in [*folder.rglob("*"), folder]:
        path.chmod(path.stat().st_mode & ~0o222)
    if os.geteuid() == 0 and shutil.which("chattr"):  # fails quietly where the flag is not available
        subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True, check=False)
    SEALED.append(folder)
    return folder


def pytest_sessionfinish(session):
    for folder in SEALED:  # so pytest can delete them with the session's other temporary folders
        if shutil.which("chattr"):
            subprocess.run(["chattr", "-R", "-i", str(folder)], capture_output=True, check=False)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def fingerprint(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its size, modification time and mode: a write changes one of them."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        found[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns, info.st_mode)
    return found


@pytest.fixture(autouse=True)
def shared_folders_unchanged():
    """Fail the test that wrote into a sealed session-wide folder (where the seal itself could not stop it)."""
    before = {folder: fingerprint(folder) for folder in SEALED}
    yield
    for folder, was in before.items():
        now = fingerprint(folder)
        changed = sorted(name for name in was.keys() | now.keys() if was.get(name) != now.get(name))
        if changed:
            pytest.fail(f"this test changed the shared folder {folder} ({', '.join(changed[:5])}): "
                        "change a writable_copy() of it instead")  # fmt: skip


def writable_copy(folder: Path, dest: Path, *skip: str) -> Path:
    """A copy of a sealed folder that a test may change; `skip`: patterns left out (shutil.ignore_patterns)."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(*skip) if skip else None)
    for path in [dest, *dest.rglob("*")]:  # copytree copies the modes, the write bit's absence with them
        path.chmod(path.stat().st_mode | 0o200)
    return dest


def read_sst2(split: str, n: int) -> pd.DataFrame:
    """The first n rows of a real SST-2 file (quotes are literal text, not CSV quoting)."""
    return pd.read_csv(SST2_DIR / f"{split}.tsv", sep="\t", quoting=csv.QUOTE_NONE, nrows=n)


def write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    """Tab-separated, quote characters written as they are (the GLUE convention)."""
    lines = ["\t".join(map(str, frame.columns))] + ["\t".join(map(str, row)) for row in frame.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a 40-word vocabulary, saved like a Hub model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)  # transformers 5: vocab=, a path
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return seal(folder)


def make_tiny_data(folder: Path) -> tuple[Path, Path]:
    """Train/validation tsv files the tiny model can learn: 'good...' positive, 'bad...' negative."""
    rows = [(f"{w} film , really {w}", int(w in {"good", "great", "wonderful", "best"})) for w in WORDS[:16]]
    frame = pd.DataFrame(rows * 4, columns=["sentence", "label"])
    return write_tsv(frame, folder / "train.tsv"), write_tsv(frame.head(16), folder / "dev.tsv")


@pytest.fixture
def tiny_data(tmp_path) -> tuple[Path, Path]:
    return make_tiny_data(tmp_path)


def tiny_args(model_dir, data, run_dir, *extra) -> list[str]:
    """Flags for a 6-step tiny-BERT run with checkpoints at steps 3 and 6."""
    return [
        "--config", str(ROOT / "configs/quick.yaml"),
        "--model_name_or_path", str(model_dir),
        "--train_file", str(data[0]), "--validation_file", str(data[1]),
        "--output_dir", str(run_dir),
        "--max_steps", "6", "--save_steps", "3", "--eval_steps", "3", "--logging_steps", "1",
        "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
        "--disable_tqdm", "true", "--n_bootstrap", "20", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_training(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """train()'s answer for one 6-step tiny run with the full analysis: (run folder, metrics)."""
    from trainer.config import load_config
    from trainer.training.loop import train

    folder = tmp_path_factory.mktemp("tiny-run")
    run, metrics = train(load_config(tiny_args(tiny_model_dir, make_tiny_data(folder), folder / "run")))
    return seal(run), metrics


@pytest.fixture(scope="session")
def tiny_run(tiny_training) -> Path:
    """A finished tiny run folder with the full analysis, sealed: change a writable_copy() of it."""
    return tiny_training[0]


FIVE_LABELS = ["very negative", "negative", "neutral", "positive", "very positive"]
FIVE_WORDS = {  # SST-5 scale -> the words the tiny model learns it from (all in WORDS)
    "very negative": ["worst", "awful"],
    "negative": ["bad", "dull", "boring"],
    "neutral": ["plot", "story", "acting"],
    "positive": ["good", "fun", "moving"],
    "very positive": ["best", "wonderful", "great"],
}


def unnamed_preset(folder: Path) -> Path:
    """configs/quick.yaml without its label names, so a run takes them from the data."""
    lines = (ROOT / "configs/quick.yaml").read_text().splitlines(True)
    (folder / "quick-unnamed.yaml").write_text("".join(line for line in lines if not line.startswith("label_names")))
    return folder / "quick-unnamed.yaml"


def make_five_label_data(folder: Path) -> tuple[Path, Path]:
    """Train/validation CSV files with five string labels (SST-5's names, listed in no particular order)."""
    rows = [(f"{w} film , really {w}", label) for label, words in FIVE_WORDS.items() for w in words]
    frame = pd.DataFrame(rows * 4, columns=["sentence", "label"]).sample(frac=1, random_state=0)
    frame.to_csv(folder / "train5.csv", index=False)
    frame.head(30).to_csv(folder / "dev5.csv", index=False)
    return folder / "train5.csv", folder / "dev5.csv"


@pytest.fixture(scope="session")
def tiny_five_training(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """train()'s answer for a 6-step tiny run on five string labels, names taken from the data: (folder, metrics)."""
    from trainer.config import load_config
    from trainer.training.loop import train

    folder = tmp_path_factory.mktemp("tiny-five-run")
    args = tiny_args(tiny_model_dir, make_five_label_data(folder), folder / "run", "--max_steps", "60")
    args[1] = str(unnamed_preset(folder))
    run, metrics = train(load_config(args))
    return seal(run), metrics


@pytest.fixture(scope="session")
def tiny_five_run(tiny_five_training) -> Path:
    """A finished five-label tiny run folder (SST-5's names) with the full analysis, sealed: see tiny_run."""
    return tiny_five_training[0]


EMOTION_WORDS = {  # emotion -> the words the tiny model learns it from (all in WORDS); a text may carry two
    "joy": ["good", "fun", "great"],
    "anger": ["awful", "worst"],
    "fear": ["boring", "dull"],
    "neutral": ["plot", "story", "acting"],
}


def make_multi_label_data(folder: Path) -> tuple[Path, Path]:
    """Train/validation CSV files of multi-label texts, labels joined by ';' ("joy;fear"), names from the data."""
    single = [(f"{w} film , really {w}", label) for label, words in EMOTION_WORDS.items() for w in words]
    others = [("awful", "anger"), ("dull", "fear"), ("worst", "anger")]
    double = [(f"{a} and {b} film", f"joy;{y}") for a, (b, y) in zip(EMOTION_WORDS["joy"], others)]
    frame = pd.DataFrame((single + double) * 4, columns=["sentence", "label"]).sample(frac=1, random_state=0)
    frame.to_csv(folder / "train_multi.csv", index=False)
    frame.head(26).to_csv(folder / "dev_multi.csv", index=False)
    return folder / "train_multi.csv", folder / "dev_multi.csv"


@pytest.fixture(scope="session")
def tiny_multi_training(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """train()'s answer for a tiny multi-label run (four emotions, one or two per text): (folder, metrics)."""
    from trainer.config import load_config
    from trainer.training.loop import train

    folder = tmp_path_factory.mktemp("tiny-multi-run")
    args = tiny_args(tiny_model_dir, make_multi_label_data(folder), folder / "run", "--max_steps", "60",
                     "--metric_for_best_model", "f1_macro")  # fmt: skip
    args[1] = str(unnamed_preset(folder))
    run, metrics = train(load_config(args))
    return seal(run), metrics


@pytest.fixture(scope="session")
def tiny_multi_run(tiny_multi_training) -> Path:
    """A finished multi-label tiny run folder (joy, anger, fear, neutral) with the full analysis, sealed."""
    return tiny_multi_training[0]


@pytest.fixture(scope="session")
def app_client(tiny_run, tmp_path_factory):
    """The Space's app serving a copy of the tiny run on 127.0.0.1: (gradio_client Client, run folder, app module)."""
    import importlib
    import sys

    from gradio_client import Client

    from model_card import render_card

    run = writable_copy(tiny_run, tmp_path_factory.mktemp("space") / "run")
    (run / "README.md").write_text(render_card(run, "alice/tiny"))
    os.environ["MODEL_ID"] = str(run)
    if str(ROOT / "space") not in sys.path:
        sys.path.insert(0, str(ROOT / "space"))
    app = importlib.import_module("app") if "app" not in sys.modules else importlib.reload(sys.modules["app"])
    server, url = app.serve(port=0)
    yield Client(url, verbose=False), run, app
    server.should_exit = True
