"""What to label next: `python -m trainer.label_next --model runs/latest --texts unlabelled.txt --n 200`.

Ranks unlabelled texts by how unsure the model is (margin or entropy), keeps one per cluster of its embeddings so the
list is not near-copies, and writes a CSV an annotation tool imports (text, the model's answer, scores, why chosen,
and an empty `label` column).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from trainer import HelpFormatter, UserError, fail, files
from trainer.data import check_texts, read_texts
from trainer.modeling import load_classifier
from trainer.run_folder import PREDICTIONS
from trainer.selection import POOL_FACTOR, STRATEGIES, pick, relabel_sheet, sheet, uncertainty


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--texts", help="unlabelled texts: a .txt file (one per line) or a table")
    parser.add_argument("--relabel", metavar="ANALYSIS",
                        help="instead: the rows a run's (or an evaluation's) analysis flags as likely label noise, as "
                        "a relabelling sheet; correct its label column and pass it to train --corrections")  # fmt: skip
    parser.add_argument("--text_column", default="sentence", help="text column of a --texts table")
    parser.add_argument("--n", type=int, default=200, help="how many texts to choose")
    parser.add_argument("--strategy", choices=STRATEGIES, default="margin",
                        help="margin: the top two labels' probabilities are close (multi-label: a label's probability "
                        "is close to its threshold); entropy: the probabilities are spread")  # fmt: skip
    parser.add_argument("--output", default="label_next.csv", help="the CSV to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means clustering")
    parser.add_argument("--batch_size", type=int, default=64)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.relabel:
            return write_relabel_sheet(args)
        if not args.texts:
            raise UserError("nothing to choose from: pass --texts FILE (unlabelled texts) or --relabel RUN")
        if args.n < 1:
            raise UserError(f"--n {args.n}: choose at least one text")
        texts = list(dict.fromkeys(check_texts(pd.Series(read_texts(args.texts, args.text_column)), args.texts)))
        classifier = load_classifier(args.model, backend="torch")
        scored = classifier.score(texts, batch_size=args.batch_size, embeddings=True, progress=True)
        probs = scored.probs
        scores = uncertainty(probs, args.strategy, classifier.multi_label, classifier.thresholds)
        rows, clusters = pick(scores, scored.embeddings, args.n, args.seed)
        answers = [answer["label"] or "(none)" for answer in classifier.answers(probs)]
        frame = sheet(texts, probs, classifier.labels, answers, scores, rows, clusters, args.strategy)
        files.write_text(Path(args.output), frame.to_csv(index=False))
    except (UserError, OSError) as err:
        return fail(err)
    pool = min(len(texts), args.n * POOL_FACTOR)
    print(f"{len(frame)} of {len(texts)} texts chosen ({args.strategy}, one per cluster of the {pool} most uncertain): "
          f"{args.output}")  # fmt: skip
    return 0


def write_relabel_sheet(args: argparse.Namespace) -> int:
    """The likely-label-noise rows of an analysis folder as a relabelling sheet."""
    source = Path(args.relabel) / PREDICTIONS
    if not source.is_file():
        raise UserError(f"{source}: no predictions here: pass a run folder or an evaluation's --output_dir")
    frame = relabel_sheet(pd.read_parquet(source))
    files.write_text(Path(args.output), frame.to_csv(index=False))
    print(f"{len(frame)} likely mislabelled rows: {args.output} (correct the label column, then "
          f"train --corrections {args.output})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
