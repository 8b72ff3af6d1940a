"""Check a run's data before training: duplicates, overlap between splits and with other datasets, conflicting
labels, label balance, empty and non-text rows, texts cut at max_length. Takes the data flags of `trainer.train`:
`python -m trainer.check_data --config PRESET [flags] [--report_dir DIR]`; writes data_checks.json and
plots/data_checks.png there."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer import UserError, fail
from trainer.config import load_config
from trainer.data import load_splits
from trainer.data_checks import run_checks, strict_error, summary, write_report
from trainer.modeling import load_tokenizer

REPORT_DIR = "runs/data-checks"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, add_help=False)
    parser.add_argument("--report_dir", default=REPORT_DIR, help=f"where the report goes (default: {REPORT_DIR})")
    own, rest = parser.parse_known_args(argv)
    if {"-h", "--help"} & set(rest):  # this tool's own flag, then the data flags of train
        print(f"{__doc__}\n\n  --report_dir DIR  where the report goes (default: {REPORT_DIR})\n")
    try:
        cfg = load_config(rest)
        splits = load_splits(cfg.data, seed=cfg.training.seed)
        tokenizer = load_tokenizer(cfg.model.model_name_or_path)
        report, lengths = run_checks(splits, cfg.data, tokenizer, cfg.model.max_length, cfg.data.check_mirror)
        json_path, png = write_report(report, lengths, Path(own.report_dir))
        print(summary(report))
        print(f"wrote {json_path} and {png}")
        if cfg.data.strict_data and report["serious"]:
            raise strict_error(report)
    except (UserError, OSError) as err:
        return fail(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
