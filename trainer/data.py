"""Load labelled text from local files or the Hub, check it, and tokenise it."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pandas as pd
from datasets import Dataset

from trainer import UserError
from trainer.config import DataConfig

logger = logging.getLogger(__name__)

READERS = {
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False),
    ".csv": lambda p: pd.read_csv(p, keep_default_na=False),
    ".json": lambda p: _read_json(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".parquet": pd.read_parquet,
}

# Hub datasets with a local copy (folder from an environment variable, file per split), read offline first.
LOCAL_MIRRORS = {
    "stanfordnlp/sst2": ("SST2_DIR", "../shared/data/sst2", {"train": "train.tsv", "validation": "dev.tsv"}),
}


def _read_json(path) -> pd.DataFrame:
    try:
        return pd.read_json(path)
    except ValueError:  # JSON Lines saved with a .json suffix
        return pd.read_json(path, lines=True)


MAX_TEXT_CHARS = 100_000  # far beyond any review; a longer "text" is a file that was split wrongly


def not_utf8(err: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {err.object[err.start]:#04x} at byte {err.start}): save the file as UTF-8"


def check_texts(texts: pd.Series, source: str) -> pd.Series:
    """The texts as strings; an empty or missing text, or an absurdly long one, is an error naming its row."""
    empty = (texts.isna() | (texts.astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        raise UserError(
            f"{source}: {int(empty.sum())} empty or missing texts (the first in data row {int(empty.argmax()) + 1}): "
            "remove those rows or fill them in"
        )
    texts = texts.astype(str)
    lengths = texts.str.len().to_numpy()
    if lengths.max(initial=0) > MAX_TEXT_CHARS:
        raise UserError(
            f"{source}: data row {int(lengths.argmax()) + 1} holds {int(lengths.max()):,} characters: the file is "
            f"probably mis-parsed (an unclosed quote, missing line breaks); fix it or split texts over "
            f"{MAX_TEXT_CHARS:,} characters"
        )
    return texts


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read one local file into a DataFrame; bad files raise a one-line UserError."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: unsupported file type '{path.suffix}': use one of {', '.join(READERS)}")
    if not path.is_file():
        raise UserError(f"{path}: file not found: check the path")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty: give a file with a header and labelled rows")
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty: give a file with a header and labelled rows") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: {not_utf8(err)}") from None
    except Exception as err:  # pandas/pyarrow raise many types for malformed files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: cannot read it as {path.suffix[1:]} ({reason}): fix the file or its suffix") from None
    if frame.empty:
        raise UserError(f"{path}: no data rows: give a file with a header and labelled rows")
    return frame


def mirror_file(dataset_name: str | None, split: str) -> Path | None:
    """The local copy of a Hub dataset split, when LOCAL_MIRRORS knows it and the file is there."""
    if dataset_name not in LOCAL_MIRRORS:
        return None
    env, default, files = LOCAL_MIRRORS[dataset_name]
    if split not in files:
        return None
    path = Path(os.environ.get(env) or default) / files[split]
    return path if path.is_file() else None


def load_split(dataset_name: str, config_name: str | None, split: str) -> pd.DataFrame:
    """One split of a Hub dataset: its local copy when there is one, else the Hub."""
    local = mirror_file(dataset_name, split)
    if local is not None:
        return read_table(local)
    logger.info("no local copy of %s:%s; loading it from the Hub", dataset_name, split)
    from datasets import load_dataset

    try:
        return load_dataset(dataset_name, config_name, split=split).to_pandas()
    except Exception as err:  # offline, unknown id, unknown split: all surface the same way to the user
        reason = str(err).splitlines()[0][:160]
        raise UserError(
            f"cannot load split '{split}' of dataset '{dataset_name}' ({reason}): "
            "check the id and network, or pass --train_file/--validation_file"
        ) from None


def load_frames(cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (train, validation, data id) as DataFrames, from local files, a local copy or the Hub."""
    if cfg.train_file:
        if not cfg.validation_file:
            raise UserError("--train_file needs --validation_file too: pass a held-out labelled file")
        return read_table(cfg.train_file), read_table(cfg.validation_file), str(cfg.train_file)
    train = load_split(cfg.dataset_name, cfg.dataset_config_name, cfg.train_split)
    validation = load_split(cfg.dataset_name, cfg.dataset_config_name, cfg.validation_split)
    return train, validation, cfg.dataset_name


def encode_labels(frame: pd.DataFrame, cfg: DataConfig, source: str) -> pd.DataFrame:
    """Keep the text and label columns as `text`/`label` (label ids), checking both."""
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise UserError(
            f"{source}: column '{missing[0]}' not found (columns: {found}): "
            f"pass --text_column/--label_column with the right names"
        )
    labels = frame[cfg.label_column]
    names = list(cfg.label_names)
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        ids = pd.to_numeric(labels, errors="coerce")
        bad = ~ids.isin(range(len(names)))
    else:
        lookup = {name.lower(): i for i, name in enumerate(names)}
        lookup.update({str(i): i for i in range(len(names))})
        ids = labels.astype(str).str.strip().str.lower().map(lookup)
        bad = ids.isna()
    if bad.any():
        found = sorted(map(str, labels[bad].unique()))[:6]
        raise UserError(
            f"{source}: label column '{cfg.label_column}' has values {found} outside the label set "
            f"{names} (ids 0-{len(names) - 1}): fix the data or pass --label_names"
        )
    text = check_texts(frame[cfg.text_column], source)
    return pd.DataFrame({"text": text.to_numpy(), "label": ids.astype(int).to_numpy()})


def load_data(cfg: DataConfig, seed: int = 42) -> tuple[Dataset, Dataset, str]:
    """Load, check and subsample the data; returns (train, validation, data id) with `text` and `label` columns."""
    train, validation, data_id = load_frames(cfg)
    train = encode_labels(train, cfg, cfg.train_file or f"{data_id}:{cfg.train_split}")
    validation = encode_labels(validation, cfg, cfg.validation_file or f"{data_id}:{cfg.validation_split}")
    if train["label"].nunique() < 2:
        raise UserError("training data holds a single label: a classifier needs examples of every class")
    if cfg.max_train_samples and cfg.max_train_samples < len(train):
        train = train.sample(n=cfg.max_train_samples, random_state=seed).reset_index(drop=True)
    if cfg.max_eval_samples:
        validation = validation.head(cfg.max_eval_samples)
    return (
        Dataset.from_pandas(train, preserve_index=False),
        Dataset.from_pandas(validation, preserve_index=False),
        data_id,
    )


def tokenize(dataset: Dataset, tokenizer, max_length: int) -> Dataset:
    """Tokenise without padding (the collator pads per batch) and record lengths for length-grouped batches."""

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    encoded = dataset.map(encode, batched=True, remove_columns=["text"], desc="Tokenising")
    return encoded.rename_column("label", "labels")


def read_texts(path: str, text_column: str) -> list[str]:
    """Unlabelled texts: one per line for .txt; the text column for tables (csv, tsv, json, jsonl, parquet)."""
    if Path(path).suffix.lower() == ".txt":
        if not Path(path).is_file():
            raise UserError(f"{path}: file not found: check the path")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: {not_utf8(err)}") from None
        texts = [line.strip() for line in content.splitlines() if line.strip()]
    else:
        frame = read_table(path)
        if text_column not in frame.columns:
            found = ", ".join(map(str, frame.columns))
            raise UserError(f"{path}: column '{text_column}' not found (columns: {found}): pass --text_column")
        texts = check_texts(frame[text_column], path).tolist()
    if not texts:
        raise UserError(f"{path}: no texts found: give one text per line")
    return texts
