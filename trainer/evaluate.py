"""Evaluate a model on labelled data and write the error analysis:
`python -m trainer.evaluate --model runs/latest --data ../shared/data/sst2/dev.tsv --output_dir eval/`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.calibration import answered
from trainer.config import DataConfig
from trainer.data import load_labelled, multi_hot, stratified_sample
from trainer.evaluation.run import AnalysisOptions, analyse
from trainer.inference import LONG_TEXT, check_min_confidence
from trainer.labels import LABEL_ORDERS
from trainer.modeling import load_classifier, model_labels, resolve_model_path, truncation_note
from trainer.run_folder import ERROR_ANALYSIS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--data", default="stanfordnlp/sst2:validation", help="labelled file, or Hub dataset[:split]")
    parser.add_argument("--output_dir", required=True, help="where the analysis files go")
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--label_columns", nargs="+", help="multi-label data as one 0/1 column per label")
    parser.add_argument("--label_separator", default=";", help="between the label names of a multi-label text")
    parser.add_argument("--dataset_config_name", help="configuration of a Hub dataset --data (e.g. simplified)")
    parser.add_argument("--label_map", help="group the data's labels as the model was trained (a JSON file "
                        "{group: [label, ...]}), for a model trained with --label_map")  # fmt: skip
    parser.add_argument("--min_confidence", type=float,
                        help="also report how many texts are answered at this confidence, and how accurately (the "
                        "rest would be 'uncertain')")  # fmt: skip
    parser.add_argument("--label_names", nargs="+", help="label names in id order (default: the model's)")
    parser.add_argument("--label_order", choices=LABEL_ORDERS,
                        help="whether the labels form a scale (ordinal figures): default the run's own setting, "
                        "else auto (read from the names)")  # fmt: skip
    parser.add_argument("--max_samples", type=int, help="evaluate a seeded random subset of N rows (stratified)")
    parser.add_argument("--n_bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--long_text", choices=LONG_TEXT, default="truncate",
                        help="texts over max_length: cut there, or read whole in overlapping windows")  # fmt: skip
    parser.add_argument("--stride", type=int, help="tokens a chunk window shares with the previous one")
    return parser.parse_args(argv)


def read_data(args: argparse.Namespace, model: str):
    """The labelled texts, checked against the model's labels first (cheap): (frame, label names, multi-label)."""
    own_names, multi = model_labels(model)
    names = args.label_names or own_names
    if len(names) != len(own_names):
        raise UserError(f"--label_names has {len(names)} names but the model has {len(own_names)} labels")
    try:
        check_min_confidence(args.min_confidence)
    except ValueError as err:
        raise UserError(f"--{err}") from None
    cfg = DataConfig(text_column=args.text_column, label_column=args.label_column, label_names=names,
                     label_columns=args.label_columns, label_separator=args.label_separator,
                     dataset_config_name=args.dataset_config_name, label_map=args.label_map)  # fmt: skip
    data = stratified_sample(load_labelled(args.data, cfg, names, multi), args.max_samples, args.seed)
    return data, names, multi


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model = resolve_model_path(args.model, download=True)  # which model: checked (or downloaded) once, first
        data, names, multi = read_data(args, model)
        texts = data["text"].tolist()
        classifier = load_classifier(model, long_text=args.long_text, stride=args.stride)
        options = AnalysisOptions.of_run(
            args.model, args.label_order, output_dir=Path(args.output_dir), data_id=args.data,
            n_bootstrap=args.n_bootstrap, seed=args.seed, batch_size=args.batch_size,
        )  # fmt: skip
        labels = multi_hot(data["label"], len(names)) if multi else data["label"].to_numpy()
        metrics = analyse(classifier, texts, labels, options)
        if note := truncation_note(classifier, texts, metrics["long_text"]["texts_over_max_length"]):
            print(note, file=sys.stderr)  # counted once, by the analysis
    except (UserError, OSError) as err:
        return fail(err)
    key = "f1_micro" if multi else "accuracy"
    score = metrics["metrics"][key]
    print(
        f"{key.replace('_', ' ')} {score['value']:.2%} (95% CI {score['ci_low']:.2%}-{score['ci_high']:.2%}) on "
        f"{metrics['n']} examples in {metrics['timing']['total_seconds']:.1f}s"
    )
    if args.min_confidence is not None:
        found = answered(Path(args.output_dir), args.min_confidence)
        print(f"at min_confidence {args.min_confidence:g}: {found['answered']} of {found['n']} texts answered "
              f"({found['coverage']:.1%}), {found['accuracy']:.2%} of them right; the rest 'uncertain'")  # fmt: skip
    print(f"analysis: {Path(args.output_dir) / ERROR_ANALYSIS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
