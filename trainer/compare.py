"""Is run B really better than run A? Both on the same texts: the difference with a paired bootstrap interval,
McNemar's exact test, per-class and per-slice differences, calibration, and the texts one got right and the other
wrong: `python -m trainer.compare runs/plain runs/distilled [--data ../shared/data/sst2/dev.tsv]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.config import DataConfig
from trainer.evaluation.compare import compare, summary_line
from trainer.evaluation.compare_inputs import describe, own_predictions, scored_on_data
from trainer.evaluation.compare_report import BROKEN, FIXED, write_comparison


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run_a", help="run A, the baseline: a run folder (with --data: any model folder or Hub id)")
    parser.add_argument("run_b", help="run B, the challenger")
    parser.add_argument("--data", nargs="+", help="score both models on these labelled files (or Hub datasets "
                        "name[:split]) instead of comparing the runs' own validation predictions")  # fmt: skip
    parser.add_argument("--output_dir", help="where the files go (default: comparisons/<A>-vs-<B>)")
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--label_columns", nargs="+", help="multi-label data as one 0/1 column per label")
    parser.add_argument("--label_separator", default=";", help="between the label names of a multi-label text")
    parser.add_argument("--dataset_config_name", help="configuration of a Hub dataset --data (e.g. simplified)")
    parser.add_argument("--n_bootstrap", type=int, default=1000, help="paired resamples for the 95% intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=64)
    return parser.parse_args(argv)


def default_dir(run_a: str, run_b: str) -> Path:
    """comparisons/<A>-vs-<B>, each named by its folder (runs/latest by the run it points to)."""
    name = lambda run: Path(run).resolve().name if Path(run).exists() else run.replace("/", "_")  # noqa: E731
    return Path("comparisons") / f"{name(run_a)}-vs-{name(run_b)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        if args.n_bootstrap < 1:
            raise UserError(f"--n_bootstrap {args.n_bootstrap}: use at least 1 resample (1000 is the default)")
        if args.data:  # both models scored on the same labelled file
            cfg = DataConfig(text_column=args.text_column, label_column=args.label_column,
                             label_columns=args.label_columns, label_separator=args.label_separator,
                             dataset_config_name=args.dataset_config_name)  # fmt: skip
            a, b, multi = scored_on_data(args.run_a, args.run_b, args.data, cfg, args.batch_size)
        else:  # each run's own validation predictions
            a, b, multi = own_predictions(args.run_a, args.run_b)
        found = compare(a, b, multi, args.n_bootstrap, args.seed)
        out = Path(args.output_dir) if args.output_dir else default_dir(args.run_a, args.run_b)
        sources = {"a": describe(args.run_a, args.data), "b": describe(args.run_b, args.data)}
        write_comparison(out, found, sources)
    except (UserError, OSError) as err:
        return fail(err)
    print(summary_line(found.summary))
    print(f"{len(found.fixed)} texts in {out / FIXED}, {len(found.broken)} in {out / BROKEN}; files: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
