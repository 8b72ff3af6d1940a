"""Build a run's model card from its folder alone: the same folder always renders the same card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from model_card.citations import BASE_MODELS, DATASETS
from model_card.decisions import decision_facts
from model_card.markdown import cutoff, figure, join_words, pct, quote
from trainer.run_folder import (
    BEHAVIOURAL,
    DATA_CHECKS,
    EVALUATIONS,
    INCORRECT,
    INT8_CHECK,
    LOG_HISTORY,
    METRICS,
    MODEL_CONFIG,
    ONNX_DIR,
    PLOTS,
    PREDICTIONS,
    SLICES,
    TRAIN_CONFIG,
    TRAINING_ARGS,
    missing_files,
)

TEMPLATE = Path(__file__).with_name("template.md")
HYPERPARAMETERS = [  # (key in train_config.yaml or training_args.json, label)
    ("learning_rate", "learning rate"), ("num_train_epochs", "epochs"), ("max_steps", "max steps"),
    ("per_device_train_batch_size", "batch size (per device)"),
    ("gradient_accumulation_steps", "gradient accumulation"), ("warmup_steps", "warmup (ratio or steps)"),
    ("lr_scheduler_type", "schedule"), ("weight_decay", "weight decay"), ("max_length", "max tokens"),
    ("freeze_word_embeddings", "frozen word embeddings"), ("layerwise_lr_decay", "layer-wise lr decay"),
    ("ema_decay", "EMA decay"), ("train_sampling_strategy", "batch order"), ("seed", "seed"),
]  # fmt: skip


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _read_csv(path: Path, **kwargs) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def metric_catalogue(metrics: dict, names: list[str]) -> list[dict]:
    """How the run's metrics are named, ordered and shown: the catalogue metrics.json recorded. A run recorded before
    the catalogue gets every metric its analysis scored but the per-class ones (accuracy alone without an analysis),
    by key, as 4-decimal numbers, in its order; only accuracy, the figure the card's text is built on, goes into the
    model-index."""
    if metrics.get("metric_catalogue"):
        return metrics["metric_catalogue"]
    per_class = {f"{metric}_{name}" for metric in ("precision", "recall", "f1") for name in names}
    return [{"key": key, "name": key, "headline": True, **({"hub": {"type": key}} if key == "accuracy" else {})}
            for key in metrics.get("evaluation") or ["accuracy"] if key not in per_class]  # fmt: skip


def score_facts(metrics: dict, names: list[str]) -> dict:
    """The card's scores: the catalogue they are shown by, validation and test scores, the results table, per class
    (per label, with its support, for a multi-label model)."""
    multi_label = bool(metrics.get("multi_label"))
    catalogue = metric_catalogue(metrics, names)  # a run records the entries of its own kind (single or multi)
    evaluation = metrics.get("evaluation") or {  # a run without an analysis: the figures training logged
        m["key"]: {"value": metrics[m["key"]]} for m in catalogue if m["key"] in metrics
    }
    test = metrics.get("test") or {}
    return {
        "metric_catalogue": catalogue,
        "evaluation": evaluation,
        "test": metrics.get("test"),  # the selected model scored once on held-out test data
        "result_rows": result_rows(catalogue, evaluation, test),
        "per_class": [  # (class, [(validation, test) score of precision, recall, F1])
            (name, [(evaluation[f"{m}_{name}"], test.get(f"{m}_{name}")) for m in ("precision", "recall", "f1")])
            for name in names
            if f"f1_{name}" in evaluation and not multi_label
        ],
        "per_label": [  # multi-label: (label, validation and test support, as per_class)
            (
                name,
                [_count(evaluation.get(f"support_{name}")), _count(test.get(f"support_{name}"))],
                [(evaluation[f"{m}_{name}"], test.get(f"{m}_{name}")) for m in ("precision", "recall", "f1")],
            )
            for name in names
            if f"f1_{name}" in evaluation and multi_label
        ],
    }


def _count(score) -> str:
    """A support figure, recorded as a number or as {value, ...}, as a whole number ("" when missing)."""
    value = score.get("value") if isinstance(score, dict) else score
    return "" if value is None else f"{float(value):,.0f}"


def result_rows(catalogue: list[dict], evaluation: dict, test: dict) -> list[dict]:
    """The card's results table: each headline metric's name, value and interval (validation, then test), formatted
    as its catalogue entry says."""
    rows = []
    for metric in catalogue:
        if metric.get("headline") and metric["key"] in evaluation:
            value, ci = _cells(evaluation[metric["key"]], metric)
            test_value, test_ci = _cells(test.get(metric["key"]), metric)
            rows.append(
                {"name": metric["name"], "value": value, "ci": ci, "test_value": test_value, "test_ci": test_ci}
            )
    return rows


def _cells(score: dict | None, metric: dict) -> tuple[str, str]:
    if not score:
        return "", ""
    interval = f"{figure(score['ci_low'], metric)}-{figure(score['ci_high'], metric)}" if "ci_low" in score else ""
    return figure(score["value"], metric), interval


def dataset_facts(config: dict, metrics: dict) -> dict:
    hub_id = config.get("dataset_name") if not config.get("train_file") else None
    if hub_id:
        pretty, kind, citation = DATASETS.get(hub_id, (hub_id, None, None))
        return {"id": hub_id, "name": pretty, "kind": kind, "citation": citation, "on_hub": True,
                "config": config.get("dataset_config_name") or "default", "split": validation_name(config),
                "test_split": config.get("test_split")}  # fmt: skip
    train_file = Path(config.get("train_file") or metrics.get("data", "data"))
    test_file = config.get("test_file")
    return {
        "id": train_file.stem,
        "name": train_file.name,
        "kind": None,
        "citation": None,
        "on_hub": False,
        "config": None,
        "split": validation_name(config),
        "test_split": test_file and Path(test_file).stem,
    }


def validation_name(config: dict) -> str:
    """The validation data's name: its split or file, or the share of train that was held out."""
    if config.get("validation_split_percentage"):
        return f"{config['validation_split_percentage']:g}% of train"
    if config.get("train_file"):
        return Path(config.get("validation_file") or "validation").stem
    return config.get("validation_split") or "validation"


