"""Load labelled text from local files or the Hub, check it, and tokenise it."""

from __future__ import annotations

import csv
import dataclasses
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


def mirror_folder(dataset_name: str | None) -> Path | None:
    """The local copy of a Hub dataset in the data mirror (<mirror>/<owner>/<name> or <mirror>/<name>), or None."""
    mirror = data_mirror()
    if mirror is None or not dataset_name:
        return None
    return next((f for f in (mirror / dataset_name, mirror / dataset_name.rsplit("/", 1)[-1]) if f.is_dir()), None)


def mirror_files(dataset_name: str | None) -> tuple[Path, dict[str, Path]] | None:
    """(folder, {split: file}) of a local copy kept as one tsv file per split (GLUE's SST-2: read with quoting off,
    which `datasets` cannot do); None for any other copy, which `datasets.load_dataset` reads as the Hub would."""
    folder = mirror_folder(dataset_name)
    if folder is None:
        return None
    splits: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() == ".tsv" and path.is_file():
            name = path.stem.split("-")[0].lower()
            splits.setdefault(SPLIT_ALIASES.get(name, name), path)
    return (folder, splits) if splits else None


def split_source(dataset_name: str, split: str, config_name: str | None = None) -> str:
    """Where a split of a Hub dataset is read from: its local file, or the Hub."""
    found = mirror_files(dataset_name)
    if found and split in found[1]:
        return str(found[1][split].resolve())
    folder = mirror_folder(dataset_name)
    if folder is not None:
        under = folder / config_name if config_name and (folder / config_name).is_dir() else folder
        files = sorted(
            p
            for p in under.rglob("*")
            if p.suffix.lower() in READERS
            and SPLIT_ALIASES.get(p.stem.split("-")[0].lower(), p.stem.split("-")[0].lower()) == split
        )
        return str(files[0].resolve()) if files else f"{folder.resolve()} ({split})"  # fmt: skip
    return f"{HUB} ({dataset_name}:{split})"


def load_split(dataset_name: str, config_name: str | None, split: str) -> pd.DataFrame:
    """One split of a Hub dataset, read by `datasets.load_dataset` from its local copy when the data mirror has one
    (so configs, splits and features come from the library, as from the Hub), else from the Hub."""
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
    from datasets import load_dataset

    folder = mirror_folder(dataset_name)
    source = str(folder) if folder is not None else dataset_name
    logger.info("loading %s:%s from %s", dataset_name, split, folder or HUB)
    try:
        dataset = load_dataset(source, config_name, split=split)
    except Exception as err:  # offline, unknown id, config or split: all surface the same way to the user
        if folder is not None:
            check_split_exists(folder, config_name, split, dataset_name)
        reason = str(err).splitlines()[0][:200]
        where = f"the local copy {folder}" if folder is not None else HUB
        raise UserError(
            f"cannot load split '{split}' of dataset '{dataset_name}' from {where} ({reason}): check the config "
            f"(--dataset_config_name) and split names, put a copy in the data mirror ({MIRROR_ENV}), or pass "
            "--train_file"
        ) from None
    frame = dataset.to_pandas()
    frame.attrs["class_labels"] = feature_names(dataset.features)
    return frame


def check_split_exists(folder: Path, config_name: str | None, split: str, dataset_name: str) -> None:
    """The one-line error for a split the local copy does not have, naming those it has."""
    from datasets import get_dataset_split_names

    try:
        splits = get_dataset_split_names(str(folder), config_name)
    except Exception:  # an unknown config: the caller's message names it
        return
    if split not in splits:
        raise UserError(
            f"the local copy of {dataset_name} in {folder} has no '{split}' split "
            f"(it has: {', '.join(sorted(splits))}): name one of those, or carve validation from train with "
            "--validation_split_percentage"
        )


