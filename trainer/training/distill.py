"""Distillation: the student learns from teachers' soft labels as well as from the hard labels.

Teachers are run folders or Hub ids (`--teacher`; several = an ensemble, their probabilities averaged), `self` (a
teacher trained here with the student's own config on all the training data: what a plain run makes), or K
teachers trained here with the student's own config on K-1 folds of the training data each, each labelling only
the fold it never saw (`--teacher_folds K`): a teacher's soft labels on its own training rows are nearly one-hot,
and carry information only where it did not learn the answer.

With `--distill_augment N`, a transfer set joins the training set: N copies of each training text of at least
`AUGMENT_MIN_WORDS` words, with some words replaced by their nearest neighbours in the student's word-embedding space
(often words of the opposite sentiment: good -> bad) and some dropped. The teachers never saw these texts, so their soft
labels there say what the true labels cannot; the student learns them from the soft labels alone (the hard label of a
copy is the teachers' argmax).

Teacher logits for the training set are computed once with the inference core and cached in `<runs>/teacher_cache/`
(beside the run folders), keyed by the teacher's weights and the training texts: a rerun, a resume, an HPO trial
or another process of a multi-process run reads them back. Fold teachers are cached there too, as run folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax

from trainer import UserError, files
from trainer.config import ModelConfig, TrainConfig, derive
from trainer.data import fold_rows
from trainer.evaluation.metrics import wilson_interval
from trainer.modeling import load_classifier
from trainer.run_folder import WEIGHTS, is_hub_id

logger = logging.getLogger(__name__)

CACHE = "teacher_cache"
SELF = "self"  # --teacher self[:SEED]: a teacher trained here with the student's config on all its training data
AUGMENT_MIN_WORDS = 10  # shorter texts (SST-2's phrases) are left as they are
REPLACE, DROP = 0.15, 0.05  # per-word chances in a copy
NEIGHBOURS = 8  # a replaced word becomes one of its this many nearest neighbours


@dataclass
class TransferSet:
    """Texts the teachers label for the student: copies of training texts, and the training row each came from."""

    texts: list[str]
    sources: np.ndarray  # (copies,): the index of each copy's training text

    @property
    def empty(self) -> bool:
        return not self.texts


@dataclass
class Teacher:
    """One teacher's logits for every training row (out of fold for fold teachers), and the validation
    probabilities of each model behind them (one per fold for fold teachers)."""

    logits: np.ndarray  # (training rows, labels)
    eval_probs: np.ndarray  # (models, validation rows, labels)
    members: list[str]  # the name of each model behind eval_probs


@dataclass
class Teaching:
    """What the student learns from: soft labels per training row, and the record for metrics.json and the card."""

    soft_labels: np.ndarray  # (training rows, labels): the teachers' probabilities at the temperature, averaged
    record: dict


def prepare(cfg: TrainConfig, train_texts: list[str], train_labels: np.ndarray, eval_texts: list[str],
            eval_labels: np.ndarray, runs_root: Path, train_fn: Callable | None = None,
            transfer: TransferSet | None = None) -> Teaching:  # fmt: skip
    """The soft labels of the run's teachers (`--teacher` or `--teacher_folds`), computed or read from the cache:
    one row per training text, then one per text of the transfer set. `train_fn` trains the fold teachers
    (`trainer.training.loop.train`)."""
    model = cfg.model
    cache = runs_root / CACHE
    transfer = transfer or TransferSet([], np.zeros(0, dtype=np.int64))
    seeds = {}  # the seed of each self teacher
    if model.teacher:
        scored = train_texts + transfer.texts
        names = [self_teacher(cfg, n, train_texts, eval_texts, cache, train_fn) if is_self(n) else n
                 for n in model.teacher]  # fmt: skip
        seeds = {name: self_seed(cfg, n) for name, n in zip(names, model.teacher) if is_self(n)}
        teachers = [external_teacher(name, cfg, scored, eval_texts, cache) for name in names]
    else:
        teachers = [fold_teacher(cfg, train_texts, train_labels, eval_texts, cache, train_fn, transfer)]
    temperature = model.distill_temperature
    soft = np.mean([softmax(t.logits / temperature, axis=1) for t in teachers], axis=0).astype(np.float32)
    copies = soft[len(train_labels) :]
    members = [(name, probs) for t in teachers for name, probs in zip(t.members, t.eval_probs)]
    record = {
        "teachers": [
            {
                "model": name,
                "on_hub": bool(model.teacher) and is_hub_id(name),
                "self": Path(name).name.startswith(f"{SELF}-"),  # trained here with the student's config
                "seed": seeds.get(name),
                "accuracy": accuracy_record(probs, eval_labels),
            }
            for name, probs in members
        ],  # fmt: skip
        "ensemble_accuracy": accuracy_record(np.mean([p for _, p in members], axis=0), eval_labels)
        if len(members) > 1
        else None,
        "soft_labels": "out-of-fold" if model.teacher_folds else "teacher predictions on the training texts",
        "folds": model.teacher_folds or None,
        "temperature": temperature,
        "alpha": model.distill_alpha,
        # how confident the soft labels are where they come from: near 1.0 means nearly one-hot
        "train_agreement": round(float((soft[: len(train_labels)].argmax(1) == train_labels).mean()), 4),
        "mean_teacher_confidence": round(
            float(np.mean([softmax(t.logits[: len(train_labels)], 1).max(1).mean() for t in teachers])), 4
        ),
        "transfer_set": None
        if transfer.empty
        else {
            "copies": model.distill_augment,
            "rows": len(transfer.texts),
            "min_words": AUGMENT_MIN_WORDS,
            # how often the teachers' label of a copy differs from its source text's true label
            "label_changed": round(float((copies.argmax(1) != train_labels[transfer.sources]).mean()), 4),
        },
    }
    return Teaching(soft, record)


def accuracy_record(probs: np.ndarray, labels: np.ndarray) -> dict:
    correct = int((probs.argmax(1) == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    return {"value": correct / len(labels), "ci_low": low, "ci_high": high, "n": len(labels)}


def external_teacher(
    name: str, cfg: TrainConfig, train_texts: list[str], eval_texts: list[str], cache: Path
) -> Teacher:
    """A run folder or Hub id: its label set checked against the student's, its logits cached."""
    classifier = load_classifier(name)
    check_labels(name, classifier.labels, cfg.data.label_names)
    key = digest(model_fingerprint(classifier), texts_digest(train_texts), texts_digest(eval_texts))
    found = read_cache(cache / f"{key}.npz")
    if found is None:
        logger.info("teacher %s: scoring %d training texts (cached in %s)", name, len(train_texts), cache)
        found = classifier.score(train_texts, progress=True).logits, classifier.predict_proba(eval_texts)
        write_cache(cache / f"{key}.npz", *found, {"teacher": name, "rows": len(train_texts)})
    return Teacher(found[0], found[1].reshape(1, *found[1].shape[-2:]), [name])