def eval_rows(log_history: list[dict], best_step: int | None, accuracy: str = "accuracy") -> list[dict]:
    """One row per evaluation (training loss = last one logged before it); per epoch if the run never evaluated.
    `accuracy`: the metric of the accuracy column (a multi-label run logs subset_accuracy)."""
    rows, last_loss = [], None
    for entry in log_history:
        if "loss" in entry:
            last_loss = entry["loss"]
        if f"eval_{accuracy}" in entry:
            rows.append({"epoch": entry.get("epoch"), "step": entry["step"], "train_loss": last_loss,
                         "eval_loss": entry.get("eval_loss"), "accuracy": entry[f"eval_{accuracy}"],
                         "f1_macro": entry.get("eval_f1_macro"), "best": entry["step"] == best_step})  # fmt: skip
    if rows:
        return rows
    by_epoch: dict[int, list[dict]] = {}
    for entry in log_history:
        if "loss" in entry and "epoch" in entry:
            by_epoch.setdefault(max(1, math.ceil(entry["epoch"])), []).append(entry)
    return [{"epoch": epoch, "step": logs[-1]["step"], "train_loss": sum(e["loss"] for e in logs) / len(logs),
             "eval_loss": None, "accuracy": None, "f1_macro": None, "best": False}
            for epoch, logs in sorted(by_epoch.items())]  # fmt: skip


