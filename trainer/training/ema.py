"""Exponential moving average (EMA) of the weights: evaluated, checkpointed and saved instead of the raw weights."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from trainer import files

EMA_FILE = "ema.safetensors"


class WeightEMA(TrainerCallback):
    """Keeps an fp32 average of the trainable weights, updated after every optimizer step.

    The average is written beside each checkpoint (so `--resume` restores it), swapped into the model for
    evaluation (so the best checkpoint is chosen by the averaged weights), and copied into the final model.
    """

    def __init__(self, decay: float, resume_from: str | None = None):
        self.decay = decay
        self.resume_from = resume_from  # a checkpoint folder whose saved average continues here
        self.shadow: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _params(model) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        saved = Path(self.resume_from) / EMA_FILE if self.resume_from else None
        if saved is not None and saved.is_file():
            self.shadow = load_file(saved)
        else:
            self.shadow = {name: p.detach().float().clone() for name, p in self._params(model).items()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Warm-up: average over fewer steps early on, so the first evaluations are not dominated by the start.
        decay = min(self.decay, (1 + state.global_step) / (10 + state.global_step))
        with torch.no_grad():
            for name, p in self._params(model).items():
                self.shadow[name].lerp_(p.detach().float(), 1 - decay)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.shadow is not None and state.is_world_process_zero and folder.is_dir():
            save_file(self.shadow, folder / EMA_FILE)  # after Trainer's own files, whose modes it already set
            os.chmod(folder / EMA_FILE, files.NEW_FILE_MODE & ~files.umask())

    @contextlib.contextmanager
    def swapped_in(self, model):
        """Inside the block the model holds the averaged weights; its own weights come back after."""
        if self.shadow is None:
            yield
            return
        params = self._params(model)
        own = {name: p.detach().clone() for name, p in params.items()}
        self.copy_into(model, self.shadow)
        try:
            yield
        finally:
            self.copy_into(model, own)

    @staticmethod
    def copy_into(model, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in WeightEMA._params(model).items():
                p.copy_(weights[name])

    def finalize(self, model, best_checkpoint: str | None) -> None:
        """Put the averaged weights of the best checkpoint (or the latest average) into the model, for good."""
        saved = Path(best_checkpoint) / EMA_FILE if best_checkpoint else None
        self.copy_into(model, load_file(saved) if saved is not None and saved.is_file() else self.shadow)
        self.shadow = None