def fold_teacher(cfg: TrainConfig, train_texts: list[str], train_labels: np.ndarray, eval_texts: list[str],
                 cache: Path, train_fn: Callable, transfer: TransferSet) -> Teacher:  # fmt: skip
    """K teachers with the student's config, each trained without one fold and labelling only that fold (and the
    transfer-set copies of its texts): out-of-fold logits for every row. Each teacher's run folder is cached; so
    are the logits, per transfer set."""
    k, seed = cfg.model.teacher_folds, cfg.training.seed
    folder = cache / f"folds-{teacher_key(cfg, train_texts, eval_texts, str(k))}"
    logits_file = folder / ("logits.npz" if transfer.empty else f"logits-{texts_digest(transfer.texts)[:20]}.npz")
    found = read_cache(logits_file)
    if found is None:
        texts = train_texts + transfer.texts
        logits = np.zeros((len(texts), len(cfg.data.label_names)), dtype=np.float32)
        eval_probs = []
        for i, (_, held) in enumerate(fold_rows(train_labels, k, seed)):
            run = folder / f"fold-{i + 1}-of-{k}"
            if not (run / WEIGHTS).is_file():
                logger.info("teacher %d of %d: training without fold %d (%s)", i + 1, k, i + 1, run)
                train_fn(fold_config(cfg, i, run))
            classifier = load_classifier(str(run))
            rows = np.concatenate([held, len(train_texts) + np.flatnonzero(np.isin(transfer.sources, held))])
            logits[rows] = classifier.score([texts[j] for j in rows], progress=True).logits
            eval_probs.append(classifier.predict_proba(eval_texts))
        found = logits, np.stack(eval_probs)
        write_cache(logits_file, *found, {"folds": k, "rows": len(texts)})
    members = [f"fold {i + 1} of {k} teacher ({folder / f'fold-{i + 1}-of-{k}'})" for i in range(k)]
    if found[1].ndim == 2:  # a cache from before each fold teacher's probabilities were kept: their average
        members = [f"{k} fold teachers, averaged ({folder})"]
    return Teacher(found[0], found[1].reshape(-1, *found[1].shape[-2:]), members)


def is_self(name: str) -> bool:
    return name == SELF or name.startswith(f"{SELF}:")


def self_seed(cfg: TrainConfig, name: str) -> int:
    """The seed of a self teacher: the student's for `self`, SEED for `self:SEED`."""
    return int(name.split(":", 1)[1]) if ":" in name else cfg.training.seed


def self_teacher(cfg: TrainConfig, name: str, train_texts: list[str], eval_texts: list[str], cache: Path,
                 train_fn: Callable) -> str:  # fmt: skip
    """`--teacher self` (or `self:SEED`): the run folder of a teacher trained with the student's config (less its
    distillation; with seed SEED) on all the training data, the model a plain run of that config makes; trained
    once, cached by config and data."""
    cfg = derive(cfg, seed=self_seed(cfg, name))
    run = cache / f"{SELF}-{teacher_key(cfg, train_texts, eval_texts)}"
    if not (run / WEIGHTS).is_file():
        logger.info("teacher: training this configuration, seed %d, on all the training data (%s)", cfg.training.seed,
                    run)  # fmt: skip
        train_fn(fold_config(cfg, run=run))
    return str(run)


