"""Write a run's model card: `python -m trainer.card --run_dir runs/latest [--hub_model_id user/name]`."""

from __future__ import annotations

import argparse
import sys

from model_card import render_card
from trainer import HelpFormatter, UserError, fail
from trainer.files import write_text
from trainer.run_folder import CARD, NoModel, locate_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--run_dir", default="runs/latest", help="a finished run folder")
    parser.add_argument("--hub_model_id", help="repo id the usage snippet names (default: the local run folder)")
    args = parser.parse_args(argv)
    try:
        run = locate_run(args.run_dir)
        write_text(run / CARD, render_card(run, args.hub_model_id))
    except (UserError, NoModel, OSError) as err:
        return fail(err)
    print(f"model card: {run / CARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
