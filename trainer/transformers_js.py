"""transformers.js in headless Chromium on a run's ONNX files (exported first unless fresh): load time, ms per text,
agreement with Python.

    python -m trainer.transformers_js --model runs/latest [--dtype fp32 q8 fp16] [--n 200] [--output js.json]

See `trainer.js_browser` for the page, the local server and the comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.export.onnx import ensure_onnx
from trainer.js_browser import check, check_dtypes, sst2_dev_texts
from trainer.run_folder import ONNX_DIR, NoModel, locate_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="runs/latest", help="a run folder with its ONNX files")
    parser.add_argument("--dtype", nargs="+", default=["fp32", "q8"], help="transformers.js dtypes: fp32, q8, fp16")
    parser.add_argument("--n", type=int, default=200, help="SST-2 dev texts scored one at a time per dtype")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        if args.n < 1:
            raise UserError(f"--n {args.n}: score at least one text")
        check_dtypes(args.dtype)
        folder = Path(locate_run(args.model))
        if ensure_onnx(folder)["fp32"].parent != folder / ONNX_DIR:  # exported now unless a fresh export is there
            raise UserError(f"{args.model} is read-only, so its ONNX files were exported elsewhere: check a copy")
        found = check(folder, sst2_dev_texts(args.n), args.dtype)
    except (UserError, NoModel, OSError) as err:
        return fail(err)
    for dtype, row in found.items():
        print(f"{dtype}: loaded in {row['load_ms']:.0f} ms, {row['ms_per_text']:.1f} ms a text; labels as Python's "
              f"{100 * row['label_agreement_vs_python']:.2f}%, as fp32's {100 * row['label_agreement_vs_fp32']:.2f}% "
              f"({row['texts']} texts; largest probability gap {row['max_gap_vs_python']:.2g})")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