def widget_examples(predictions: pd.DataFrame | None, names: list[str], multi_label: bool = False) -> list[dict]:
    """Confidently right validation sentences of 8-25 words, one per class (for a multi-label model, one that has the
    label among its labels), plus the least sure right negation.

    Falls back to any length, then to wrong predictions, so a weak model still gets examples.
    """
    if predictions is None or predictions.empty:
        return []
    words = predictions["text"].str.split().str.len()
    pool = predictions
    for keep in (predictions["correct"] & words.between(8, 25), predictions["correct"]):
        if keep.any():
            pool = predictions[keep]
            break
    pool = pool.sort_values(["confidence", "text"], ascending=[False, True])
    examples = []
    labels = pool["label"].astype(str).str.split(";") if multi_label else None
    for name in names:
        has = pool["label"] == name
        if multi_label:  # a text with several labels: its first one keeps it
            has = labels.apply(lambda row, name=name: name in row) & ~pool["text"].str.strip().isin(
                [e["text"] for e in examples]
            )
        for text in pool.loc[has, "text"].head(1):
            examples.append({"text": text.strip(), "example_title": f"{name} (validation)"})
    if "negation" in pool:
        hard = pool[pool["negation"]].sort_values(["confidence", "text"]).head(1)
        for text, label in zip(hard["text"], hard["label"]):
            examples.append({"text": text.strip(), "example_title": f"negation, {label} (validation)"})
    return examples


def limitations(facts: dict) -> list[str]:
    """Plain sentences about where this model measurably fails, from the run's own analysis files."""
    out = []
    scores = facts["evaluation"]
    overall = scores.get("accuracy", scores.get("subset_accuracy", {})).get("value")  # slices.csv's accuracy
    for row in facts["slices"]:
        if overall is None or row["slice"].startswith(("likely_label_noise", "label ")) or row["n"] < 10:
            continue
        if pd.notna(row["ci_high"]) and (row["ci_high"] < overall or row["accuracy"] < overall - 0.05):
            out.append(
                f"Accuracy drops to {pct(row['accuracy'])} (95% CI {pct(row['ci_low'])}-{pct(row['ci_high'])}, "
                f"n={row['n']}) on the slice *{row['slice']}*, against {pct(overall)} overall."
            )
    out += recall_gaps(scores, facts["label_names"], "label" if facts.get("multi_label") else "class")
    if "off_by_one" in scores:  # ordered labels: a near miss is milder than a jump across neutral
        flips = scores.get("polarity_flips")
        across = f" and {pct(flips['value'])} across neutral (a negative label for a positive text or the reverse)"
        out.append(
            f"On the scale {' < '.join(facts['label_set']['scale'])}, {pct(scores['off_by_one']['value'])} of "
            f"validation texts are predicted one class off (near misses){across if flips else ''}; the mean absolute "
            f"error is {scores['mae']['value']:.2f} classes."
        )
    for test in facts["behavioral"]:
        if test["failure_rate"] > 0:
            example = ""
            if test.get("examples"):
                first = test["examples"][0]
                if "text" in first:
                    example = f' (for example "{first["text"].strip()}" was predicted {first["predicted"]})'
                elif "perturbed" in first:
                    before, after = first["original"].strip(), first["perturbed"].strip()
                    flip = f"{first['predicted_original']} to {first['predicted_perturbed']}"
                    example = f' (for example "{before}" -> "{after}" flipped from {flip})'
            out.append(
                f"Behavioural test *{test['name']}* ({test['type']}): {pct(test['failure_rate'])} of {test['n']} "
                f"cases fail{example}. Expected: {test['description'][0].lower()}{test['description'][1:]}"
            )
    ece = scores.get("ece", {}).get("value")
    if ece is not None and ece >= 0.02:
        scaled = (facts.get("calibration") or {}).get("method") == "temperature"  # the card says it is calibrated
        out.append(
            f"{'Even after temperature scaling, confidence' if scaled else 'Confidence'} is not a calibrated "
            f"probability: expected calibration error {ece:.3f}, and "
            f"{facts['confident_mistakes']} of the {facts['n_mistakes']} validation mistakes were made with "
            "confidence of 0.9 or more."
        )
    if facts["label_noise"]:
        out.append(
            f"{facts['label_noise']} of the {facts['n_mistakes']} validation mistakes look like label noise "
            "(confident learning): the gold label itself is doubtful, so part of the measured error is the data's."
        )
    return out


