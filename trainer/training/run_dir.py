"""The run folder: where a run writes, what a resume continues from, and `runs/latest`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path

from trainer import UserError
from trainer.config import TrainConfig
from trainer.run_folder import CHECKPOINTS
from trainer.training.ema import EMA_FILE

logger = logging.getLogger(__name__)
RUNS_DIR = Path("runs")


def shared_run_dir(cfg: TrainConfig) -> tuple[Path, str | None]:
    """`resolve_run_dir` decided once, by the main process, and sent to every process of a distributed run
    (each would otherwise stamp its own time into the name)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return resolve_run_dir(cfg)
    decision: list = [None]
    if dist.get_rank() == 0:
        try:
            decision[0] = resolve_run_dir(cfg)
        except UserError as err:
            decision[0] = err
    dist.broadcast_object_list(decision, src=0)
    if isinstance(decision[0], UserError):
        raise decision[0]
    return decision[0]


def resolve_run_dir(cfg: TrainConfig) -> tuple[Path, str | None]:
    """The run folder, and the checkpoint to resume from (None for a fresh run). An existing run is never
    overwritten unless asked for."""
    if cfg.run.resume:
        run_dir = Path(cfg.run.resume).resolve()
        last = last_complete_checkpoint(run_dir / CHECKPOINTS, need_ema=bool(cfg.model.ema_decay))
        if last is None:
            raise UserError(f"--resume {cfg.run.resume}: no complete checkpoint in {run_dir / CHECKPOINTS}: "
                            "start a new run instead")  # fmt: skip
        return run_dir, last
    if cfg.run.output_dir:
        run_dir = Path(cfg.run.output_dir)
    else:
        run_dir = RUNS_DIR / f"{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--output_dir {run_dir} is a file: choose a folder name")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not cfg.run.overwrite_output_dir:
            raise UserError(
                f"{run_dir} already holds a run: continue it with --resume {run_dir}, replace it with "
                "--overwrite_output_dir true, or choose another --output_dir"
            )
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # or a later --resume would mix the two runs
    return run_dir, None


def last_complete_checkpoint(folder: Path, need_ema: bool = False) -> str | None:
    """The newest checkpoint that was written to the end (a kill while saving leaves a partial one)."""
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    )
    for _, checkpoint in reversed(steps):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("%s is incomplete (the run stopped while saving it): skipping it", checkpoint)
            continue
        if need_ema and not (checkpoint / EMA_FILE).is_file():
            logger.warning("%s has no %s (the run stopped while saving it): skipping it", checkpoint, EMA_FILE)
            continue
        return str(checkpoint)
    return None


def link_latest(run_dir: Path) -> None:
    """Point runs/latest at the newest run folder."""
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.name, target_is_directory=True)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun/accelerate launch."""
    return int(os.environ.get("RANK", "0")) == 0
