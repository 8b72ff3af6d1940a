"""Load labelled text from local files or the Hub, check it, and tokenise it."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from sklearn.model_selection import train_test_split

from trainer import UserError
from trainer.config import DataConfig
from trainer.labels import scale_of

logger = logging.getLogger(__name__)

READERS = {
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False),
    ".csv": lambda p: pd.read_csv(p, keep_default_na=False),
    ".json": lambda p: _read_json(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".parquet": pd.read_parquet,
}

# Hub datasets are read from a local mirror folder when it holds a copy: <mirror>/<owner>/<name> or <mirror>/<name>,
# one file per split named after it (train.parquet, dev.tsv, test-00000-of-00001.parquet). DATA_MIRROR names the
# folder ("" turns the mirror off); by default ../shared/data beside the repository, when it exists.
MIRROR_ENV = "DATA_MIRROR"
DEFAULT_MIRRORS = (Path(__file__).resolve().parents[2] / "shared" / "data", Path("../shared/data"))
SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}
HUB = "the Hugging Face Hub"


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
    if path.suffix.lower() == ".parquet":
        frame.attrs["class_labels"] = parquet_class_labels(path)
    return frame


def parquet_class_labels(path: Path) -> dict[str, list[str]]:
    """{column: names} of the ClassLabel columns that a Hub-style parquet file declares in its schema metadata."""
    import pyarrow.parquet as pq

    try:
        meta = json.loads((pq.read_schema(path).metadata or {}).get(b"huggingface", b"{}"))
    except (ValueError, OSError):
        return {}
    features = (meta.get("info") or {}).get("features") or {}
    return {column: list(feature["names"]) for column, feature in features.items()
            if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")}  # fmt: skip


def data_mirror() -> Path | None:
    """The folder of local dataset copies, or None when there is none (then the Hub is read)."""
    if MIRROR_ENV in os.environ:
        value = os.environ[MIRROR_ENV].strip()
        return Path(value) if value and value.lower() != "none" else None
    return next((path for path in DEFAULT_MIRRORS if path.is_dir()), None)


def mirror_files(dataset_name: str | None) -> tuple[Path, dict[str, Path]] | None:
    """(folder, {split: file}) of the local copy of a Hub dataset, when the mirror holds one."""
    mirror = data_mirror()
    if mirror is None or not dataset_name:
        return None
    for folder in (mirror / dataset_name, mirror / dataset_name.rsplit("/", 1)[-1]):
        if folder.is_dir():
            splits: dict[str, Path] = {}
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in READERS and path.is_file():
                    name = path.stem.split("-")[0].lower()
                    splits.setdefault(SPLIT_ALIASES.get(name, name), path)
            if splits:
                return folder, splits
    return None


def split_source(dataset_name: str, split: str) -> str:
    """Where a split of a Hub dataset is read from: its local file, or the Hub."""
    found = mirror_files(dataset_name)
    return str(found[1][split].resolve()) if found and split in found[1] else f"{HUB} ({dataset_name}:{split})"


def load_split(dataset_name: str, config_name: str | None, split: str) -> pd.DataFrame:
    """One split of a Hub dataset: its local copy when the data mirror has the dataset, else the Hub."""
    found = mirror_files(dataset_name)
    if found is not None:
        folder, splits = found
        if split not in splits:
            raise UserError(
                f"the local copy of {dataset_name} in {folder} has no '{split}' split "
                f"(it has: {', '.join(sorted(splits))}): "
                "name one of those, or carve validation from train with --validation_split_percentage"
            )
        logger.info("reading %s:%s from the local copy %s", dataset_name, split, splits[split])
        return read_table(splits[split])
    logger.info("no local copy of %s:%s; loading it from the Hub", dataset_name, split)
    from datasets import load_dataset

    try:
        dataset = load_dataset(dataset_name, config_name, split=split)
    except Exception as err:  # offline, unknown id, unknown split: all surface the same way to the user
        reason = str(err).splitlines()[0][:160]
        raise UserError(
            f"cannot load split '{split}' of dataset '{dataset_name}' ({reason}): "
            f"check the id and network, put a copy in the data mirror ({MIRROR_ENV}), or pass --train_file"
        ) from None
    frame = dataset.to_pandas()
    frame.attrs["class_labels"] = {column: list(feature.names) for column, feature in dataset.features.items()
                                   if hasattr(feature, "names")}  # fmt: skip
    return frame


def fold_rows(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k stratified, seeded folds of the rows: (rows to keep, rows held out) per fold, each in row order."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    if counts[counts > 0].min() < k:
        raise UserError(f"{k} folds need at least {k} training rows of every label: use fewer folds")
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def stratified_sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of n rows with the label proportions of the whole (rows keep their order)."""
    if not n or n >= len(frame):
        return frame
    try:
        part, _ = train_test_split(frame, train_size=n, stratify=frame["label"], random_state=seed)
    except ValueError:  # a class with a single row, or fewer rows asked for than there are classes
        part = frame.sample(n=n, random_state=seed)
    return part.sort_index().reset_index(drop=True)


