"""The inference core: how a model in a run or model folder scores texts.

Used by `trainer.predict`, `trainer.evaluate`, the analysis at the end of training, the bench and the Space. It
imports nothing from this repository (torch, transformers, numpy, scipy; onnxruntime for the int8 path), so the
Space ships this file as it is: `space/inference.py` is a link to it and `trainer.push_space` uploads its content.

Scoring: each text is read in windows of at most the run's own `max_length` tokens (saved as the tokenizer's
`model_max_length`): one window cut there (`long_text="truncate"`, what `pipeline(..., truncation=True)` does), or
overlapping windows that cover the whole text (`long_text="chunk"`), whose probabilities and pooled embeddings are
averaged per text. Windows are scored in length-sorted batches with dynamic padding under `torch.inference_mode()`;
logits, probabilities and the mean-pooled last hidden state come from one forward pass. `backend="onnx-int8"` scores
on the CPU fast path instead: the int8 ONNX file a published repo ships (`onnx/model_quantized.onnx`), loaded as it
is; `trainer.export` makes it, once per weights (embeddings always come from the torch model).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit, softmax

# torch and transformers are imported where a model is loaded: modules that only need the names below (SAFE_LOADING,
# BACKENDS, LONG_TEXT) do not pay for them. What a run folder holds, and which model a name means, are
# `trainer/run_folder.py`'s.
logger = logging.getLogger(__name__)

# Weights load from safetensors only, and code that comes with a model is never run.
SAFE_LOADING = {"use_safetensors": True, "trust_remote_code": False}
BACKENDS = ("torch", "onnx-int8")
# Where a published repo ships the int8 model, as `trainer.run_folder.onnx_path(folder, "int8")` names it (this file
# imports nothing of the repository; tests/test_inference.py checks the two agree).
INT8_FILE = Path("onnx", "model_quantized.onnx")
POOLING = "mean of the last hidden state over non-padding tokens"
LONGEST = 512  # cap for models whose tokenizer declares no usable limit
LONG_TEXT = ("truncate", "chunk")  # what happens to a text longer than max_length tokens
TOKENIZE_SLICE = 1024  # texts tokenised per call: bounds the tokenizer's Python lists on large inputs
MULTI_LABEL = "multi_label_classification"  # config.problem_type of a model with independent labels (sigmoid each)
UNCERTAIN = "uncertain"  # the answer for a text whose confidence is below the caller's min_confidence


def label_names(config) -> list[str]:
    """A model config's label names in id order (its id2label: human names for a run folder)."""
    return [config.id2label[i] for i in range(config.num_labels)]


class OptionError(ValueError):
    """A long_text or stride this model cannot use; the message names the values it can."""


