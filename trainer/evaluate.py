"""Evaluate a model on labelled data and write the error analysis:
`python -m trainer.evaluate --model runs/latest --data ../shared/data/sst2/dev.tsv --output_dir eval/`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.data import stratified_sample
from trainer.evaluation.run import AnalysisOptions, analyse, label_names_of, load_labelled
from trainer.inference import LONG_TEXT
from trainer.labels import LABEL_ORDERS
from trainer.modeling import load_classifier, resolve_model_path, truncation_note
from trainer.run_folder import ERROR_ANALYSIS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="runs/latest", help="run folder, model folder or Hub id")
    parser.add_argument("--data", default="stanfordnlp/sst2:validation", help="labelled file, or Hub dataset[:split]")
    parser.add_argument("--output_dir", required=True, help="where the analysis files go")
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
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
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model = resolve_model_path(args.model, download=True)  # which model: checked (or downloaded) once, first
        model_labels = label_names_of(model)
        names = args.label_names or model_labels
        if len(names) != len(model_labels):
            raise UserError(f"--label_names has {len(names)} names but the model has {len(model_labels)} labels")
        data = load_labelled(args.data, args.text_column, args.label_column, names)  # check the data first: cheap
        data = stratified_sample(data, args.max_samples, args.seed)
        texts = data["text"].tolist()
        classifier = load_classifier(model, long_text=args.long_text, stride=args.stride)
        options = AnalysisOptions.of_run(
            args.model, args.label_order, output_dir=Path(args.output_dir), data_id=args.data,
            n_bootstrap=args.n_bootstrap, seed=args.seed, batch_size=args.batch_size,
        )  # fmt: skip
        metrics = analyse(classifier, texts, data["label"].to_numpy(), options)
        if note := truncation_note(classifier, texts, metrics["long_text"]["texts_over_max_length"]):
            print(note, file=sys.stderr)  # counted once, by the analysis
    except (UserError, OSError) as err:
        return fail(err)
    acc = metrics["metrics"]["accuracy"]
    print(
        f"accuracy {acc['value']:.2%} (95% CI {acc['ci_low']:.2%}-{acc['ci_high']:.2%}) on {metrics['n']} examples "
        f"in {metrics['timing']['total_seconds']:.1f}s\nanalysis: {Path(args.output_dir) / ERROR_ANALYSIS}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
