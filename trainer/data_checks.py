"""Data checks before training: duplicates, overlap between splits and with other datasets, conflicting labels,
label balance, empty and non-text rows, and the texts the token limit cuts. Pure functions over the loaded splits,
the reference texts and the token lengths; writing the report and its picture is `write_report`'s."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import UserError
from trainer.data import READERS, SPLIT_ALIASES, data_mirror, load_split, mirror_folder, read_table

logger = logging.getLogger(__name__)

ROLES = ("train", "validation", "test")
NOT_LETTERS_OR_DIGITS = re.compile(r"[\W_]+")  # Unicode letters and digits are kept
MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf]")  # a UTF-8 lead byte and a continuation byte, as Latin-1
NEAR_EMPTY = 2  # a text with fewer letters and digits than this says nothing
URL_ONLY = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$", re.IGNORECASE)
MARKUP = re.compile(r"</?[A-Za-z][^>]*>|&(?:[A-Za-z]+|#\d+);")
TEXT_COLUMNS = ("text", "sentence")  # where another dataset keeps its texts, after the run's own --text_column
EXAMPLES = 3  # example texts kept per finding
NORMALISATION = "lowercased, everything but letters and digits removed, UTF-8 read as Latin-1 repaired"


def repair(text: str) -> str:
    """UTF-8 that was read as Latin-1 ("clichÃ©"), decoded again; any other text as it is."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def normalise(texts: pd.Series) -> pd.Series:
    """Texts as compared: lowercased, everything but letters and digits removed (after repairing UTF-8 read as
    Latin-1, as in rotten_tomatoes: "clichÃ©" is SST's "cliché")."""
    texts = texts.astype(str)
    garbled = texts.str.contains(MOJIBAKE)
    if garbled.any():
        texts = texts.where(~garbled, texts[garbled].map(repair))
    return texts.str.lower().str.replace(NOT_LETTERS_OR_DIGITS, "", regex=True)


def label_keys(labels: pd.Series, multi: bool) -> pd.Series:
    """One hashable value per row: the id, or the sorted ids of a multi-label row."""
    return labels.map(lambda ids: tuple(sorted(int(i) for i in ids))) if multi else labels.astype(int)


def label_counts(labels: pd.Series, names: list[str], multi: bool) -> dict[str, int]:
    """Rows per label name (a multi-label row counts once for each of its labels)."""
    ids = labels.explode().dropna().astype(int) if multi else labels.astype(int)
    counts = ids.value_counts()
    return {name: int(counts.get(i, 0)) for i, name in enumerate(names)}


def within_split(frame: pd.DataFrame, norm: pd.Series, names: list[str], multi: bool) -> dict:
    """Duplicates, conflicting labels, label balance, near-empty and non-text rows of one split."""
    texts = frame["text"].astype(str)
    groups = pd.DataFrame({"norm": norm, "key": label_keys(frame["label"], multi)}).groupby("norm")["key"]
    conflicting = groups.nunique()
    conflicting = conflicting[conflicting > 1].index
    flags = {"near_empty": norm.str.len() < NEAR_EMPTY, "url_only": texts.str.match(URL_ONLY),
             "markup": texts.str.contains(MARKUP)}  # fmt: skip
    out = {
        "rows": len(frame),
        "duplicates": int(len(frame) - norm.nunique()),
        "exact_duplicates": int(len(frame) - texts.nunique()),
        "conflicting_texts": len(conflicting),
        "label_counts": label_counts(frame["label"], names, multi),
    }
    out.update({name: int(mask.sum()) for name, mask in flags.items()})
    examples = {name: texts[mask].head(EXAMPLES).tolist() for name, mask in flags.items() if mask.any()}
    if len(conflicting):
        examples["conflicting_texts"] = texts[norm.isin(conflicting[:EXAMPLES])].drop_duplicates().tolist()
    out["examples"] = examples
    return out


