"""Write a run's model card: `python -m trainer.card --run_dir runs/latest [--hub_model_id user/name]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_card import render_card
from trainer import HelpFormatter, UserError, fail
from trainer.files import write_text
from trainer.inference import REQUIRED_FILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--run_dir", default="runs/latest", help="a finished run folder")
    parser.add_argument("--hub_model_id", help="repo id the usage snippet names (default: the local run folder)")
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    try:
        missing = [name for name in REQUIRED_FILES if not (run / name).is_file()]
        if missing:
            raise UserError(f"{run} is not a finished run folder (missing {', '.join(missing)}): train one with "
                            "`make train`, or point RUN= at a finished run folder")  # fmt: skip
        write_text(run / "README.md", render_card(run, args.hub_model_id))
    except (UserError, OSError) as err:
        return fail(err)
    print(f"model card: {run / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
