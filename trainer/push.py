"""Publish a run folder to the Hugging Face Hub in one commit.

    python -m trainer.push --run_dir runs/latest --hub_model_id <user>/<name> [--private] [--revision BRANCH]
                           [--create_pr] [--commit_message M] [--dry_run] [--no_onnx]

Only the run's published files are uploaded (weights, config, tokenizer, card, metrics, analysis files, plots: see
`trainer.export.uploads.push_files`), and the model as ONNX for ONNX Runtime and transformers.js (`onnx/model.onnx`,
`onnx/model_quantized.onnx`; `--no_onnx` skips them); never checkpoints, optimizer state, pickles, wandb folders or
anything holding a token. The upload is a single commit, so an interrupted push leaves the repo at its previous
commit, and rerunning the same command is safe: unchanged files are skipped and an unchanged run makes no commit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.export.uploads import push_files
from trainer.hub.model_repo import describe, push_run
from trainer.run_folder import NoModel, locate_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--run_dir", default="runs/latest", help="a finished run folder")
    parser.add_argument("--hub_model_id", help="<user or org>/<name> (default: <your user>/<run folder name>)")
    parser.add_argument("--private", action="store_true", help="create the repo private (an existing repo is kept)")
    parser.add_argument("--revision", help="branch to push to (created from main if missing)")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit_message", help="default: the run name, its accuracy and data")
    parser.add_argument("--dry_run", action="store_true", help="list what would be uploaded; write and send nothing")
    parser.add_argument(
        "--no_onnx",
        action="store_true",
        help="skip onnx/model.onnx and onnx/model_quantized.onnx (for ONNX Runtime, transformers.js)",
    )
    parser.add_argument("--retries", type=int, default=3, help="retries on network errors and Hub 5xx")
    parser.add_argument("--retry_wait", type=float, default=2.0, help="first wait between retries, doubled each time")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its "no files modified" note: we say it once
    try:
        locate_run(args.run_dir)  # a finished run folder, or the one line every command gives, before anything else
        if args.dry_run:  # the list the push uploads; ONNX files it would export (or re-export) show "at push"
            files = push_files(args.run_dir, args.hub_model_id, onnx=not args.no_onnx, make=False)
            target = args.hub_model_id or f"<your user>/{Path(args.run_dir).resolve().name}"
            print(f"dry run: would upload to {target} in one commit (README.md generated):")
            print(describe(files))
            return 0
        if not args.no_onnx:
            print("exporting to ONNX (fp32 and int8, for ONNX Runtime and transformers.js) unless a fresh export is "
                  "there; --no_onnx skips it", flush=True)  # fmt: skip
        result = push_run(args.run_dir, args.hub_model_id, private=args.private, revision=args.revision,
                          create_pr=args.create_pr, commit_message=args.commit_message, retries=args.retries,
                          retry_wait=args.retry_wait, onnx=not args.no_onnx)  # fmt: skip
    except (UserError, NoModel, OSError) as err:
        return fail(err)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was committed; rerun the same command to push", file=sys.stderr)
        return 130
    if result.changed:
        print(f"pushed {result.files} files to {result.repo_id}: {result.url}")
    else:
        print(f"{result.repo_id} already holds this run: nothing to commit ({result.url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
