"""Every file a push uploads: one list for `trainer.push` and its `--dry_run`, so the dry run shows what a push sends.

The run's published files (`trainer.run_folder.RUN_FILES`), the ONNX files with their int8 check unless the push
skips them, and the card rendered for the target repo; never checkpoints, optimizer state, pickles, wandb folders or
anything holding a token.
"""

from __future__ import annotations

from pathlib import Path

from model_card import render_card
from trainer import UserError
from trainer.export.int8_check import ensure_int8_check, is_checked
from trainer.export.onnx import ensure_onnx, export_paths, export_stamp, is_stamped, onnx_folder
from trainer.run_folder import CARD, INT8_CHECK, ONNX_DIR, ONNX_FILES, RUN_FILES, NoModel, locate_run

Upload = tuple[str, Path | bytes | None]  # (path in the repo, local file or content; None: made at push time)


def push_files(run_dir: str | Path, repo_id: str | None, *, onnx: bool = True, make: bool = True) -> list[Upload]:
    """Every file a push of `run_dir` to `repo_id` uploads, sorted by path in the repo.

    Args:
        onnx: with the ONNX files and their int8 check (`--no_onnx` is False).
        make: export and check now unless fresh, as the push does (the card then states the check); False, for the
            dry run, writes nothing and gives None for an ONNX file the push would make.
    Returns:
        (path in the repo, local file, the card's bytes, or None) pairs, the card (README.md) among them.
    """
    run = Path(run_dir)
    files: list[Upload] = list(run_files(run))
    if onnx:
        files += onnx_uploads(run, make)
    return sorted([*files, (CARD, render_card(run, repo_id, onnx=onnx).encode())])


def run_files(run_dir: str | Path) -> list[tuple[str, Path]]:
    """(path in repo, local file) for every published file of a finished run folder (`RUN_FILES`), checked for
    completeness; the card (README.md) is the caller's to add."""
    try:
        run = locate_run(str(run_dir))  # a finished run: the same line as the card and every other command
    except NoModel as err:
        raise UserError(str(err)) from None
    found = {path for pattern in RUN_FILES for path in run.glob(pattern) if path.is_file() and not path.is_symlink()}
    return sorted((path.relative_to(run).as_posix(), path) for path in found)


def onnx_uploads(run: Path, make: bool = True) -> list[Upload]:
    """(path in the repo, local file) of the ONNX files (fp32, int8, fp16) and their int8 check: exported and checked
    now unless fresh, or with `make` False, as they are, None for each one that is missing or stale."""
    if make:
        local: dict[str, Path | None] = ensure_onnx(run)
        local["check"] = ensure_int8_check(run, local["int8"])
    else:
        out, stamp = onnx_folder(run), export_stamp(run)
        fresh = is_stamped(out, stamp)
        local = {kind: path if fresh else None for kind, path in export_paths(out).items()}
        local["check"] = out / INT8_CHECK if fresh and is_checked(out, stamp) else None
    names = {**ONNX_FILES, "check": INT8_CHECK}
    return [(f"{ONNX_DIR}/{names[kind]}", path) for kind, path in local.items()]
