"""Publish the Gradio app in `space/` as a Hugging Face Space that serves a pushed model.

    python -m trainer.push_space --space_id <user>/<name> --model_id <user>/<model repo> [--private] [--dry_run]

Uploads the app, the inference core and README.md (its `models:` front matter set to the model) in one commit, then
sets the Space variable MODEL_ID. Same token checks, retries and one-line errors as `trainer.push`.
"""

from __future__ import annotations

import argparse
import sys

from trainer import HelpFormatter, UserError, fail
from trainer.hub.model_repo import describe
from trainer.hub.space_repo import push_space, space_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--space_id", help="<user or org>/<name> (default: <your user>/<model name>-demo)")
    parser.add_argument("--model_id", required=True, help="the Hub model repo the Space serves")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry_run", action="store_true", help="list what would be uploaded; send nothing")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--retry_wait", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            print(f"dry run: would upload to the Space {args.space_id or '<your user>/<model>-demo'} and set "
                  f"MODEL_ID={args.model_id}:\n{describe(space_files(args.model_id))}")  # fmt: skip
            return 0
        url = push_space(args.space_id, args.model_id, private=args.private, retries=args.retries,
                         retry_wait=args.retry_wait)  # fmt: skip
    except (UserError, OSError) as err:
        return fail(err)
    print(f"Space pushed: {url} (MODEL_ID={args.model_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