def teacher_key(cfg: TrainConfig, train_texts: list[str], eval_texts: list[str], *extra: str) -> str:
    """The identity of teachers trained here: the student's config less its distillation, and the data."""
    # `report_to: [none]` was in every teacher's saved config before configs were derived (derive reads "none" as
    # no loggers, the default, so it is no longer saved): kept in the key, so teachers cached since are still found
    config = json.dumps({**fold_config(cfg).to_dict(), "report_to": ["none"]}, sort_keys=True, default=str)
    return digest(config, texts_digest(train_texts), texts_digest(eval_texts), *extra)


def fold_config(cfg: TrainConfig, fold: int | None = None, run: Path | None = None) -> TrainConfig:
    """The student's config for the teacher trained without `fold`: no teachers of its own, no analysis, its own
    run folder (a partial one from an interrupted attempt is replaced)."""
    defaults = ModelConfig()
    return derive(
        cfg, teacher=None, teacher_folds=0, distill_augment=0,
        # the student's distillation settings are not the teachers': students that differ only there share teachers
        distill_alpha=defaults.distill_alpha, distill_temperature=defaults.distill_temperature,
        num_folds=cfg.model.teacher_folds if fold is not None else None, leave_out_fold=fold,
        run_analysis=False, resume=None, overwrite_output_dir=True, report_to="none",
        **({} if run is None else {"output_dir": str(run)}),
    )  # fmt: skip


def transfer_set(texts: list[str], copies: int, seed: int, model_name_or_path: str) -> TransferSet:
    """`copies` word-replaced copies of each text of at least AUGMENT_MIN_WORDS words. With chance REPLACE a word
    is replaced by one of its NEIGHBOURS nearest words (cosine, in the student's input embeddings), or dropped when
    it has none (fewer than 3 letters, not alphabetic, or not one vocabulary token); with chance DROP it is dropped.
    Seeded: every process of a run, and every rerun, builds the same set. A copy identical to its text is left out."""
    rng = np.random.default_rng(seed)
    neighbours = word_neighbours(texts, model_name_or_path)
    out, sources = [], []
    for index, text in enumerate(texts):
        words = text.split()
        if len(words) < AUGMENT_MIN_WORDS:
            continue
        for _ in range(copies):
            copy_words = []
            for word in words:
                draw = rng.random()
                if draw < REPLACE and word in neighbours:
                    copy_words.append(neighbours[word][rng.integers(len(neighbours[word]))])
                elif draw >= REPLACE + DROP:
                    copy_words.append(word)
            if copy_words != words:
                out.append(" ".join(copy_words))
                sources.append(index)
    logger.info("transfer set: %d copies of %d texts of %d words or more", len(out), len(set(sources)),
                AUGMENT_MIN_WORDS)  # fmt: skip
    return TransferSet(out, np.asarray(sources, dtype=np.int64))


def word_neighbours(texts: list[str], model_name_or_path: str) -> dict[str, list[str]]:
    """Each alphabetic word of the texts that is one token of the model's vocabulary, with its nearest such words
    by the cosine of their input embeddings."""
    from transformers import AutoModel

    from trainer.modeling import load_tokenizer, resolve_model_path

    vocab = load_tokenizer(model_name_or_path).get_vocab()
    words = sorted({w for text in texts for w in text.split() if len(w) > 2 and w.isalpha() and w in vocab})
    if len(words) <= NEIGHBOURS:
        return {}
    embeddings = AutoModel.from_pretrained(resolve_model_path(model_name_or_path)).get_input_embeddings().weight
    vectors = torch.nn.functional.normalize(embeddings.detach()[[vocab[w] for w in words]].float(), dim=1)
    nearest = []
    for start in range(0, len(words), 2048):  # (block, words) similarities at a time
        similarity = vectors[start : start + 2048] @ vectors.T
        similarity[torch.arange(len(similarity)), torch.arange(start, start + len(similarity))] = -2  # not itself
        nearest.append(similarity.topk(NEIGHBOURS, dim=1).indices)
    return {word: [words[j] for j in row] for word, row in zip(words, torch.cat(nearest).tolist())}


def check_labels(name: str, teacher: list[str], student: list[str]) -> None:
    if [n.lower() for n in teacher] != [n.lower() for n in student]:
        raise UserError(
            f"teacher {name} predicts {', '.join(teacher)}, the data has {', '.join(student)}: a teacher must share "
            "the student's label set, in the same id order"
        )


def model_fingerprint(classifier) -> str:
    """The model's identity: a hash of its weights, whatever folder or Hub revision they came from."""
    h = hashlib.sha256()
    for name, tensor in classifier.model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def texts_digest(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


def digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return stored["logits"], stored["eval_probs"]


def write_cache(path: Path, logits: np.ndarray, eval_probs: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp, open(tmp, "wb") as sink:
        np.savez(sink, logits=logits, eval_probs=eval_probs, meta=json.dumps(meta))
