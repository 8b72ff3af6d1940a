"""Callbacks of a training run: stopping cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

import torch
from transformers import TrainerCallback

from trainer.training.run_dir import is_main_process


class StopOnSignal(TrainerCallback):
    """First Ctrl-C (or SIGTERM): save a checkpoint at the end of the current step and stop; a second one aborts.

    In a distributed run every process stops at the same step: the request is shared after each step.
    """

    REPEAT_SECONDS = 2.0  # a launcher forwards the terminal's Ctrl-C too: the same press arrives twice

    def __init__(self):
        self.requested = False
        self.requested_at = 0.0

    @contextlib.contextmanager
    def installed(self):
        """Catch SIGINT/SIGTERM while training (main thread only), restoring the previous handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self.requested_at > self.REPEAT_SECONDS:
                raise KeyboardInterrupt
            return
        self.requested, self.requested_at = True, time.monotonic()
        if is_main_process():
            print("\nstopping: saving a checkpoint after this step (press Ctrl-C again to abort)", file=sys.stderr)

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([int(self.requested)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        if self.requested:
            control.should_save = True
            control.should_training_stop = True


class Interrupted(Exception):
    """Training stopped on request after saving a checkpoint."""


class WandbRunFacts(TrainerCallback):
    """Adds what a wandb dashboard is filtered by (dataset, model, classes, epochs, batch size, learning rate) to
    the wandb run's config; Trainer's own callback, which starts the run, comes first."""

    def __init__(self, facts: dict):
        self.facts = facts

    def on_train_begin(self, args, state, control, **kwargs):
        import wandb

        if state.is_world_process_zero and wandb.run is not None:
            wandb.config.update(self.facts, allow_val_change=True)