def feature_names(features) -> dict[str, list[str]]:
    """{column: label names} of a dataset's ClassLabel columns, and of its columns of lists of ClassLabel ids."""
    out = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", feature)  # List(ClassLabel) / Sequence(ClassLabel): the element's
        if hasattr(inner, "names"):
            out[column] = list(inner.names)
    return out


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
    if is_list_like(frame["label"].iloc[0]):  # multi-label rows: no single class to stratify by
        return frame.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)
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
    label_names: list[str]  # in id order: the user's, or the data's (grouped by --label_map when given)
    multi_label: bool = False  # `label` holds a list of ids per row
    data_label_names: list[str] | None = None  # the data's own names before --label_map grouped them

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
    return frame, f"{cfg.dataset_name}:{split}", split_source(cfg.dataset_name, split, cfg.dataset_config_name)


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
    multi = is_multi_label(list(raw.values()), cfg)
    names = list(cfg.label_names or label_names_from_data(list(raw.values()), cfg, multi))
    frames = {role: encode_labels(frame, cfg, name, names, multi) for role, (frame, name) in raw.items()}
    data_names = names
    if cfg.label_map:
        names, frames = group_labels(frames, names, cfg.label_map, multi)
    if cfg.corrections:
        frames["train"], sources["corrections"] = apply_corrections(frames["train"], cfg, names, multi)
    train = frames["train"]
    if len(set(train["label"].explode() if multi else train["label"])) < 2:
        raise UserError("training data holds a single label: a classifier needs examples of every class")
    if carve:
        kept, held = train_test_split(train, test_size=carve / 100, stratify=None if multi else train["label"],
                                      random_state=seed)  # fmt: skip
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
        multi,
        data_names,
    )


def apply_corrections(train: pd.DataFrame, cfg: DataConfig, names: list[str], multi: bool):
    """The training rows whose text a filled-in relabelling sheet lists take its label: (frame, what changed)."""
    sheet = read_table(cfg.corrections)
    sheet = sheet[sheet.get("label", pd.Series(dtype=str)).astype(str).str.strip() != ""] if "label" in sheet else sheet
    spec = dataclasses.replace(cfg, text_column="text", label_column="label", label_columns=None)
    fixed = encode_labels(sheet, spec, cfg.corrections, names, multi).drop_duplicates("text", keep="last")
    new = train["text"].map(dict(zip(fixed["text"], fixed["label"])))
    matched = new.notna()
    old = train["label"].map(lambda v: tuple(v) if multi else v)
    changed = matched & (new.map(lambda v: tuple(v) if multi and is_list_like(v) else v) != old)
    labels = [n if m else o for n, m, o in zip(new, matched, train["label"])]
    train = train.assign(
        label=labels if multi else np.asarray(labels, dtype=np.int64)
    )  # ids stay ints (map gave floats)
    logger.info("%s: %d training rows matched, %d labels changed", cfg.corrections, matched.sum(), changed.sum())
    return train, f"{cfg.corrections}: {int(changed.sum())} labels changed ({int(matched.sum())} training rows matched)"


