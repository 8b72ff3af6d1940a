"""`train()`: one fine-tuning run as a few named steps, on `transformers.Trainer`."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import Dataset, concatenate_datasets
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

from trainer import UserError, calibration, files
from trainer.config import TrainConfig
from trainer.data import load_splits, multi_hot, tokenize
from trainer.data_checks import check_training_data, write_report
from trainer.evaluation.metrics import compute_metrics_for
from trainer.evaluation.plots import plot_training_curves
from trainer.evaluation.run import AnalysisOptions, analyse, label_set_record, training_data
from trainer.inference import probabilities
from trainer.labels import LabelSet
from trainer.metric_catalogue import record as metric_catalogue
from trainer.modeling import load_classifier, load_model, load_tokenizer, parameter_groups
from trainer.provenance import environment
from trainer.run_folder import EVALUATIONS, LOG_HISTORY, METRICS, PLOTS, TRAIN_CONFIG, TRAINING_ARGS, is_hub_id
from trainer.training import distill
from trainer.training.callbacks import Interrupted, StopOnSignal, WandbRunFacts
from trainer.training.ema import WeightEMA
from trainer.training.run_dir import link_latest, shared_run_dir

logger = logging.getLogger(__name__)


class SentimentTrainer(Trainer):
    """Trainer with layer-wise learning-rate decay, weight averaging, length grouping on precomputed lengths, class
    weights, and distillation from soft labels (a `soft_labels` column of the training set)."""

    def __init__(self, *args, layer_decay=1.0, head_multiplier=1.0, ema: WeightEMA | None = None,
                 class_weights: list[float] | None = None, distill: tuple[float, float] | None = None,
                 multi_label: bool = False, **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.layer_decay, self.head_multiplier, self.ema = layer_decay, head_multiplier, ema
        self.multi_label = multi_label  # BCE per label; class weights are then each label's positive weight
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.distill = distill  # (alpha, temperature)
        if ema is not None:
            self.add_callback(ema)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.distill is not None and "soft_labels" not in self._signature_columns:
            self._signature_columns.append("soft_labels")  # kept by Trainer's column pruning, popped in compute_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        soft = inputs.pop("soft_labels", None)  # training batches of a distilled run; never the evaluation's
        if self.class_weights is None and soft is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        # A batch mean like the model's own loss, each example weighted by its class (normalised by the weights' sum).
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        if self.multi_label:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
        if soft is not None:
            loss = distillation_loss(logits, soft.to(logits), loss, *self.distill)
        return (loss, outputs) if return_outputs else loss

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
            logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(output.label_ids)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float()) if self.multi_label
                    else torch.nn.functional.cross_entropy(logits, labels.long()))  # fmt: skip
            output.metrics[key] = loss.item()
        return output

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:  # checkpoints are read by whoever resumes the run: not only by its owner
            files.give_normal_modes(Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}")

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


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, hard_loss: torch.Tensor, alpha: float,
                      temperature: float) -> torch.Tensor:  # fmt: skip
    """alpha x KL(teacher || student) at the temperature, scaled by T^2 so its gradients keep their size as T grows
    (Hinton et al., 2015), plus (1 - alpha) x the hard-label loss. `soft`: the teachers' probabilities at T."""
    log_student = torch.nn.functional.log_softmax(logits / temperature, dim=-1)
    kl = torch.nn.functional.kl_div(log_student, soft, reduction="batchmean") * temperature**2
    return alpha * kl + (1 - alpha) * hard_loss


@dataclass
class Inputs:
    """The tokenizer and the data of a run: raw (for counts and the analysis) and tokenized (for Trainer)."""

    tokenizer: object
    train_data: Dataset
    eval_data: Dataset
    train_set: Dataset
    eval_set: Dataset
    data_id: str
    label_names: list[str]  # given, or the data's
    test_data: Dataset | None = None  # scored once at the end, never seen by selection
    class_weights: list[float] | None = None  # per-class loss weights, from --class_weights
    sources: dict | None = None  # split role -> where it was read from
    distillation: dict | None = None  # the teachers and settings, when the run learns from soft labels
    multi_label: bool = False  # several labels per text: `label` holds a list of ids, the loss is BCE per label
    data_label_names: list[str] | None = None  # the data's own names, before --label_map grouped them
    data_checks: tuple | None = None  # (report, token lengths per split) on the main process: data_checks.json

    def targets(self, data: Dataset) -> np.ndarray:
        """Label ids, or for multi-label data an (n, k) 0/1 matrix."""
        labels = data["label"]
        return multi_hot(labels, len(self.label_names)) if self.multi_label else np.asarray(labels)


