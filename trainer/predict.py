"""Predict sentiment with a run folder or Hub model: `python -m trainer.predict --model runs/latest "text" ...`."""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from trainer import HelpFormatter, UserError, fail
from trainer.data import check_texts, read_texts
from trainer.export.onnx import export_int8
from trainer.inference import BACKENDS, LONG_TEXT, check_min_confidence
from trainer.modeling import default_backend, load_classifier, truncation_note


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--file", help="a .txt file (one text per line) or a table with --text_column")
    parser.add_argument("--text_column", default="sentence", help="text column of --file tables")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--backend", choices=BACKENDS, help="default: onnx-int8 on CPU when onnxruntime is installed")
    parser.add_argument("--long_text", choices=LONG_TEXT, default="truncate",
                        help="texts over the model's max_length: read the first max_length tokens (truncate), or "
                        "the whole text in overlapping windows whose probabilities are averaged (chunk)")  # fmt: skip
    parser.add_argument("--stride", type=int, help="tokens a chunk window shares with the previous one "
                        "(default: a quarter of max_length)")  # fmt: skip
    parser.add_argument("--threshold", type=float,
                        help="multi-label models: choose every label scoring at least this, instead of the "
                        "per-label thresholds tuned on validation (config.json decision_thresholds)")  # fmt: skip
    parser.add_argument("--min_confidence", type=float,
                        help="answer 'uncertain' for a text whose confidence is below this probability (the top "
                        "label's; for a multi-label model, its least sure label decision's)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        texts = list(args.texts) + (read_texts(args.file, args.text_column) if args.file else [])
        if not texts:
            raise UserError('nothing to classify: pass texts ("a great film") or --file FILE')
        if args.batch_size < 1:
            raise UserError(f"--batch_size {args.batch_size}: use at least 1")
        texts = check_texts(pd.Series(texts, dtype=object), "input").tolist()
        try:
            check_min_confidence(args.min_confidence)
        except ValueError as err:
            raise UserError(f"--{err}") from None
        if args.threshold is not None and not 0 < args.threshold < 1:
            raise UserError(f"--threshold {args.threshold}: use a probability in (0, 1), e.g. 0.5")
        backend = args.backend or default_backend()
        int8_file = export_int8(args.model) if backend == "onnx-int8" else None  # the core loads it, never makes it
        classifier = load_classifier(args.model, backend=backend, long_text=args.long_text, stride=args.stride,
                                     int8_file=int8_file)  # fmt: skip
        if args.threshold is not None:
            try:
                classifier.use_thresholds(args.threshold)
            except ValueError as err:
                raise UserError(f"--threshold: {err}") from None
        if note := truncation_note(classifier, texts):
            print(note, file=sys.stderr)
        if len(texts) <= 16:  # interactive use: latency of each text on its own
            for text in texts:
                started = time.perf_counter()
                result = classifier.predict([text], min_confidence=args.min_confidence)[0]
                ms = (time.perf_counter() - started) * 1000
                print(f"{shown(result):<10} {result['score']:.3f}  {ms:7.1f} ms  {text}")
            return 0
        started = time.perf_counter()
        results = classifier.predict(texts, args.batch_size, args.min_confidence)
        ms = (time.perf_counter() - started) * 1000
    except (UserError, OSError) as err:
        return fail(err)
    print("label\tconfidence\ttext")
    for text, result in zip(texts, results):
        print(f"{shown(result)}\t{result['score']:.4f}\t{text}")
    print(f"# {len(texts)} texts in {ms:.0f} ms ({ms / len(texts):.2f} ms each, batched)", file=sys.stderr)
    return 0


def shown(result: dict) -> str:
    """The answer as printed: the label, a multi-label model's labels joined by ';' ('(none)' for none)."""
    return result["label"] or "(none)"


if __name__ == "__main__":
    sys.exit(main())