def recall_gaps(scores: dict, names: list[str], kind: str = "class") -> list[str]:
    """A sentence on the classes (`kind`: or labels) the model finds least and most often, when the gap is more than
    noise."""
    out = []
    recalls = {name: scores[f"recall_{name}"]["value"] for name in names if f"recall_{name}" in scores}
    if len(recalls) == 2:
        (weak, r_weak), (strong, r_strong) = sorted(recalls.items(), key=lambda kv: kv[1])
        if r_strong - r_weak >= 0.02:
            out.append(
                f"It misses more {weak} texts than {strong} ones (recall {pct(r_weak)} against {pct(r_strong)}): "
                f"when unsure it leans towards {strong}."
            )
    elif recalls:
        low, high = min(recalls.values()), max(recalls.values())
        if high - low >= 0.05:  # each of k recalls rests on a k-th of the data: a 2-point gap is noise
            worst = join_words(f"*{name}*" for name, r in recalls.items() if r == low)
            best = join_words(f"*{name}*" for name, r in recalls.items() if r == high)
            out.append(
                f"Recall differs by {kind}: it finds {worst} texts least often (recall {pct(low)}) and {best} texts "
                f"most often ({pct(high)})."
            )
    return out


def label_note(names: list[str], label_set: dict, multi_label: bool = False) -> str:
    """What the label set makes the model do with texts that fit no label cleanly (neutral, mixed, off-topic)."""
    polar = [*label_set["negative"], *label_set["positive"]]
    neutral = [name for name in names if polar and name not in polar]
    if multi_label:
        return (
            f"It gives a text every one of its {len(names)} labels whose score reaches that label's threshold, so a "
            "text can get several labels or none; labels rare in the training data are found least reliably (see the "
            "per-label table)."
        )
    if len(names) == 2:
        return f"It predicts only {join_words(names, 'or')}, so neutral or mixed texts get one of these labels."
    if not polar:
        return (
            f"It predicts one of {join_words(names, 'or')}; these labels carry no sentiment, and a text that fits "
            "none of them, or several, still gets exactly one."
        )
    if not neutral:
        return f"It predicts one of {join_words(names, 'or')}; none is neutral, so neutral texts get a polar label."
    return (
        f"It predicts one of {join_words(names, 'or')}. Texts without sentiment have a class of their own "
        f"({join_words(neutral)}), but a mixed text, praising one thing and panning another, still gets one label: "
        "neutral or a polar one, as such texts were labelled in the training data."
    )


def class_weighting(metrics: dict, config: dict) -> dict | None:
    """How the training loss weighted each class (metrics.json's class_weights), or None for an unweighted loss."""
    weights = metrics.get("class_weights")
    if not weights:
        return None
    balanced = [str(value).lower() for value in config.get("class_weights") or []] == ["balanced"]
    return {
        "rule": "balanced" if balanced else "given",
        "weights": ", ".join(f"{name} {weight:.3g}" for name, weight in weights.items()),
    }