@dataclass
class Splits:
    """A run's labelled data (`text`, `label` ids): validation selects the model, test (if any) reports it."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    data_id: str  # the dataset id, or the training file
    sources: dict[str, str]  # split role -> where it was read from
    label_names: list[str]  # in id order: the user's, or the data's

    def datasets(self) -> tuple[Dataset, Dataset, Dataset | None]:
        return tuple(None if f is None else Dataset.from_pandas(f, preserve_index=False)
                     for f in (self.train, self.validation, self.test))  # fmt: skip


def read_role(cfg: DataConfig, role: str) -> tuple[pd.DataFrame, str, str] | None:
    """(frame, name for errors, where it was read) of the train, validation or test data; None when not given."""
    if cfg.train_file:
        file = getattr(cfg, f"{role}_file")
        return (read_table(file), file, str(Path(file).resolve())) if file else None
    split = getattr(cfg, f"{role}_split")
    if split is None:
        return None
    frame = load_split(cfg.dataset_name, cfg.dataset_config_name, split)
    return frame, f"{cfg.dataset_name}:{split}", split_source(cfg.dataset_name, split)


def load_splits(cfg: DataConfig, seed: int = 42) -> Splits:
    """Load, check and subsample the data: seeded stratified subsets, validation carved from train when asked.

    The label names are the user's, else the data's (`Splits.label_names`): a ClassLabel feature's names, or the
    label strings themselves; binary 0/1 ids without names read as negative/positive.
    """
    carve = cfg.validation_split_percentage
    raw, sources = {}, {}
    for role in ("train", "test") if carve else ("train", "validation", "test"):
        found = read_role(cfg, role)
        if found is not None:
            frame, name, sources[role] = found
            raw[role] = (frame, name)
    if "validation" not in raw and not carve:
        raise UserError("--train_file needs --validation_file too, or --validation_split_percentage 10 to carve one")
    names = list(cfg.label_names or label_names_from_data(list(raw.values()), cfg.label_column))
    frames = {role: encode_labels(frame, cfg, name, names) for role, (frame, name) in raw.items()}
    train = frames["train"]
    if train["label"].nunique() < 2:
        raise UserError("training data holds a single label: a classifier needs examples of every class")
    if carve:
        kept, held = train_test_split(train, test_size=carve / 100, stratify=train["label"], random_state=seed)
        train, frames["validation"] = (part.sort_index().reset_index(drop=True) for part in (kept, held))
        sources["validation"] = f"{carve:g}% of train, stratified by label (seed {seed})"
    test = frames.get("test")
    train = stratified_sample(train, cfg.max_train_samples, seed)
    if cfg.num_folds:
        keep, _ = fold_rows(train["label"].to_numpy(), cfg.num_folds, seed)[cfg.leave_out_fold]
        train = train.iloc[keep].reset_index(drop=True)
        sources["train"] = f"{sources['train']}, without fold {cfg.leave_out_fold + 1} of {cfg.num_folds}"
    return Splits(
        train,
        stratified_sample(frames["validation"], cfg.max_eval_samples, seed),
        None if test is None else stratified_sample(test, cfg.max_test_samples, seed),
        cfg.train_file or cfg.dataset_name,
        sources,
        names,
    )


def label_names_from_data(frames: list[tuple[pd.DataFrame, str]], column: str) -> list[str]:
    """Label names in id order when the user gave none: the ClassLabel names the data declares, else its label
    strings (ordered along the sentiment scale when they form one, alphabetically otherwise), else negative/positive
    for 0/1 ids."""
    for frame, _ in frames:
        if names := frame.attrs.get("class_labels", {}).get(column):
            logger.info("label names from the data's ClassLabel feature: %s", ", ".join(names))
            return names
    present = [(frame[column], name) for frame, name in frames if column in frame.columns]
    if not present:
        return ["negative", "positive"]  # the column check in encode_labels says what is wrong
    values, source = present[0]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ids = sorted({int(v) for labels, _ in present for v in pd.to_numeric(labels, errors="coerce").dropna()})
        if set(ids) <= {0, 1}:
            return ["negative", "positive"]
        raise UserError(
            f"{source}: labels are the ids {ids[:8]} and the data names none: pass --label_names with one name per "
            "id, in id order (for example --label_names negative neutral positive)"
        )
    by_case: dict[str, str] = {}  # labels match case-insensitively: the first spelling seen names the class
    for labels, _ in present:
        for value in labels.astype(str).str.strip().unique():
            if value:
                by_case.setdefault(value.lower(), value)
    names = list(by_case.values())
    scale = scale_of(names)
    names = [n for _, n in sorted(zip(scale, names))] if scale else sorted(names, key=str.lower)
    logger.info("label names from the data's label values (id order): %s", ", ".join(names))
    return names


def encode_labels(frame: pd.DataFrame, cfg: DataConfig, source: str, names: list[str] | None = None) -> pd.DataFrame:
    """Keep the text and label columns as `text`/`label` (label ids), checking both."""
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise UserError(
            f"{source}: column '{missing[0]}' not found (columns: {found}): "
            f"pass --text_column/--label_column with the right names"
        )
    labels = frame[cfg.label_column]
    names = list(names or cfg.label_names or ["negative", "positive"])
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