def train(cfg: TrainConfig, callbacks: list | None = None) -> tuple[Path, dict]:
    """Run one fine-tuning job; returns the run folder and its final metrics (empty on non-main processes).

    `cfg` is left as it is: what the run derives (the data's label names, its own TrainingArguments) makes new
    configs, saved in train_config.yaml and training_args.json. Publishing is the caller's: `trainer.train` pushes
    after this returns when asked to.
    """
    started = time.time()
    main_process = cfg.training.process_index == 0  # sets up the process group when launched by torchrun
    run_dir, checkpoint = shared_run_dir(cfg)
    set_seed(cfg.training.seed)
    inputs = load_inputs(cfg)
    # the data's label names when none were given: saved in train_config.yaml, so a rerun reads the same ids (the
    # data's own names: --label_map groups them again)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, label_names=inputs.data_label_names))
    teach(cfg, inputs, run_dir)
    if main_process:
        start_run_folder(cfg, run_dir, fresh=checkpoint is None)
        if checkpoint is None:
            write_report(*inputs.data_checks, run_dir)
    cfg = dataclasses.replace(cfg, training=run_arguments(cfg.training, run_dir))
    trainer, stopper = build_trainer(cfg, inputs, run_dir, checkpoint, callbacks)
    train_output = fit(trainer, stopper, checkpoint, run_dir)
    if checkpoint is not None and main_process:  # a resumed run keeps its config file until the resume has worked
        files.write_text(run_dir / TRAIN_CONFIG, config_text(cfg, run_dir))
        write_report(*inputs.data_checks, run_dir)
    if trainer.ema is not None:
        best = trainer.state.best_model_checkpoint if cfg.training.load_best_model_at_end else None
        trainer.ema.finalize(trainer.model, best)
        trainer.ema = None
    if not main_process:  # the other processes' part ends with the training (and its evaluations)
        if not cfg.run.run_analysis:
            trainer_scores(cfg, inputs, trainer)  # a collective: every process takes its share
        return run_dir, {}
    save_model(trainer, inputs.tokenizer, cfg, run_dir)
    decisions = calibrate_saved_model(cfg, inputs, run_dir)
    metrics = run_metrics(cfg, inputs, trainer, train_output, resumed=checkpoint is not None)
    metrics.update(decisions)
    metrics.update(score_saved_model(cfg, inputs, trainer, run_dir))
    if cfg.data.drop_overlap:
        metrics["dropped_overlap"] = inputs.data_checks[0]["dropped_overlap"]
    metrics["wall_time_seconds"] = round(time.time() - started, 1)
    files.write_text(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
    return run_dir, metrics


def load_inputs(cfg: TrainConfig) -> Inputs:
    """Tokenizer and data; the main process first: it fills the caches that the others then read."""
    if cfg.training.process_index != 0:  # one set of progress bars: the main process's
        import datasets

        datasets.disable_progress_bars()
    tokenizer = load_tokenizer(cfg.model.model_name_or_path)
    with cfg.training.main_process_first(desc="loading the data", local=False):
        splits = load_splits(cfg.data, seed=cfg.training.seed)
        splits, checks = check_training_data(splits, cfg, tokenizer)
        train_data, eval_data, test_data = splits.datasets()
        k = len(splits.label_names) if splits.multi_label else None
        train_set = tokenize(train_data, tokenizer, cfg.model.max_length, k)
        eval_set = tokenize(eval_data, tokenizer, cfg.model.max_length, k)
    check_world_size(cfg.training.world_size, len(train_set), len(eval_set))
    if splits.multi_label and (cfg.model.teacher or cfg.model.teacher_folds):
        raise UserError("distillation (--teacher, --teacher_folds) is for single-label data: drop it for multi-label")
    inputs = Inputs(tokenizer, train_data, eval_data, train_set, eval_set, splits.data_id, splits.label_names,
                    test_data=test_data, sources=splits.sources, multi_label=splits.multi_label,
                    data_label_names=splits.data_label_names, data_checks=checks)  # fmt: skip
    weigh = positive_weights if splits.multi_label else class_weights
    inputs.class_weights = weigh(cfg.model.class_weights, inputs.targets(train_data), splits.label_names)
    return inputs


def teach(cfg: TrainConfig, inputs: Inputs, run_dir: Path) -> None:
    """Soft labels from the run's teachers (`distill.prepare`), added to the training set as `soft_labels`; the
    teacher logits are cached beside the run folder. Nothing for a run without teachers."""
    if not cfg.model.teacher and not cfg.model.teacher_folds:
        return
    texts = list(inputs.train_data["text"])
    transfer = None
    if cfg.model.distill_augment:
        transfer = distill.transfer_set(texts, cfg.model.distill_augment, cfg.training.seed,
                                        cfg.model.model_name_or_path)  # fmt: skip
    data = (texts, np.asarray(inputs.train_data["label"]), list(inputs.eval_data["text"]),
            np.asarray(inputs.eval_data["label"]), run_dir.parent)  # fmt: skip
    if cfg.model.teacher_folds or any(map(distill.is_self, cfg.model.teacher or [])):
        # every process takes part in training the teachers here, then scores its own copy
        teaching = distill.prepare(cfg, *data, train_fn=train, transfer=transfer)
    else:  # the main process scores the training set and caches it; the others read the cache
        with cfg.training.main_process_first(desc="teacher logits", local=False):
            teaching = distill.prepare(cfg, *data, transfer=transfer)
    set_seed(cfg.training.seed)  # as if nothing had run before: a fold teacher's training moved the RNGs
    soft = teaching.soft_labels
    train_set = inputs.train_set.add_column("soft_labels", soft[: len(texts)].tolist())
    if transfer is not None and not transfer.empty:  # the copies: hard label = the teachers' argmax
        copies = Dataset.from_dict({"text": transfer.texts, "label": soft[len(texts) :].argmax(1).tolist()})
        copies = tokenize(copies, inputs.tokenizer, cfg.model.max_length)
        copies = copies.add_column("soft_labels", soft[len(texts) :].tolist())
        train_set = concatenate_datasets([train_set, copies.cast(train_set.features)])
    inputs.train_set = train_set
    inputs.distillation = teaching.record


def class_weights(spec: list[str] | None, labels: np.ndarray, names: list[str]) -> list[float] | None:
    """Loss weights per class: 'balanced' (sklearn's n / (classes x count) over the training labels) or one number
    per label; None for an unweighted loss."""
    if not spec:
        return None
    if [value.lower() for value in spec] == ["balanced"]:
        from sklearn.utils.class_weight import compute_class_weight

        missing = [name for name, n in zip(names, np.bincount(labels, minlength=len(names))) if n == 0]
        if missing:
            raise UserError(f"--class_weights balanced: no training rows of {', '.join(missing)}: give numbers instead")
        return [round(float(w), 6) for w in compute_class_weight("balanced", classes=np.arange(len(names)), y=labels)]
    try:
        weights = [float(value) for value in spec]
    except ValueError:
        weights = []
    if len(weights) != len(names) or min(weights, default=0) <= 0:
        raise UserError(
            f"--class_weights {' '.join(spec)}: give 'balanced' or {len(names)} positive numbers, one per label "
            f"({', '.join(names)})"
        )
    return weights


def positive_weights(spec: list[str] | None, targets: np.ndarray, names: list[str]) -> list[float] | None:
    """Multi-label loss weights: each label's positive weight in the BCE, 'balanced' (negatives / positives in the
    training data) or one number per label; None for an unweighted loss."""
    if not spec:
        return None
    if [value.lower() for value in spec] == ["balanced"]:
        positives = targets.sum(0)
        if missing := [name for name, n in zip(names, positives) if n == 0]:
            raise UserError(f"--class_weights balanced: no training rows of {', '.join(missing)}: give numbers instead")
        return [round(float(w), 6) for w in (len(targets) - positives) / positives]
    return class_weights(spec, np.zeros(0, dtype=int), names)


def calibrate_saved_model(cfg: TrainConfig, inputs: Inputs, run_dir: Path) -> dict:
    """Fit the saved model's temperature (one T; one per label for multi-label) on validation and fold it into its
    last layer, then tune a multi-label model's decision thresholds on the calibrated validation scores; both are
    saved in its config.json. Returns what metrics.json records: the ECE before and after on validation and test,
    and the thresholds with the macro/micro F1 of each decision rule."""
    multi, names = inputs.multi_label, inputs.label_names
    if cfg.run.calibrate == "none" and not multi:
        return {"calibration": {"method": "none"}}
    classifier = load_classifier(str(run_dir), backend="torch")
    splits = {"validation": inputs.eval_data, **({} if inputs.test_data is None else {"test": inputs.test_data})}
    logits = {split: classifier.score(list(data["text"]), progress=False).logits for split, data in splits.items()}
    targets = {split: inputs.targets(data) for split, data in splits.items()}
    config, out = classifier.model.config, {}
    if cfg.run.calibrate == "temperature":
        temperature = calibration.fit(logits["validation"], targets["validation"], multi)
        calibration.fold_temperature(classifier.model, temperature)
        config.calibration = calibration.calibration_record(temperature, names, multi)
        ece = {split: {"before": calibration.ece_of(z, targets[split], multi),
                       "after": calibration.ece_of(z / temperature, targets[split], multi)}
               for split, z in logits.items()}  # fmt: skip
        out["calibration"] = {**config.calibration, "ece": ece}
        logger.info("calibrated: validation ECE %.4f -> %.4f", ece["validation"]["before"], ece["validation"]["after"])
    else:
        temperature, config.calibration = np.ones(len(names)), {"method": "none"}
        out["calibration"] = config.calibration
    if multi:
        probs = {split: probabilities(z / temperature, True) for split, z in logits.items()}
        per_label, global_t = calibration.tune_thresholds(probs["validation"], targets["validation"])
        config.decision_thresholds = {name: float(t) for name, t in zip(names, per_label)}
        out["thresholds"] = {
            "per_label": config.decision_thresholds, "global": global_t, "tuned_on": "validation",
            "objective": "each label's F1 (global: macro F1), thresholds 0.05-0.95 in steps of 0.01",
            "results": {split: calibration.threshold_results(p, targets[split], per_label, global_t)
                        for split, p in probs.items()},
        }  # fmt: skip
    with files.atomic_folder_files(run_dir) as staging:
        classifier.model.save_pretrained(staging)
    return out


def config_text(cfg: TrainConfig, run_dir: Path) -> str:
    return f"# Rerun with: python -m trainer.train --config {run_dir / TRAIN_CONFIG}\n" + yaml.safe_dump(
        cfg.to_dict(), sort_keys=False
    )


def start_run_folder(cfg: TrainConfig, run_dir: Path, fresh: bool) -> None:
    """The folder and its config first, so an interrupted run can be resumed from it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    link_latest(run_dir)
    if fresh:
        files.write_text(run_dir / TRAIN_CONFIG, config_text(cfg, run_dir))


def build_trainer(cfg: TrainConfig, inputs: Inputs, run_dir: Path, checkpoint: str | None,
                  callbacks: list | None) -> tuple[SentimentTrainer, StopOnSignal]:  # fmt: skip
    """The model and a SentimentTrainer on the run's own arguments (`run_arguments`)."""
    args = cfg.training
    model = load_model(cfg.model, inputs.label_names, inputs.multi_label)
    # The classification loss is a batch mean that ignores Trainer's token count: without this, Trainer would
    # multiply it by the number of processes (and skip the gradient-accumulation division), scaling the gradients.
    model.accepts_loss_kwargs = False
    callbacks = list(callbacks or [])
    if "wandb" in args.report_to:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_PROJECT", "sentiment-trainer")
        callbacks.append(WandbRunFacts(wandb_facts(cfg, inputs)))
    gpu_half = (args.bf16 or args.fp16) and not args.use_cpu  # tensor cores like multiples of 8
    stopper = StopOnSignal()
    callbacks = [stopper, *(callbacks or [])]
    if cfg.run.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.run.early_stopping_patience))
    trainer = SentimentTrainer(
        model=model,
        args=args,
        train_dataset=inputs.train_set,
        eval_dataset=inputs.eval_set,
        processing_class=inputs.tokenizer,
        data_collator=DataCollatorWithPadding(inputs.tokenizer, pad_to_multiple_of=8 if gpu_half else None),
        compute_metrics=compute_metrics_for(inputs.label_names, cfg.data.label_order, multi_label=inputs.multi_label),
        callbacks=callbacks,
        layer_decay=cfg.model.layerwise_lr_decay,
        head_multiplier=cfg.model.head_lr_multiplier,
        ema=WeightEMA(cfg.model.ema_decay, resume_from=checkpoint) if cfg.model.ema_decay else None,
        class_weights=inputs.class_weights,
        distill=(cfg.model.distill_alpha, cfg.model.distill_temperature) if inputs.distillation else None,
        multi_label=inputs.multi_label,
    )
    return trainer, stopper


