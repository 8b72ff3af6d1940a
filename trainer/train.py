"""Fine-tune a BERT-family model for sentiment classification: `python -m trainer.train --config PRESET [flags]`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, set_seed

from trainer import UserError, fail, files
from trainer.config import TrainConfig, load_config
from trainer.data import load_data, tokenize
from trainer.ema import EMA_FILE, WeightEMA
from trainer.evaluate import analyse
from trainer.metrics import compute_metrics
from trainer.modeling import load_model, load_tokenizer, parameter_groups
from trainer.plots import plot_training_curves
from trainer.predict import Predictor
from trainer.provenance import environment, redact

logger = logging.getLogger(__name__)
RUNS_DIR = Path("runs")


class SentimentTrainer(Trainer):
    """Trainer with layer-wise learning-rate decay, weight averaging, and length grouping on precomputed lengths."""

    def __init__(self, *args, layer_decay=1.0, head_multiplier=1.0, ema: WeightEMA | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_decay, self.head_multiplier, self.ema = layer_decay, head_multiplier, ema
        if ema is not None:
            self.add_callback(ema)

    def evaluate(self, *args, **kwargs):
        if self.ema is None:
            return super().evaluate(*args, **kwargs)
        with self.ema.swapped_in(self.model):
            return super().evaluate(*args, **kwargs)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):  # fmt: skip
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        key = f"{metric_key_prefix}_loss"
        if self.args.world_size > 1 and key in output.metrics and output.predictions is not None:
            # Trainer averages per-batch mean losses, and the batches that pad the last shard repeat rows; the
            # gathered logits hold every row exactly once, so the loss is recomputed from them.
            logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            labels = torch.as_tensor(output.label_ids).long()
            output.metrics[key] = torch.nn.functional.cross_entropy(torch.as_tensor(logits).float(), labels).item()
        return output

    def create_optimizer(self, model=None):
        if self.optimizer is None and (self.layer_decay != 1.0 or self.head_multiplier != 1.0):
            groups = parameter_groups(
                model or self.model,
                self.args.learning_rate,
                self.args.weight_decay,
                self.layer_decay,
                self.head_multiplier,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer(model)

    def _get_train_sampler(self, train_dataset=None):
        # The column-pruned dataset has lost `length`; the original still has it, with the same row order.
        return super()._get_train_sampler(self.train_dataset)


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
        last = last_complete_checkpoint(run_dir / "checkpoints", need_ema=bool(cfg.model.ema_decay))
        if last is None:
            raise UserError(f"--resume {cfg.run.resume}: no complete checkpoint in {run_dir / 'checkpoints'}: "
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
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # or a later --resume would mix the two runs
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


def default_report_to() -> list[str]:
    """wandb when the environment enables it (offline counts), otherwise nothing; never blocks a run."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    wanted = mode in {"offline", "online", "run"} or (os.environ.get("WANDB_API_KEY") and mode != "disabled")
    if not wanted:
        return []
    try:
        import wandb  # noqa: F401
    except ImportError:
        logger.warning("WANDB_MODE is set but wandb is not installed; logging to wandb is off")
        return []
    return ["wandb"]


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun/accelerate launch."""
    return int(os.environ.get("RANK", "0")) == 0


def link_latest(run_dir: Path) -> None:
    """Point runs/latest at the newest run folder."""
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.name, target_is_directory=True)


def train(cfg: TrainConfig, callbacks: list | None = None) -> tuple[Path, dict]:
    """Run one fine-tuning job; returns the run folder and its final metrics."""
    started = time.time()
    args = cfg.training
    main_process = args.process_index == 0  # sets up the process group when launched by torchrun/accelerate
    if not main_process:  # one set of progress bars: the main process's
        import datasets

        datasets.disable_progress_bars()
    run_dir, checkpoint = shared_run_dir(cfg)
    set_seed(args.seed)

    # Data and model (the main process first: it fills the caches that the others then read).
    tokenizer = load_tokenizer(cfg.model.model_name_or_path)
    with args.main_process_first(desc="loading the data", local=False):
        train_data, eval_data, data_id = load_data(cfg.data, seed=args.seed)
        train_set = tokenize(train_data, tokenizer, cfg.model.max_length)
        eval_set = tokenize(eval_data, tokenizer, cfg.model.max_length)
    check_world_size(args.world_size, len(train_set), len(eval_set))
    model = load_model(cfg.model, cfg.data.label_names)
    # The classification loss is a batch mean that ignores Trainer's token count: without this, Trainer would
    # multiply it by the number of processes (and skip the gradient-accumulation division), scaling the gradients.
    model.accepts_loss_kwargs = False

    # The run folder: config first, so an interrupted run can be resumed from it.
    config_text = f"# Rerun with: python -m trainer.train --config {run_dir}/train_config.yaml\n" + yaml.safe_dump(
        cfg.to_dict(), sort_keys=False
    )
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        link_latest(run_dir)
        if checkpoint is None:
            files.write_text(run_dir / "train_config.yaml", config_text)
    args.output_dir = str(run_dir / "checkpoints")
    args.run_name = args.run_name or run_dir.name
    if args.report_to in (None, "none", []) or args.report_to == ["none"]:
        args.report_to = default_report_to()
    if "wandb" in args.report_to:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_PROJECT", "sentiment-trainer")

    push = args.push_to_hub  # our push, once, at the end: Trainer's own would upload checkpoints as it goes
    hub_token, args.hub_token = args.hub_token, None  # or Trainer pickles it into every checkpoint's training_args.bin
    args.push_to_hub = False
    gpu_half = (args.bf16 or args.fp16) and not args.use_cpu  # tensor cores like multiples of 8
    stopper = StopOnSignal()
    callbacks = [stopper, *(callbacks or [])]
    if cfg.run.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.run.early_stopping_patience))
    trainer = SentimentTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if gpu_half else None),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        layer_decay=cfg.model.layerwise_lr_decay,
        head_multiplier=cfg.model.head_lr_multiplier,
        ema=WeightEMA(cfg.model.ema_decay, resume_from=checkpoint) if cfg.model.ema_decay else None,
    )

    # Train, then keep the best (or last) model in the run folder itself.
    with stopper.installed():
        try:
            train_output = trainer.train(resume_from_checkpoint=checkpoint)
        except ValueError as err:
            if checkpoint is None:
                raise
            raise UserError(
                f"cannot resume from {checkpoint} ({str(err).splitlines()[0]}): "
                "keep the model options (frozen embeddings, learning-rate groups) the run started with"
            ) from None
    if stopper.requested:
        raise Interrupted(
            f"stopped at step {trainer.state.global_step}, checkpoint saved: "
            f"continue with `python -m trainer.train --resume {run_dir}`"
        )
    if checkpoint is not None and main_process:  # a resumed run keeps its config file until the resume has worked
        files.write_text(run_dir / "train_config.yaml", config_text)
    if trainer.ema is not None:
        best = trainer.state.best_model_checkpoint if args.load_best_model_at_end else None
        trainer.ema.finalize(trainer.model, best)
        trainer.ema = None
    if not main_process:  # the other processes' part ends with the training (and its evaluations)
        if cfg.run.run_analysis:
            return run_dir, {}
        trainer.evaluate(metric_key_prefix="final")  # a collective: every process takes its share
        return run_dir, {}
    # Weights, config with id2label, tokenizer; no pickled training_args.bin. Each file lands whole.
    with files.atomic_folder_files(run_dir) as staging:
        trainer.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    metrics = {
        "model": cfg.model.model_name_or_path,
        "data": data_id,
        "train_samples": len(train_set),
        "eval_samples": len(eval_set),
        # Trainer averages only the steps this process ran; a resumed run takes the mean of every logged step.
        "train_loss": train_output.training_loss if checkpoint is None else logged_loss(trainer.state.log_history),
        "train_runtime": train_output.metrics.get("train_runtime"),
        "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "global_step": trainer.state.global_step,
        "best_step": trainer.state.best_global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "label_counts": {
            "train": label_counts(train_data["label"], cfg.data.label_names),
            "eval": label_counts(eval_data["label"], cfg.data.label_names),
        },
        "environment": environment(cfg.argv, precision_of(args), processes=args.world_size),
    }
    files.write_text(run_dir / "log_history.json", json.dumps(trainer.state.log_history, indent=2) + "\n")

    # The saved model is scored once: by the analysis (in fp32, as pipeline() users will run it), or by Trainer.
    if cfg.run.run_analysis:
        evaluation = analyse(
            Predictor(str(run_dir)), str(run_dir), eval_data["text"], np.asarray(eval_data["label"]), run_dir,
            data_id, n_bootstrap=cfg.run.n_bootstrap, seed=args.seed, metrics_file=None,
        )  # fmt: skip
        metrics.update({key: score["value"] for key, score in evaluation["metrics"].items()})
        metrics["loss"] = metrics["log_loss"]
        metrics["evaluation"] = evaluation["metrics"]
        metrics["evaluation_seconds"] = evaluation["timing"]["total_seconds"]
    else:
        final = trainer.evaluate(metric_key_prefix="final")  # final_*: kept apart from the curves' eval_*
        metrics.update({key.removeprefix("final_"): value for key, value in final.items()})
        plot_training_curves(trainer.state.log_history, run_dir / "plots" / "training_curves.png")
    metrics["wall_time_seconds"] = round(time.time() - started, 1)
    files.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if push:
        from trainer.push import push_run

        try:
            metrics["pushed"] = push_run(
                run_dir, args.hub_model_id, private=bool(args.hub_private_repo), token=hub_token
            )
        except UserError as err:
            raise UserError(f"{err} (the run is saved: push it later with `make push RUN={run_dir}`)") from None
    return run_dir, metrics


def logged_loss(history: list[dict]) -> float:
    """Mean training loss over the logged steps, each logging window weighted by its number of steps."""
    total = steps = previous = 0
    for entry in history:
        if "loss" in entry and "step" in entry:
            total += entry["loss"] * (entry["step"] - previous)
            steps += entry["step"] - previous
            previous = entry["step"]
    return total / steps if steps else float("nan")


def check_world_size(processes: int, train_rows: int, eval_rows: int) -> None:
    """Every process needs at least one training and one validation example."""
    if processes > min(train_rows, eval_rows):
        raise UserError(
            f"{processes} processes but only {train_rows} training and {eval_rows} validation examples: "
            f"use at most NPROC={min(train_rows, eval_rows)} or more data"
        )


def label_counts(labels, names: list[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels), minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def precision_of(args) -> str:
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return f"{precision} autocast on CPU" if precision != "fp32" and args.use_cpu else precision


def main(argv: list[str] | None = None) -> int:
    level = logging.INFO if is_main_process() else logging.WARNING  # one process reports; the others only warn
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_config(argv)
        if argv is None:  # libraries that record the command line (wandb) see token values as ***
            sys.argv[1:] = redact(sys.argv[1:])
        run_dir, metrics = train(cfg)
    except (UserError, OSError) as err:  # every process of a distributed run hits the same one: the main one says it
        return fail(err, show=is_main_process())
    except Interrupted as stop:
        if is_main_process():
            print(stop, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if is_main_process():
            print(
                "\ninterrupted: continue with `make train ARGS=--resume` (latest checkpoint of runs/latest)",
                file=sys.stderr,
            )
        return 130
    if not is_main_process():
        return 0
    print(
        f"\naccuracy {metrics['accuracy']:.2%} on {metrics['eval_samples']} validation examples | "
        f"train {metrics['train_runtime']:.0f}s, {metrics['train_samples_per_second']:.1f} samples/s | "
        f"wall {metrics['wall_time_seconds']:.0f}s\nrun folder: {run_dir}"
    )
    if metrics.get("pushed"):
        print(f"pushed to {metrics['pushed'].repo_id}: {metrics['pushed'].url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