def token_lengths(texts: pd.Series, tokenizer) -> np.ndarray:
    """Each text's token count with the special tokens, untruncated."""
    texts = texts.astype(str).tolist()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    else:  # the Rust tokenizer alone: 3x faster than the wrapper's per-text conversion (SST-2's 67k texts)
        backend = type(backend).from_str(backend.to_str())  # a copy: the run's tokenizer keeps its settings
        backend.no_truncation()
        backend.no_padding()
        encoded = [e.ids for e in backend.encode_batch(texts, add_special_tokens=True)]
    return np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(texts))


def rows_in(counts: dict[str, int], texts: frozenset) -> int:
    """How many rows (of a split's {normalised text: rows}) have a text of `texts`."""
    return sum(counts[text] for text in counts.keys() & texts)


def length_summary(lengths: np.ndarray, max_length: int) -> dict:
    """How many texts the token limit cuts, and the length percentiles."""
    return {"cut": int((lengths > max_length).sum()), "median": int(np.median(lengths)),
            "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max())}  # fmt: skip


def split_frames(splits) -> dict[str, pd.DataFrame]:
    """The run's splits by role, those it has."""
    return {role: frame for role in ROLES if (frame := getattr(splits, role)) is not None}


def check_splits(splits, references: dict[str, frozenset], lengths: dict[str, np.ndarray], max_length: int) -> dict:
    """The data checks of a run's splits (`trainer.data.Splits`) against reference text sets ({name: normalised
    texts}) and the splits' token lengths; the report `data_checks.json` holds."""
    frames = split_frames(splits)
    norms = {role: normalise(frame["text"]) for role, frame in frames.items()}
    sets = {role: frozenset(norm) for role, norm in norms.items()}
    counts = {role: norm.value_counts().to_dict() for role, norm in norms.items()}
    report = {"normalisation": NORMALISATION, "max_length": max_length, "splits": {}, "cross_split": {},
              "checked_against": sorted(references)}  # fmt: skip
    for role, frame in frames.items():
        entry = within_split(frame, norms[role], splits.label_names, splits.multi_label)
        if role in lengths:
            entry["tokens"] = length_summary(lengths[role], max_length)
        found = {name: rows_in(counts[role], texts) for name, texts in references.items()}
        entry["in_other_datasets"] = {name: n for name, n in found.items() if n}
        report["splits"][role] = entry
    roles = list(frames)
    for i, earlier in enumerate(roles):
        for later in roles[i + 1 :]:
            report["cross_split"][f"{later} in {earlier}"] = rows_in(counts[later], sets[earlier])
    report["serious"] = [f"{n} {key.replace(' in ', ' texts are also in ')}"
                         for key, n in report["cross_split"].items() if n and key.endswith("in train")]  # fmt: skip
    return report


def held_out_in_train(splits) -> np.ndarray:
    """Which training rows have a validation or test text (normalised): what --drop_overlap removes."""
    held = set()
    for frame in (splits.validation, splits.test):
        if frame is not None:
            held.update(normalise(frame["text"]))
    return normalise(splits.train["text"]).isin(held).to_numpy()


def text_column(frame: pd.DataFrame, preferred: str) -> str | None:
    return next((c for c in (preferred, *TEXT_COLUMNS) if c in frame.columns), None)


@functools.lru_cache(maxsize=64)
def _file_texts(path: str, stamp: tuple[int, int], preferred: str) -> frozenset:
    """The normalised texts of a file, cached by path and modification stamp."""
    frame = read_table(path)
    column = text_column(frame, preferred)
    if column is None:
        raise UserError(f"{path}: no text column ({', '.join(dict.fromkeys((preferred, *TEXT_COLUMNS)))}): pass "
                        "--text_column, or a file with one of those columns")  # fmt: skip
    return frozenset(normalise(frame[column]))


def file_texts(path: Path, preferred: str) -> frozenset:
    """The normalised texts of a local labelled file."""
    if not path.is_file():
        raise UserError(f"--check_against {path}: file not found: pass a labelled file or a Hub dataset id")
    info = path.stat()
    return _file_texts(str(path.resolve()), (info.st_mtime_ns, info.st_size), preferred)


def split_files(folder: Path) -> dict[str, Path]:
    """{'<dataset>:<split>': file} of a data-mirror folder's split files (train, validation, test)."""
    mirror = data_mirror()
    found = {}
    for path in sorted(folder.rglob("*")):
        stem = path.stem.split("-")[0].lower()
        split = SPLIT_ALIASES.get(stem, stem)
        if path.suffix.lower() in READERS and path.is_file() and split in ROLES:
            dataset = path.parent.relative_to(mirror).as_posix() if mirror else path.parent.name
            found.setdefault(f"{dataset}:{split}", path)
    return found


def mirror_references(dataset_name: str | None, text_column_name: str) -> dict[str, frozenset]:
    """The normalised texts of every split of the data mirror's datasets but the run's own."""
    mirror = data_mirror()
    if mirror is None or not mirror.is_dir():
        return {}
    own = mirror_folder(dataset_name)
    own = own.resolve() if own else None
    out = {}
    for folder in sorted(p for p in mirror.iterdir() if p.is_dir()):
        if own is not None and (folder.resolve() == own or own.is_relative_to(folder.resolve())):
            continue
        for name, path in split_files(folder).items():
            try:
                out[name] = file_texts(path, text_column_name)
            except UserError as err:  # a mirror file that is not a labelled text table is no reference
                logger.info("data checks: skipping %s (%s)", path, err)
    return out


def named_references(specs: list[str], text_column_name: str) -> dict[str, frozenset]:
    """The normalised texts of each --check_against: a local file, a data-mirror dataset (all its splits), or a
    Hub dataset id[:split] (its train split by default)."""
    out = {}
    for spec in specs:
        path = Path(spec)
        folder = None if path.suffix.lower() in READERS else mirror_folder(spec.split(":")[0])
        if folder is not None and ":" not in spec:
            out.update({name: file_texts(p, text_column_name) for name, p in split_files(folder).items()})
        elif path.suffix.lower() in READERS or path.exists():
            out[spec] = file_texts(path, text_column_name)
        else:
            dataset, _, split = spec.partition(":")
            frame = load_split(dataset, None, split or "train")
            column = text_column(frame, text_column_name)
            if column is None:
                raise UserError(f"--check_against {spec}: no text column: pass --text_column")
            out[f"{dataset}:{split or 'train'}"] = frozenset(normalise(frame[column]))
    return out


def summary(report: dict) -> str:
    """A few lines for the console: each split's findings, then the serious ones."""
    lines = ["data checks (texts " + report["normalisation"] + "):"]
    for role, entry in report["splits"].items():
        found = [f"{entry['duplicates']:,} repeated rows ({entry['exact_duplicates']:,} exact)",
                 f"{entry['conflicting_texts']:,} texts with conflicting labels"]  # fmt: skip
        found += [f"{entry[k]:,} {k.replace('_', '-')}" for k in ("near_empty", "url_only", "markup") if entry[k]]
        if "tokens" in entry:
            found.append(f"{entry['tokens']['cut']:,} cut at {report['max_length']} tokens")
        found += [f"{n:,} in {name}" for name, n in entry["in_other_datasets"].items()]
        lines.append(f"  {role} ({entry['rows']:,} rows): " + ", ".join(found))
    if report.get("dropped_overlap") is not None:
        lines.append(
            f"  --drop_overlap removed {report['dropped_overlap']:,} training rows found in validation or test"
        )
    lines += [f"  warning: {finding}" for finding in report["serious"]]
    return "\n".join(lines)


def plot(report: dict, lengths: dict[str, np.ndarray], path: Path) -> Path:
    """Label balance (share of rows per label) and token length per split, with the token limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.files import save_figure

    roles = list(report["splits"])
    names = list(report["splits"][roles[0]]["label_counts"])
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(max(11, 5 + 0.35 * len(names)), 4.2))
    width = 0.8 / len(roles)
    for i, role in enumerate(roles):
        counts = np.array(list(report["splits"][role]["label_counts"].values()), dtype=float)
        bars.bar(np.arange(len(names)) + i * width, counts / max(counts.sum(), 1), width, label=role)
    bars.set_xticks(np.arange(len(names)) + width * (len(roles) - 1) / 2, names,
                    rotation=45 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")  # fmt: skip
    bars.set(title="Label balance per split", ylabel="share of rows")
    bars.legend()
    top = max([report["max_length"] + 1, *(int(v.max()) + 1 for v in lengths.values())])
    for role in roles:
        if role in lengths:
            hist.hist(lengths[role], bins=np.linspace(0, top, 60), density=True, histtype="step", label=role)
    hist.axvline(report["max_length"], color="black", linestyle="--", label=f"max_length {report['max_length']}")
    hist.set(title="Token length per split", xlabel="tokens (with special tokens)", ylabel="share of texts")
    hist.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict, lengths: dict[str, np.ndarray], folder: Path) -> tuple[Path, Path]:
    """data_checks.json and plots/data_checks.png in `folder`."""
    from trainer import files
    from trainer.run_folder import DATA_CHECKS, DATA_CHECKS_PLOT

    folder.mkdir(parents=True, exist_ok=True)
    files.write_text(folder / DATA_CHECKS, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return folder / DATA_CHECKS, plot(report, lengths, folder / DATA_CHECKS_PLOT)


def strict_error(report: dict) -> UserError:
    """The one line --strict_data stops on."""
    return UserError(f"--strict_data: {'; '.join(report['serious'])}: remove them with --drop_overlap, or drop "
                     "--strict_data to train with a warning")  # fmt: skip


def run_checks(splits, data_cfg, tokenizer, max_length: int, mirror: bool = True) -> tuple[dict, dict]:
    """(report, token lengths per split) of a run's loaded splits: against --check_against and, unless `mirror` is
    off, the data mirror's other datasets."""
    references = named_references(list(data_cfg.check_against or []), data_cfg.text_column)
    if mirror:
        references = {**mirror_references(None if data_cfg.train_file else data_cfg.dataset_name,
                                          data_cfg.text_column), **references}  # fmt: skip
    lengths = {role: token_lengths(frame["text"], tokenizer) for role, frame in split_frames(splits).items()}
    return check_splits(splits, references, lengths, max_length), lengths


def check_training_data(splits, cfg, tokenizer):
    """Before training: --drop_overlap (every process), --strict_data, and on the main process the checks, logged.

    Returns (the splits to train on, the checks: (report, token lengths), None on the other processes).
    """
    held = held_out_in_train(splits)
    main = cfg.training.process_index == 0
    checks = run_checks(splits, cfg.data, tokenizer, cfg.model.max_length, cfg.data.check_mirror) if main else None
    if cfg.data.drop_overlap:
        if held.all():
            raise UserError("--drop_overlap would remove every training row (each is also in validation or test): "
                            "check that --train_file and --validation_file are not the same data")  # fmt: skip
        splits = dataclasses.replace(splits, train=splits.train[~held].reset_index(drop=True))
        logger.info("--drop_overlap: removed %d training rows whose text is also in validation or test", held.sum())
        if checks:
            checks[0]["dropped_overlap"] = int(held.sum())
    elif cfg.data.strict_data and held.any():  # every process stops; the main one says why
        raise strict_error(checks[0]) if checks else UserError("--strict_data: held-out texts are also in train")
    if checks:
        for line in summary(checks[0]).splitlines():  # a line each, so every line carries the log prefix
            logger.info("%s", line)
        if checks[0]["serious"] and not cfg.data.drop_overlap:
            logger.warning("data checks: %s: --drop_overlap removes them, --strict_data stops on them",
                           "; ".join(checks[0]["serious"]))  # fmt: skip
    return splits, checks