def run_arguments(args: TrainingArguments, run_dir: Path) -> TrainingArguments:
    """The run's own TrainingArguments: checkpoints under the run folder, its name, its loggers, no push by Trainer.

    A copy with these fields set, not a rebuilt instance (`dataclasses.replace`): rebuilding runs __post_init__
    again, which sets up the device and resets accelerate's process-wide state; none of these fields needs it.
    """
    args = copy.copy(args)
    args.output_dir = str(run_dir / "checkpoints")
    args.run_name = args.run_name or run_dir.name
    if args.report_to in (None, "none", []) or args.report_to == ["none"]:
        args.report_to = default_report_to()
    # Trainer's own push would upload checkpoints as it goes, and it pickles the token into every checkpoint.
    args.push_to_hub, args.hub_token = False, None
    return args


def wandb_facts(cfg: TrainConfig, inputs: Inputs) -> dict:
    """The run's headline facts for its wandb config, named as notebooks name them."""
    args = cfg.training
    return {
        "dataset": inputs.data_id, "model": cfg.model.model_name_or_path, "num_classes": len(inputs.label_names),
        "labels": inputs.label_names, "multi_label": inputs.multi_label,
        "epochs": args.num_train_epochs if args.max_steps < 0 else None,
        "max_steps": args.max_steps if args.max_steps > 0 else None,
        "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "learning_rate": args.learning_rate, "max_length": cfg.model.max_length,
        "train_samples": len(inputs.train_set), "eval_samples": len(inputs.eval_set),
    }  # fmt: skip


