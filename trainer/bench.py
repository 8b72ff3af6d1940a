"""Benchmark our training step and inference core against the notebook recipe and `pipeline()`, in one run.

    python -m trainer.bench [--quick] [--model M] [--output bench.json]     (make bench / make bench-quick)

Every number is a ratio against a baseline measured here, in the same run, on the same model, data and number of
examples. Each measurement runs in its own process so its peak memory (RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from trainer import HelpFormatter, UserError, fail, files
from trainer.measurements import DEFAULT_MODEL, plot, run, table, unfit_for_bench
from trainer.run_folder import WEIGHTS

LATEST = "runs/latest"


def pick_infer_model(given: str | None) -> str | None:
    """The fine-tuned model the inference measurements score on SST-2 dev: `given` (refused in one line when its
    labels are not SST-2's), else runs/latest when it fits, else None: the model the training stage makes."""
    from trainer.modeling import resolve_model_path  # torch: only once the arguments are read

    if given:
        resolve_model_path(given, download=True)
        if (reason := unfit_for_bench(given)) is not None:
            raise UserError(f"--infer_model {given} {reason}: the bench scores SST-2 dev, so pass a binary sentiment "
                            "model (make train makes one)")  # fmt: skip
        return given
    if not Path(LATEST, WEIGHTS).is_file():
        return None
    if (reason := unfit_for_bench(LATEST)) is not None:
        print(f"{LATEST} {reason}: inference is measured on the model the bench's training stage makes "
              "(pass --infer_model to name one)", file=sys.stderr)  # fmt: skip
        return None
    return LATEST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer steps, 256 dev sentences")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="base model for the training measurements")
    parser.add_argument("--infer_model", help="fine-tuned model for inference (default: runs/latest, else the one "
                        "the training measurement produces)")  # fmt: skip
    parser.add_argument("--max_length", type=int, default=128, help="the notebook recipe pads every example to this")
    parser.add_argument("--output", default="bench.json", help="where bench.json goes; plots/bench.png beside it")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    output = Path(args.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=output.parent).close()  # writable? find out before measuring for minutes
        from trainer.modeling import resolve_model_path  # torch: only once the arguments are read

        resolve_model_path(args.model)  # which models: one line now, not after minutes of measuring
        infer_model = pick_infer_model(args.infer_model)
        report = run(args.model, args.quick, infer_model, args.max_length)
    except (UserError, OSError) as err:
        return fail(err)
    files.write_text(output, json.dumps(report, indent=2) + "\n")
    plot(report, output.parent / "plots" / "bench.png")
    print(table(report))
    print(f"written: {output}, {output.parent / 'plots' / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
