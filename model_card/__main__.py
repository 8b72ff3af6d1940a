"""Write a run's model card: `python -m model_card --run_dir runs/latest [--hub_model_id user/name]`."""

from __future__ import annotations

import argparse
import sys

from model_card.card import write_card
from trainer import fail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run_dir", default="runs/latest", help="a finished run folder")
    parser.add_argument("--hub_model_id", help="repo id the usage snippet names (default: the local run folder)")
    args = parser.parse_args(argv)
    try:
        path = write_card(args.run_dir, args.hub_model_id)
    except FileNotFoundError as err:
        print(f"error: {err}: train one with `make train`, or point RUN= at a finished run folder", file=sys.stderr)
        return 2
    except OSError as err:
        return fail(err)
    print(f"model card: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