def fit(trainer: SentimentTrainer, stopper: StopOnSignal, checkpoint: str | None, run_dir: Path):
    """Train (or resume); Ctrl-C ends in `Interrupted` once a checkpoint is saved."""
    with stopper.installed():
        try:
            output = trainer.train(resume_from_checkpoint=checkpoint)
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
    return output


def save_model(trainer: SentimentTrainer, tokenizer, cfg: TrainConfig, run_dir: Path) -> None:
    """Weights, config with id2label, the tokenizer (its model_max_length is the run's max_length, so every reader
    truncates where training did), the resolved training arguments and the log history; no pickles."""
    tokenizer.model_max_length = cfg.model.max_length
    with files.atomic_folder_files(run_dir) as staging:
        trainer.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    resolved = {k: v for k, v in trainer.args.to_dict().items() if not k.endswith("_token")}
    files.write_text(run_dir / TRAINING_ARGS, json.dumps(resolved, indent=2, default=str) + "\n")
    files.write_text(run_dir / LOG_HISTORY, json.dumps(trainer.state.log_history, indent=2) + "\n")


def run_metrics(cfg: TrainConfig, inputs: Inputs, trainer: SentimentTrainer, train_output, resumed: bool) -> dict:
    """What the run was and how training went (the scores come from `score_saved_model`)."""
    args, names = cfg.training, inputs.label_names
    name = cfg.model.model_name_or_path
    return {
        "model": name,
        "base_model": name if is_hub_id(name) else None,  # the card links it when it is a Hub model
        "data": inputs.data_id,
        "data_sources": inputs.sources,  # where each split was read: a local copy's file, or the Hub
        "train_samples": len(inputs.train_set),
        "eval_samples": len(inputs.eval_set),
        "test_samples": None if inputs.test_data is None else len(inputs.test_data),
        "multi_label": inputs.multi_label,
        "label_map": cfg.data.label_map,
        "label_set": label_set_record(LabelSet.of(names, cfg.data.label_order)),  # order, polarity, plot colours
        "metric_catalogue": metric_catalogue(inputs.multi_label),  # each metric's name, direction, format: card, Space
        "class_weights": inputs.class_weights and dict(zip(names, inputs.class_weights)),
        "distillation": inputs.distillation,  # teachers, their validation accuracy, settings
        # Trainer averages only the steps this process ran; a resumed run takes the mean of every logged step.
        "train_loss": logged_loss(trainer.state.log_history) if resumed else train_output.training_loss,
        "train_runtime": train_output.metrics.get("train_runtime"),
        "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "global_step": trainer.state.global_step,
        "best_step": trainer.state.best_global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "label_counts": {  # texts of each label (a text of several labels counts for each)
            "train": label_counts(inputs.targets(inputs.train_data), names),
            "eval": label_counts(inputs.targets(inputs.eval_data), names),
            **({} if inputs.test_data is None else {"test": label_counts(inputs.targets(inputs.test_data), names)}),
        },
        "environment": environment(cfg.argv, precision_of(args), processes=args.world_size),
    }


