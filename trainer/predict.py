"""Predict sentiment with a run folder or Hub model: `python -m trainer.predict --model runs/latest "text" ...`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification

from trainer import UserError, fail
from trainer.data import check_texts, not_utf8, read_table
from trainer.modeling import SAFE_LOADING, load_error, load_tokenizer, resolve_model_path

BACKENDS = ("torch", "onnx-int8")


class Predictor:
    """Batched inference: length-sorted batches, dynamic padding, `torch.inference_mode`.

    `backend="onnx-int8"` runs the CPU fast path (`trainer.onnx_int8`: about 6x `pipeline()`, within 0.5 points of
    fp32 on SST-2); embeddings always come from the torch model.
    """

    def __init__(self, model: str, device: str | None = None, max_length: int = 512, backend: str = "torch"):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        path = resolve_model_path(model)
        self.tokenizer = load_tokenizer(model)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(path, **SAFE_LOADING)
        except (OSError, ValueError) as err:
            raise UserError(load_error(model, err)) from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        self.backend, self.fast = backend, None
        if backend == "onnx-int8":
            from trainer import onnx_int8

            if not onnx_int8.available() or self.device != "cpu":
                raise UserError("--backend onnx-int8 needs onnxruntime and a CPU run: pip install onnxruntime")
            self.fast = onnx_int8.OnnxInt8Session(self.model, self.tokenizer, path)

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], batch_size: int | None = None, embeddings: bool = False,
                      progress: bool = False):  # fmt: skip
        """Class probabilities, one row per text, in input order; with `embeddings`, also the mean-pooled last
        hidden state of each text (returns a pair)."""
        batch_size = batch_size or 64  # the int8 path's best batch too (trainer.onnx_int8)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        if self.fast is not None and not embeddings:
            return torch.from_numpy(self._fast_proba(texts, order, batch_size, progress))
        probs = torch.empty(len(texts), len(self.labels))
        pooled = torch.empty(len(texts), self.model.config.hidden_size) if embeddings else None
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="Predicting", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            out = self.model(**batch, output_hidden_states=embeddings)
            probs[idx] = out.logits.float().softmax(-1).cpu()
            if embeddings:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled[idx] = ((out.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)).cpu()
        return (probs, pooled) if embeddings else probs

    def _fast_proba(self, texts: list[str], order: list[int], batch_size: int, progress: bool) -> np.ndarray:
        """The int8 ONNX path, numpy end to end: a torch op between ONNX Runtime calls costs ~10% (thread pools)."""
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for start in tqdm(range(0, len(order), batch_size), desc="Predicting", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="np")  # fmt: skip
            logits = self.fast.logits(batch).astype(np.float32)
            logits = np.exp(logits - logits.max(1, keepdims=True))
            probs[idx] = logits / logits.sum(1, keepdims=True)
        return probs

    def predict(self, texts: list[str], batch_size: int | None = None) -> list[dict]:
        """[{label, score, probabilities}] per text."""
        probs = self.predict_proba(texts, batch_size)
        return [
            {
                "label": self.labels[int(row.argmax())],
                "score": float(row.max()),
                "probabilities": dict(zip(self.labels, map(float, row))),
            }
            for row in probs
        ]


def read_texts(path: str, text_column: str) -> list[str]:
    """One text per line for .txt; the text column for tables (csv, tsv, json, jsonl, parquet)."""
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


def default_backend() -> str:
    from trainer import onnx_int8

    return "onnx-int8" if onnx_int8.available() and not torch.cuda.is_available() else "torch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--file", help="a .txt file (one text per line) or a table with --text_column")
    parser.add_argument("--text_column", default="sentence", help="text column of --file tables")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--backend", choices=BACKENDS, help="default: onnx-int8 on CPU when onnxruntime is installed")
    args = parser.parse_args(argv)
    try:
        texts = list(args.texts) + (read_texts(args.file, args.text_column) if args.file else [])
        if not texts:
            raise UserError('nothing to classify: pass texts ("a great film") or --file FILE')
        if args.batch_size < 1:
            raise UserError(f"--batch_size {args.batch_size}: use at least 1")
        texts = check_texts(pd.Series(texts, dtype=object), "input").tolist()
        predictor = Predictor(args.model, backend=args.backend or default_backend())
        if len(texts) <= 16:  # interactive use: latency of each text on its own
            for text in texts:
                started = time.perf_counter()
                result = predictor.predict([text])[0]
                ms = (time.perf_counter() - started) * 1000
                print(f"{result['label']:<10} {result['score']:.3f}  {ms:7.1f} ms  {text}")
        else:
            started = time.perf_counter()
            results = predictor.predict(texts, args.batch_size)
            ms = (time.perf_counter() - started) * 1000
            print("label\tconfidence\ttext")
            for text, result in zip(texts, results):
                print(f"{result['label']}\t{result['score']:.4f}\t{text}")
            print(f"# {len(texts)} texts in {ms:.0f} ms ({ms / len(texts):.2f} ms each, batched)", file=sys.stderr)
    except (UserError, OSError) as err:
        return fail(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
