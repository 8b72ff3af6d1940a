"""Publish the Gradio app in `space/` as a Hugging Face Space that serves a pushed model.

    python -m trainer.push_space --space_id <user>/<name> --model_id <user>/<model repo> [--private] [--dry_run]

Uploads app.py, backend.py, requirements.txt and README.md (its `models:` front matter set to the model) in one
commit, then sets the Space variable MODEL_ID. Same token checks, retries and one-line errors as `trainer.push`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer import UserError
from trainer.push import describe, hub_token, publish, resolve_repo_id, with_retries

SPACE_DIR = Path(__file__).resolve().parents[1] / "space"
SPACE_FILES = ("app.py", "backend.py", "requirements.txt")


def space_files(model_id: str, space_dir: Path = SPACE_DIR) -> list[tuple[str, Path | bytes]]:
    """The Space's files, with README.md's front matter naming `model_id` under `models:`."""
    from huggingface_hub import SpaceCard

    missing = [name for name in (*SPACE_FILES, "README.md") if not (space_dir / name).is_file()]
    if missing:
        raise UserError(f"{space_dir} is missing {', '.join(missing)}: run from a complete checkout")
    card = SpaceCard.load(space_dir / "README.md")
    card.data.models = [model_id]
    return [(name, space_dir / name) for name in SPACE_FILES] + [("README.md", str(card).encode())]


def push_space(space_id: str | None, model_id: str, *, private: bool = False, retries: int = 3,
               retry_wait: float = 2.0) -> str:  # fmt: skip
    """Upload the Space and point its MODEL_ID variable at `model_id`; returns the Space's URL."""
    if Path(model_id).exists() or model_id.count("/") != 1:
        raise UserError(f"--model_id {model_id!r} must be a Hub model repo id: push the model first (make push)")
    token = hub_token()
    space_id = resolve_repo_id(space_id, f"{model_id.split('/')[1]}-demo", token, retries, retry_wait)
    result = publish(space_files(model_id), space_id, repo_type="space", space_sdk="gradio", private=private,
                     commit_message=f"Space for {model_id}", token=token, retries=retries,
                     retry_wait=retry_wait)  # fmt: skip
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with_retries(lambda: api.add_space_variable(space_id, "MODEL_ID", model_id), space_id, api.endpoint, retries,
                 retry_wait)  # fmt: skip
    return f"{api.endpoint}/spaces/{result.repo_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Space pushed: {url} (MODEL_ID={args.model_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