def score_saved_model(cfg: TrainConfig, inputs: Inputs, trainer: SentimentTrainer, run_dir: Path) -> dict:
    """The saved model scored once on validation, by the analysis (in fp32, as pipeline() users run it) or by
    Trainer; then once on the test data when there is some, with its own analysis in evaluations/test/."""
    if not cfg.run.run_analysis:
        plot_training_curves(trainer.state.log_history, run_dir / PLOTS / "training_curves.png")
        return trainer_scores(cfg, inputs, trainer)
    classifier = load_classifier(str(run_dir))
    evaluation = analyse_split(cfg, classifier, inputs.eval_data, inputs.targets(inputs.eval_data), run_dir,
                               split_name(cfg, "validation"), None)  # fmt: skip
    scores = {key: score["value"] for key, score in evaluation["metrics"].items()}
    result = {**scores, "loss": scores["log_loss"], "evaluation": evaluation["metrics"],
              "evaluation_seconds": evaluation["timing"]["total_seconds"]}  # fmt: skip
    result["risk_coverage"] = {"validation": evaluation["risk_coverage"]}
    if inputs.test_data is not None:
        test = analyse_split(cfg, classifier, inputs.test_data, inputs.targets(inputs.test_data),
                             run_dir / EVALUATIONS / "test", split_name(cfg, "test"), METRICS)  # fmt: skip
        result["test"] = test["metrics"]
        result["risk_coverage"]["test"] = test["risk_coverage"]
    return result