def mean_by_text(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """The mean of the rows of each text (row i belongs to text `owner[i]`): one row per text, in text order. A text
    with one row gets that row bit for bit (0 + x and x / 1 are exact)."""
    sums = np.zeros((n, rows.shape[1]), dtype=rows.dtype)
    np.add.at(sums, owner, rows)
    return sums / np.bincount(owner, minlength=n)[:, None].astype(rows.dtype)


def probabilities(logits: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """Probabilities from logits, in float64: a sigmoid per label for a multi-label model, a softmax otherwise."""
    logits = np.asarray(logits, dtype=np.float64)
    return expit(logits) if multi_label else softmax(logits, axis=-1)


def check_min_confidence(value: float | None) -> None:
    """A ValueError naming the range for a min_confidence outside [0, 1) (None: answer every text)."""
    if value is not None and not 0 <= value < 1:
        raise ValueError(f"min_confidence {value}: use a probability in [0, 1), e.g. 0.8 (0 answers every text)")


def combine_windows(logits: np.ndarray, owner: np.ndarray, n: int, multi_label: bool = False) -> np.ndarray:
    """One row of logits per text from its windows' logits: the log of the mean of the windows' probabilities (for a
    multi-label model, the logit of each label's mean probability). A text read in one window keeps its logits bit
    for bit.

    Measured on 400-text sets of long reviews built from SST-2 dev sentences (docs/evaluation.md#long-texts), the mean
    of probabilities was as accurate as the mean of logits or up to 2 points more, and far ahead of the most confident
    window: each window's vote is bounded, so one very confident window cannot outvote the rest of the review.
    """
    mean = mean_by_text(probabilities(logits, multi_label), owner, n)
    combined = (logit(mean) if multi_label else np.log(mean)).astype(logits.dtype)
    alone = np.flatnonzero(np.bincount(owner, minlength=n)[owner] == 1)  # rows that are their text's only window
    combined[owner[alone]] = logits[alone]
    return combined


@dataclass
class Scores:
    """One row per text, in input order."""

    logits: np.ndarray  # (n, labels)
    embeddings: np.ndarray | None = None  # (n, hidden), the pooling is POOLING
    windows: np.ndarray | None = None  # (n,) windows of max_length tokens each text was read in (1 = read at once)
    multi_label: bool = False

    @property
    def probs(self) -> np.ndarray:
        return probabilities(self.logits, self.multi_label)


class Classifier:
    """A sequence-classification model folder, ready to score texts.

    Args:
        folder: a local folder with config.json, model.safetensors and the tokenizer (a run folder or a snapshot).
        device: "cpu" or "cuda" (default: cuda when available).
        backend: "torch" (fp32, what `pipeline()` users get) or "onnx-int8" (the CPU fast path).
        long_text: what happens to a text longer than `max_length` tokens: "truncate" reads its first `max_length`
            tokens; "chunk" reads it whole, in overlapping windows of `max_length` tokens (`combine_windows`).
        stride: tokens each chunk window shares with the one before (default: a quarter of `max_length`).
        int8_file: the int8 ONNX file for "onnx-int8" (default: `<folder>/onnx/model_quantized.onnx`, as a published
            repo ships it); it is loaded, never made here: `trainer.export.onnx.ensure_onnx(folder)` exports one.
    """

    def __init__(self, folder: str | os.PathLike, device: str | None = None, backend: str = "torch",
                 long_text: str = "truncate", stride: int | None = None,
                 int8_file: str | os.PathLike | None = None):  # fmt: skip
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        if long_text not in LONG_TEXT:
            raise OptionError(f"unknown long_text {long_text!r}: use one of {', '.join(LONG_TEXT)}")
        int8_file = int8_path(folder, int8_file) if backend == "onnx-int8" else None  # before the model loads
        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, **SAFE_LOADING)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        config = self.model.config
        self.labels = label_names(config)
        self.multi_label = getattr(config, "problem_type", None) == MULTI_LABEL
        self.thresholds = decision_thresholds(config, self.labels) if self.multi_label else None
        self.temperature = temperatures(config, self.labels)
        self.max_length = min(self.tokenizer.model_max_length, getattr(config, "max_position_embeddings", LONGEST),
                              LONGEST)  # fmt: skip
        self.long_text, self.stride = long_text, self.max_length // 4 if stride is None else stride
        if long_text == "chunk":
            self._check_chunking()
        self.backend, self._int8 = backend, None
        if backend == "onnx-int8":
            if self.device != "cpu":
                raise ValueError("--backend onnx-int8 runs on the CPU: use --backend torch on a GPU")
            self._int8 = Int8Session(int8_file)

    def _check_chunking(self) -> None:
        room = self.max_length - self.tokenizer.num_special_tokens_to_add()  # text tokens in one window
        if not 0 <= self.stride < room:
            raise OptionError(f"--stride {self.stride}: use 0 to {room - 1} (a window of this model holds {room} "
                              "tokens of text)")  # fmt: skip
        if not self.tokenizer.is_fast:
            raise OptionError("--long_text chunk needs a fast tokenizer (tokenizer.json): use --long_text truncate")

    def score(self, texts: list[str], batch_size: int = 64, embeddings: bool = False, progress: bool = False) -> Scores:
        """Logits (and, with `embeddings`, pooled embeddings) for every text, one row per text.

        A text longer than `max_length` tokens is cut there, or with long_text="chunk" read in several windows,
        combined by `combine_windows` (embeddings: their mean). Batches hold `batch_size` windows of similar length,
        so a long text adds batches, never a bigger one.
        """
        logits, pooled, owner = self.window_scores(texts, batch_size, embeddings, progress)
        n = len(texts)
        return Scores(combine_windows(logits, owner, n, self.multi_label),
                      None if pooled is None else mean_by_text(pooled, owner, n), np.bincount(owner, minlength=n),
                      self.multi_label)  # fmt: skip

    def window_scores(self, texts: list[str], batch_size: int = 64, embeddings: bool = False, progress: bool = False):
        """Logits (and pooled embeddings, or None) of every window, and the index of the text each window reads."""
        windows, owner = self._windows(list(texts))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Predicting", unit="batch")
        if self._int8 is not None and not embeddings:
            return self._int8_logits(windows, batches), None, owner
        return (*self._torch_scores(windows, batches, embeddings), owner)

    def _windows(self, texts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """The token ids of every window, and the index of the text each one reads: the tokenizer's own overflow
        (`stride` tokens shared between neighbours) when chunking, else the first `max_length` tokens."""
        chunk = self.long_text == "chunk"
        windows, owner = [], []
        for start in range(0, len(texts), TOKENIZE_SLICE):
            part = self.tokenizer(texts[start : start + TOKENIZE_SLICE], truncation=True, max_length=self.max_length,
                                  stride=self.stride if chunk else 0, return_overflowing_tokens=chunk,
                                  return_attention_mask=False, return_token_type_ids=False)  # fmt: skip
            windows += [np.asarray(ids, dtype=np.int32) for ids in part["input_ids"]]
            mapping = part["overflow_to_sample_mapping"] if chunk else range(len(part["input_ids"]))
            owner += [start + i for i in mapping]
        return windows, np.asarray(owner, dtype=np.int64)

    def _torch_scores(self, windows: list[np.ndarray], batches, embeddings: bool):
        import torch

        logits = np.empty((len(windows), len(self.labels)), dtype=np.float32)
        pooled = np.empty((len(windows), self.model.config.hidden_size), dtype=np.float32) if embeddings else None
        with torch.inference_mode():
            for idx in batches:
                batch = self._pad([windows[i] for i in idx], "pt").to(self.device)
                out = self.model(**batch, output_hidden_states=embeddings)
                logits[idx] = out.logits.float().cpu().numpy()
                if embeddings:
                    mask = batch["attention_mask"].unsqueeze(-1).float()
                    pooled[idx] = ((out.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)).cpu().numpy()
        return logits, pooled

    def _int8_logits(self, windows: list[np.ndarray], batches) -> np.ndarray:
        # numpy end to end: a torch op between ONNX Runtime calls costs ~10% (the two thread pools contend)
        logits = np.empty((len(windows), len(self.labels)), dtype=np.float32)
        for idx in batches:
            logits[idx] = self._int8.logits(self._pad([windows[i] for i in idx], "np"))
        return logits

    def _pad(self, windows: list[np.ndarray], tensors: str):
        return self.tokenizer.pad({"input_ids": windows}, return_tensors=tensors)

    def count_long(self, texts: list[str]) -> int:
        """How many texts are longer than `max_length` tokens (cut when truncating, read in windows when chunking)."""
        n = 0
        for start in range(0, len(texts), TOKENIZE_SLICE):
            lengths = self.tokenizer(list(texts[start : start + TOKENIZE_SLICE]), return_length=True, verbose=False,
                                     return_attention_mask=False, return_token_type_ids=False)["length"]  # fmt: skip
            n += sum(length > self.max_length for length in lengths)
        return n

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (each label's own, for a multi-label model), (n, labels)."""
        return self.score(texts, batch_size).probs

    def use_thresholds(self, value: float | dict[str, float]) -> None:
        """Decide a multi-label model's labels at these thresholds instead of its own: one for every label, or
        {label: t} for some; each in (0, 1)."""
        if not self.multi_label:
            raise ValueError("a decision threshold is for multi-label models: this one picks its most probable label")
        given = value if isinstance(value, dict) else dict.fromkeys(self.labels, value)
        for name, t in given.items():
            if name not in self.labels:
                raise ValueError(f"threshold for '{name}': not a label of this model ({', '.join(self.labels)})")
            if not 0 < float(t) < 1:
                raise ValueError(f"threshold {t} for '{name}': use a probability in (0, 1), e.g. 0.5")
        self.thresholds = np.array([float(given.get(n, t)) for n, t in zip(self.labels, self.thresholds)])

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The labels chosen for each row, (n, labels) bools: every label at or over its threshold for a multi-label
        model, the most probable one otherwise."""
        probs = np.asarray(probs)
        if self.multi_label:
            return probs >= self.thresholds
        return np.arange(probs.shape[1]) == probs.argmax(1)[:, None]

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """How sure each row's decision is: the top probability; for a multi-label model, the least sure of its
        label decisions (p for a chosen label, 1 - p for one left out)."""
        probs = np.asarray(probs, dtype=np.float64)
        if not self.multi_label:
            return probs.max(1)
        return np.where(self.decide(probs), probs, 1 - probs).min(1)

    def predict(self, texts: list[str], batch_size: int = 64, min_confidence: float | None = None) -> list[dict]:
        """One answer per text: {label, score, probabilities}; a multi-label model adds `labels` (those chosen, most
        probable first; `label` joins them with ";") and `thresholds`. Below `min_confidence` the label is UNCERTAIN
        and `best_guess` holds what it would have been."""
        check_min_confidence(min_confidence)
        return self.answers(self.predict_proba(texts, batch_size), min_confidence)

    def answers(self, probs: np.ndarray, min_confidence: float | None = None) -> list[dict]:
        """`predict`'s answers for rows of probabilities already computed."""
        chosen, sure = self.decide(probs), self.confidence(probs)
        out = []
        for row, picked, score in zip(probs, chosen, sure):
            answer = {"label": self.labels[int(row.argmax())], "score": float(score),
                      "probabilities": dict(zip(self.labels, map(float, row)))}  # fmt: skip
            if self.multi_label:
                names = [self.labels[i] for i in np.argsort(-row, kind="stable") if picked[i]]
                answer.update(labels=names, label=";".join(names),
                              thresholds=dict(zip(self.labels, map(float, self.thresholds))))  # fmt: skip
            if min_confidence is not None and score < min_confidence:
                answer["best_guess"] = answer.get("labels", answer["label"])
                answer["label"] = UNCERTAIN
            out.append(answer)
        return out


def decision_thresholds(config, labels: list[str]) -> np.ndarray:
    """Each label's decision threshold from config.json's `decision_thresholds` (0.5 for a label it does not name)."""
    given = getattr(config, "decision_thresholds", None) or {}
    return np.array([float(given.get(name, 0.5)) for name in labels])


def temperatures(config, labels: list[str]) -> np.ndarray:
    """The temperature folded into the model's last layer, per label (1.0 when it was not calibrated): the
    uncalibrated logits are the model's logits times these."""
    calibration = getattr(config, "calibration", None) or {}
    value = calibration.get("temperature", 1.0) if calibration.get("method") == "temperature" else 1.0
    if isinstance(value, dict):
        return np.array([float(value.get(name, 1.0)) for name in labels])
    return np.full(len(labels), float(value))


# --- the int8 fast path: the ONNX file a published repo ships, loaded as it is (trainer.export makes it) ---


def int8_path(folder: str | os.PathLike, given: str | os.PathLike | None) -> Path:
    """The int8 ONNX file to load: `given`, else the one a published repo ships; one line naming the fix if absent."""
    path = Path(given) if given is not None else Path(folder) / INT8_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no int8 ONNX file at {path}: export one with trainer.export.onnx.ensure_onnx({str(folder)!r}) and pass "
            'its "int8" path as int8_file (trainer.predict and trainer.bench do this), or use backend="torch"'
        )
    return path


class Int8Session:
    """Logits for tokenized batches from an int8 ONNX file."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(self, batch) -> np.ndarray:
        feeds = {key: np.asarray(batch[key]) for key in ("input_ids", "attention_mask")}
        return self.session.run(["logits"], feeds)[0]


def int8_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