def is_list_like(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def is_multi_label(frames: list[tuple[pd.DataFrame, str]], cfg: DataConfig) -> bool:
    """Whether the data gives several labels per text: --label_columns, a label column of lists, or label names
    joined by --label_separator."""
    if cfg.label_columns:
        return True
    for frame, _ in frames:
        if cfg.label_column not in frame.columns:
            continue
        values = frame[cfg.label_column]
        if values.map(is_list_like).any():
            return True
        if (
            not pd.api.types.is_numeric_dtype(values)
            and values.astype(str).str.contains(cfg.label_separator, regex=False).any()
        ):
            return True
    return False


def label_values(frame: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Each row's labels as a list (ids or names) for multi-label data in lists or separated names."""
    values = frame[cfg.label_column]
    return values.map(lambda v: list(v) if is_list_like(v) else
                      [] if pd.isna(v) else [part.strip() for part in str(v).split(cfg.label_separator)
                                             if part.strip()])  # fmt: skip


def label_names_from_data(frames: list[tuple[pd.DataFrame, str]], cfg: DataConfig, multi: bool = False) -> list[str]:
    """Label names in id order when the user gave none: the label columns' names (--label_columns), the ClassLabel
    names the data declares, else its label strings (ordered along the sentiment scale when they form one,
    alphabetically otherwise), else negative/positive for 0/1 ids."""
    column = cfg.label_column
    if cfg.label_columns:
        return list(cfg.label_columns)
    for frame, _ in frames:
        if names := frame.attrs.get("class_labels", {}).get(column):
            logger.info("label names from the data's ClassLabel feature: %s", ", ".join(names))
            return names
    present = [(label_values(frame, cfg).explode().dropna() if multi else frame[column], name)
               for frame, name in frames if column in frame.columns]  # fmt: skip
    if not present:
        return ["negative", "positive"]  # the column check in encode_labels says what is wrong
    values, source = present[0]
    numeric = pd.to_numeric(values, errors="coerce").notna().all() if multi else (
        pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))  # fmt: skip
    if numeric:
        ids = sorted({int(v) for labels, _ in present for v in pd.to_numeric(labels, errors="coerce").dropna()})
        if set(ids) <= {0, 1} and not multi:
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
    scale = None if multi else scale_of(names)
    names = [n for _, n in sorted(zip(scale, names))] if scale else sorted(names, key=str.lower)
    logger.info("label names from the data's label values (id order): %s", ", ".join(names))
    return names


def encode_labels(frame: pd.DataFrame, cfg: DataConfig, source: str, names: list[str] | None = None,
                  multi: bool = False) -> pd.DataFrame:  # fmt: skip
    """Keep the text and label columns as `text`/`label` (label ids; a sorted list of ids per row when `multi`),
    checking both."""
    label_columns = list(cfg.label_columns or [cfg.label_column])
    missing = [c for c in (cfg.text_column, *label_columns) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        flag = "--label_columns" if cfg.label_columns else "--text_column/--label_column"
        raise UserError(
            f"{source}: column '{missing[0]}' not found (columns: {found}): pass {flag} with the right names"
        )
    names = list(names or cfg.label_names or cfg.label_columns or ["negative", "positive"])
    text = check_texts(frame[cfg.text_column], source)
    if cfg.label_columns:
        ids = indicator_labels(frame[label_columns], source)
    elif multi:
        ids = listed_labels(label_values(frame, cfg), names, source, cfg)
    else:
        ids = single_labels(frame[cfg.label_column], names, source, cfg.label_column)
    return pd.DataFrame({"text": text.to_numpy(), "label": ids})


def single_labels(labels: pd.Series, names: list[str], source: str, column: str) -> np.ndarray:
    """Label ids of a column of ids or names, every one in the label set."""
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        ids = pd.to_numeric(labels, errors="coerce")
        bad = ~ids.isin(range(len(names)))
    else:
        lookup = {name.lower(): i for i, name in enumerate(names)}
        lookup.update({str(i): i for i in range(len(names))})
        ids = labels.astype(str).str.strip().str.lower().map(lookup)
        bad = ids.isna() | labels.isna()
    if bad.any():
        found = sorted(map(str, labels[bad].unique()))[:6]
        raise UserError(
            f"{source}: label column '{column}' has values {found} outside the label set "
            f"{names} (ids 0-{len(names) - 1}): fix the data or pass --label_names"
        )
    return ids.astype(int).to_numpy()


def listed_labels(rows: pd.Series, names: list[str], source: str, cfg: DataConfig) -> list[list[int]]:
    """Sorted label ids per row from lists of ids or names; a row without labels or an unknown name is an error."""
    lookup = {name.lower(): i for i, name in enumerate(names)}
    lookup.update({str(i): i for i in range(len(names))})
    out = []
    for row, values in enumerate(rows, start=1):
        if not values:
            raise UserError(f"{source}: data row {row} has no label in '{cfg.label_column}': label it or drop the row")
        ids = [lookup.get(str(v).strip().lower()) for v in values]
        if None in ids:
            unknown = str(values[ids.index(None)])
            raise UserError(
                f"{source}: data row {row} has label '{unknown}', not in the label set {names}: fix the data or pass "
                f"--label_names (labels of one row are joined by {cfg.label_separator!r}: --label_separator)"
            )
        out.append(sorted(set(ids)))
    return out


def indicator_labels(columns: pd.DataFrame, source: str) -> list[list[int]]:
    """Sorted label ids per row from one 0/1 column per label (--label_columns); anything else is an error."""
    values = columns.apply(pd.to_numeric, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.to_numpy().any():
        row, col = map(int, np.argwhere(bad.to_numpy())[0])
        raise UserError(
            f"{source}: label column '{columns.columns[col]}' holds {columns.iat[row, col]} in data row {row + 1}: "
            "--label_columns need 0 or 1 in every row"
        )
    matrix = values.to_numpy(dtype=int)
    return [list(np.flatnonzero(r)) for r in matrix]


def read_label_map(path: str, names: list[str]) -> dict[str, str]:
    """{label: group} from a JSON file {group: [labels]}; unknown labels or a label in two groups are errors."""
    try:
        groups = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError:
        raise UserError(f"--label_map {path}: file not found: give a JSON file {{group: [label, ...]}}") from None
    except ValueError as err:
        raise UserError(f"--label_map {path}: not valid JSON ({err}): give {{group: [label, ...]}}") from None
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise UserError(f"--label_map {path}: give a JSON object {{group: [label, ...]}}")
    lookup = {name.lower(): name for name in names}
    mapping: dict[str, str] = {}
    for group, members in groups.items():
        for member in members:
            name = lookup.get(str(member).strip().lower())
            if name is None:
                raise UserError(f"--label_map {path}: '{member}' (group '{group}') is not a label of the data "
                                f"({', '.join(names)}): fix the mapping or the label names")  # fmt: skip
            if name in mapping and mapping[name] != group:
                raise UserError(f"--label_map {path}: '{member}' is in groups '{mapping[name]}' and '{group}': "
                                "put each label in one group")  # fmt: skip
            mapping[name] = str(group)
    return mapping


def group_labels(frames: dict[str, pd.DataFrame], names: list[str], path: str,
                 multi: bool) -> tuple[list[str], dict[str, pd.DataFrame]]:  # fmt: skip
    """The frames with labels replaced by their groups (--label_map): the groups in the file's order, then the labels
    in no group under their own names; a row of several labels in one group keeps the group once."""
    mapping = read_label_map(path, names)
    grouped = list(dict.fromkeys([*mapping.values(), *(n for n in names if n not in mapping)]))
    new_id = np.array([grouped.index(mapping.get(name, name)) for name in names])
    logger.info("labels grouped by %s: %s", path, ", ".join(grouped))
    out = {}
    for role, frame in frames.items():
        labels = (frame["label"].map(lambda ids: sorted(set(new_id[ids].tolist()))) if multi
                  else pd.Series(new_id[frame["label"].to_numpy()]))  # fmt: skip
        out[role] = frame.assign(label=labels.to_numpy() if not multi else list(labels))
    return grouped, out


def multi_hot(rows, k: int) -> np.ndarray:
    """An (n, k) 0/1 matrix from lists of label ids."""
    matrix = np.zeros((len(rows), k), dtype=np.int64)
    for i, ids in enumerate(rows):
        matrix[i, list(ids)] = 1
    return matrix


def load_labelled(spec: str, cfg: DataConfig, names: list[str], multi: bool = False) -> pd.DataFrame:
    """Labelled data to evaluate on: `spec` is a local file, or a Hub dataset `name[:split]` (default split:
    validation; its config is --dataset_config_name); returns text/label ids (a list of ids per row when `multi`)."""
    if Path(spec).suffix.lower() in READERS:
        frame = read_table(spec)
    else:
        name, _, split = spec.partition(":")
        frame = load_split(name, cfg.dataset_config_name, split or "validation")
    missing = [c for c in cfg.label_columns or [cfg.label_column] if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise UserError(
            f"{spec}: no label column '{missing[0]}' (columns: {found}): pass --label_column (or --label_columns), "
            "or use `python -m trainer.predict --file` for unlabelled data"
        )
    if not cfg.label_map:
        return encode_labels(frame, cfg, spec, names, multi)
    own = label_names_from_data([(frame, spec)], cfg, multi)
    grouped, frames = group_labels({"data": encode_labels(frame, cfg, spec, own, multi)}, own, cfg.label_map, multi)
    if sorted(grouped) != sorted(names):
        raise UserError(f"--label_map {cfg.label_map} makes the labels {grouped}, the model's are {names}: "
                        "give the map the model was trained with")  # fmt: skip
    to_model = np.array([names.index(name) for name in grouped])
    labels = frames["data"]["label"]
    return frames["data"].assign(label=list(labels.map(lambda ids: sorted(to_model[ids].tolist()))) if multi
                                 else to_model[labels.to_numpy()])  # fmt: skip


def tokenize(dataset: Dataset, tokenizer, max_length: int, num_labels: int | None = None) -> Dataset:
    """Tokenise without padding (the collator pads per batch) and record lengths for length-grouped batches. With
    `num_labels` (multi-label data) the label lists become 0/1 float vectors, the targets of the BCE loss."""

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        if num_labels:
            enc["labels"] = multi_hot(batch["label"], num_labels).astype(np.float32).tolist()
        return enc

    drop = ["text", "label"] if num_labels else ["text"]
    encoded = dataset.map(encode, batched=True, remove_columns=drop, desc="Tokenising")
    return encoded if num_labels else encoded.rename_column("label", "labels")


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