def card_facts(run_dir: str | Path, repo_id: str | None = None, onnx: bool | None = None) -> dict:
    """Everything the card says, read from the run folder (no network, no clock). `onnx`: whether the repo ships the
    ONNX files (default: when the run folder holds an export with its int8 check)."""
    run = Path(run_dir)
    if missing := missing_files(run):
        raise FileNotFoundError(f"{run} is not a finished run folder (missing {', '.join(missing)})")
    metrics = _read_json(run / METRICS)
    config_lines = (run / TRAIN_CONFIG).read_text().splitlines(True)
    config_text = "".join(line for line in config_lines if not line.startswith("#"))
    config = yaml.safe_load(config_text) or {}
    settings = {**(_read_json(run / TRAINING_ARGS) or {}), **config}  # every value the run trained with
    model_config = _read_json(run / MODEL_CONFIG)
    names = [model_config["id2label"][str(i)] for i in range(len(model_config["id2label"]))]
    # runs from before k labels are binary, and the GLUE convention reads id 1 as positive
    label_set = metrics.get("label_set") or {"ordinal": False, "negative": names[:1], "positive": names[1:]}
    multi_label = bool(metrics.get("multi_label"))  # absent in single-label runs and in runs from before it
    weighting = class_weighting(metrics, config)
    base_model = config.get("model_name_or_path")
    dataset = dataset_facts(config, metrics)
    facts = {
        "repo_id": repo_id,
        "model_ref": repo_id or str(run),
        "run_name": run.resolve().name,
        "label_names": names,
        "label_set": label_set,
        "polar": bool(label_set["positive"] and label_set["negative"]),  # a sentiment model, not a topic classifier
        "multi_label": multi_label,
        "label_note": label_note(names, label_set, multi_label),
        "model_type": model_config.get("model_type", "bert"),
        "base_model": base_model,
        "base_model_on_hub": bool(metrics.get("base_model")),  # recorded by training: a Hub id, or null
        "dataset": dataset,
        "metrics": metrics,
        **score_facts(metrics, names),
        "class_weights": weighting,
        "distillation": metrics.get("distillation"),  # the teachers, their validation accuracy, the loss's settings
        "config_yaml": config_text.strip(),
        "max_length": settings.get("max_length"),
        "ema": bool(settings.get("ema_decay")),
        "seed": settings.get("seed"),
        "hyperparameters": [(label, settings.get(key, "not recorded")) for key, label in HYPERPARAMETERS]
        + [("class weights (loss)", f"{weighting['rule']} ({weighting['weights']})" if weighting else "none")],
        "eval_rows": eval_rows(
            _read_json(run / LOG_HISTORY) or [],
            metrics.get("best_step"),
            "subset_accuracy" if multi_label else "accuracy",
        ),
        "plots": sorted(p.name for p in (run / PLOTS).glob("*.png")) if (run / PLOTS).is_dir() else [],
        "out_of_domain": other_evaluations(run, skip=("test",) if metrics.get("test") else ()),  # test: shown above
        "environment": metrics.get("environment") or {},
        "citations": [c for c in (BASE_MODELS.get(base_model), dataset["citation"]) if c],
        **analysis_facts(run, names, multi_label),
        **decision_facts(metrics, model_config, names, dataset, coverage_curves(run, metrics)),
    }
    facts["onnx"] = None if onnx is False else _read_json(run / ONNX_DIR / INT8_CHECK)
    facts["data_checks"] = _read_json(run / DATA_CHECKS)  # runs from before the checks have none
    facts["limitations"] = limitations(facts)
    best = str(settings.get("metric_for_best_model") or "loss").removeprefix("eval_")  # what chose the checkpoint
    facts["best_metric"] = next((m["name"] for m in facts["metric_catalogue"] if m["key"] == best), best)
    return facts