def trainer_scores(cfg: TrainConfig, inputs: Inputs, trainer: SentimentTrainer) -> dict:
    """Trainer's own scores of the final model: validation, and test when there is test data."""
    final = trainer.evaluate(metric_key_prefix="final")  # final_*: kept apart from the curves' eval_*
    scores = {key.removeprefix("final_"): value for key, value in final.items()}
    if inputs.test_data is not None:
        test_set = tokenize(inputs.test_data, inputs.tokenizer, cfg.model.max_length,
                            len(inputs.label_names) if inputs.multi_label else None)  # fmt: skip
        test = trainer.evaluate(test_set, metric_key_prefix="test")
        scores["test"] = {key.removeprefix("test_"): {"value": value} for key, value in test.items()}
    return scores


def analyse_split(cfg: TrainConfig, classifier, data: Dataset, labels: np.ndarray, out: Path, data_id: str,
                  metrics_file) -> dict:  # fmt: skip
    """The analysis of the saved model on one split, with the run's facts from its config."""
    options = AnalysisOptions(
        output_dir=out, data_id=data_id, model=str(classifier.folder), label_order=cfg.data.label_order,
        trained_on=training_data(dataclasses.asdict(cfg.data)), n_bootstrap=cfg.run.n_bootstrap,
        seed=cfg.training.seed, metrics_file=metrics_file,
    )  # fmt: skip
    return analyse(classifier, data["text"], labels, options)


def split_name(cfg: TrainConfig, role: str) -> str:
    """How the analysis names a split: `dataset:split` for a Hub dataset, the file for local data."""
    data = cfg.data
    if data.train_file:
        if role == "test":
            return data.test_file
        return data.validation_file or f"{data.train_file} ({data.validation_split_percentage:g}% held out)"
    if role == "validation" and data.validation_split_percentage:
        return f"{data.dataset_name}:{data.train_split} ({data.validation_split_percentage:g}% held out)"
    return f"{data.dataset_name}:{getattr(data, f'{role}_split')}"


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
    labels = np.asarray(labels)
    counts = labels.sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def precision_of(args) -> str:
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return f"{precision} autocast on CPU" if precision != "fp32" and args.use_cpu else precision