def analysis_facts(run: Path, names: list[str], multi_label: bool = False) -> dict:
    """What the run's analysis files say: mistakes and their types, slices, behavioural tests, widget examples."""
    wrong = _read_csv(run / INCORRECT, keep_default_na=False)  # a text may read "NA"
    slices = _read_csv(run / SLICES)
    error_counts: dict[str, int] = {}
    for tags in [] if wrong is None else wrong["error_types"]:
        for tag in filter(None, str(tags).split(";")):
            error_counts[tag] = error_counts.get(tag, 0) + 1
    predictions = pd.read_parquet(run / PREDICTIONS) if (run / PREDICTIONS).is_file() else None
    behavioral = _read_json(run / BEHAVIOURAL) or {}
    top = [] if wrong is None else wrong.sort_values("confidence", ascending=False, kind="stable").head(5)
    return {
        "error_counts": dict(sorted(error_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "n_mistakes": 0 if wrong is None else len(wrong),
        "confident_mistakes": 0 if wrong is None else int((wrong["confidence"] >= 0.9).sum()),
        "label_noise": error_counts.get("likely_label_noise", 0),
        "top_mistakes": [] if wrong is None else top.to_dict("records"),
        "slices": [] if slices is None else slices.to_dict("records"),
        "behavioral": behavioral.get("tests", []),
        "behavioral_skipped": skipped_tests(behavioral.get("skipped")),
        "widget": widget_examples(predictions, names, multi_label),
    }


def coverage_curves(run: Path, metrics: dict) -> dict | None:
    """metrics.json's risk-coverage curves ({split: curve}); a run that records validation's curve alone gets its test
    analysis's (evaluations/test/metrics.json) beside it."""
    curves = metrics.get("risk_coverage")
    if not curves or "points" not in curves:
        return curves
    test = (_read_json(run / EVALUATIONS / "test" / METRICS) or {}).get("risk_coverage")
    return {"validation": curves, **({"test": test} if test else {})}


def skipped_tests(skipped: list[dict] | str | None) -> list[tuple[str, list[str]]]:
    """Behavioural tests that did not run, grouped by reason: [(reason, ["name (type)", ...])]; older runs give one
    reason for all of them."""
    if isinstance(skipped, str):
        return [(skipped, [])]
    groups: dict[str, list[str]] = {}
    for test in skipped or []:
        groups.setdefault(test["reason"], []).append(f"{test['name']} ({test['type']})")
    return list(groups.items())


def other_evaluations(run: Path, skip: tuple[str, ...] = ()) -> list[dict]:
    """`make evaluate` results saved under the run's evaluations/ folder (but `skip`)."""
    out = []
    for path in sorted(run.glob(f"{EVALUATIONS}/*/{METRICS}")):
        if path.parent.name in skip:
            continue
        other = json.loads(path.read_text())
        out.append({"name": path.parent.name, "data": other["data"], "n": other["n"],
                    "out_of_domain": other.get("out_of_domain"), "metrics": other["metrics"]})  # fmt: skip
    return out


def card_data(facts: dict) -> ModelCardData:
    """The card's YAML metadata, including the model-index that drives the Hub's evaluation widget (on the test
    split when the run has one: validation chose the checkpoint, so its figure is optimistic)."""
    dataset = facts["dataset"]
    test = facts.get("test")
    scores, split = (test, dataset["test_split"]) if test else (facts["evaluation"], dataset["split"])
    ordinal = facts.get("label_set", {}).get("ordinal")
    catalogue = metric_catalogue(facts, facts.get("label_names") or [])  # facts hold the catalogue card_facts read
    indexed = [m for m in catalogue if m.get("hub")]  # the metrics the Hub's evaluation widget shows
    entries = [m for m in indexed if m["key"] in scores and (ordinal or not m.get("ordinal"))]
    task = "Sentiment analysis" if facts.get("polar", True) else "Text classification"
    multi_label = ["multi-label-classification"] if facts.get("multi_label") else []
    results = [
        EvalResult(task_type="text-classification", task_name=task, dataset_type=dataset["id"],
                   dataset_name=dataset["name"], dataset_config=dataset["config"], dataset_split=split,
                   metric_type=m["hub"]["type"], metric_name=m["hub"].get("name", m["name"]),
                   metric_value=round(scores[m["key"]]["value"], 4), metric_args=m["hub"].get("args"))
        for m in entries
    ]  # fmt: skip
    return ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=facts["base_model"] if facts["base_model_on_hub"] else None,
        datasets=[dataset["id"]] if dataset["on_hub"] else None,
        metrics=list(dict.fromkeys(m["hub"]["type"] for m in indexed if not m.get("ordinal"))) or None,  # micro, macro
        tags=[
            "sentiment-analysis",
            facts["model_type"],
            "sentiment-trainer",
            *multi_label,
            *(["onnx", "transformers.js"] if facts.get("onnx") else []),
        ],  # fmt: skip
        model_name=(facts["repo_id"] or facts["run_name"]).split("/")[-1],
        eval_results=results or None,
        widget=facts["widget"] or None,
    )


def render_card(run_dir: str | Path, repo_id: str | None = None, onnx: bool | None = None) -> str:
    """The model card (YAML front matter + Markdown) for a run folder, naming `repo_id` in its usage snippets."""
    facts = card_facts(run_dir, repo_id, onnx)
    card = ModelCard.from_template(
        card_data(facts), template_path=str(TEMPLATE), f=facts, pct=pct, quote=quote, cutoff=cutoff
    )
    return str(card).rstrip() + "\n"
