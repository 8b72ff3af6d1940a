"""The model card for any label set: binary, SST-5's ordered five, a scale without neutral, topic labels."""

import json

from huggingface_hub import ModelCard

from model_card import render_card
from model_card.markdown import pct
from model_card.render import label_note, limitations, skipped_tests
from tests.conftest import FIVE_LABELS, writable_copy
from tests.hub_server import validate_card

ORDINAL_TYPES = {"mae", "within_one", "polarity_flips", "cohen_kappa"}
BINARY_CLAIM = "neutral or mixed texts get one of these labels"


def table(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header`, one list per body row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def copy_run(run, tmp_path, edit_metrics=None):
    """A copy of `run` (without checkpoints) whose metrics.json `edit_metrics` changed in place."""
    copy = writable_copy(run, tmp_path / "run", "checkpoints")
    if edit_metrics:
        metrics = json.loads((copy / "metrics.json").read_text())
        edit_metrics(metrics)
        (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


def test_five_label_card_validates_and_has_one_row_per_class(tiny_five_run):
    text = render_card(tiny_five_run, "alice/sst5")
    scores = json.loads((tiny_five_run / "metrics.json").read_text())["evaluation"]

    assert validate_card(text) is None and ModelCard(text).data.pipeline_tag == "text-classification"
    rows = table(text, "| class | precision | recall | F1 |")
    assert [row[0] for row in rows] == FIVE_LABELS
    for name, *cells in rows:
        for cell, metric in zip(cells, ("precision", "recall", "f1")):
            score = scores[f"{metric}_{name}"]
            assert cell == f"{score['value']:.3f} ({score['ci_low']:.3f}-{score['ci_high']:.3f})", (name, metric)


def test_model_index_has_ordinal_figures_for_ordered_labels_only(tiny_five_run, tiny_run):
    five = render_card(tiny_five_run, "alice/sst5")
    scores = json.loads((tiny_five_run / "metrics.json").read_text())["evaluation"]
    results = {r.metric_type: r for r in ModelCard(five).data.eval_results}
    assert set(results) >= ORDINAL_TYPES
    assert results["mae"].metric_value == round(scores["mae"]["value"], 4)
    assert results["within_one"].metric_value == round(scores["within_one"]["value"], 4)
    assert results["cohen_kappa"].metric_args == {"weights": "quadratic"}
    assert f"| Mean absolute error (classes) | {scores['mae']['value']:.4f} |" in five

    binary = render_card(tiny_run, "alice/sst2")
    assert not ORDINAL_TYPES & {r.metric_type for r in ModelCard(binary).data.eval_results}
    assert "Mean absolute error" not in binary
    assert [row[0] for row in table(binary, "| class | precision |")] == ["negative", "positive"]


def test_limitations_read_right_for_the_label_set(tiny_five_run, tiny_run):
    five = render_card(tiny_five_run, "alice/sst5")
    scores = json.loads((tiny_five_run / "metrics.json").read_text())["evaluation"]
    assert BINARY_CLAIM not in five and "have a class of their own (neutral)" in five
    near = f"{pct(scores['off_by_one']['value'])} of validation texts are predicted one class off"
    far = f"{pct(scores['polarity_flips']['value'])} across neutral"
    assert near in five and far in five
    assert "A BERT sentiment classifier (very negative / negative / neutral / positive / very positive)" in five

    binary = render_card(tiny_run, "alice/sst2")
    assert f"It predicts only negative or positive, so {BINARY_CLAIM}." in binary
    assert "predicted one class off" not in binary


def test_label_note_for_each_kind_of_label_set():
    binary = label_note(["negative", "positive"], {"negative": ["negative"], "positive": ["positive"]})
    assert binary == f"It predicts only negative or positive, so {BINARY_CLAIM}."
    three = label_note(["negative", "neutral", "positive"], {"negative": ["negative"], "positive": ["positive"]})
    assert "class of their own (neutral)" in three and "mixed text" in three and BINARY_CLAIM not in three
    four = ["very negative", "negative", "positive", "very positive"]
    no_neutral = label_note(four, {"negative": four[:2], "positive": four[2:]})
    assert "none is neutral, so neutral texts get a polar label" in no_neutral
    topics = label_note(["sports", "politics", "tech"], {"negative": [], "positive": []})
    assert "carry no sentiment" in topics and "neutral" not in topics


def test_with_k_labels_the_worst_and_best_recalled_classes_are_named():
    recalls = {"negative": 0.55, "neutral": 0.8, "positive": 0.9}
    facts = {
        "evaluation": {"accuracy": {"value": 0.75}, **{f"recall_{n}": {"value": r} for n, r in recalls.items()}},
        "label_names": list(recalls), "slices": [], "behavioral": [], "label_noise": 0,
    }  # fmt: skip
    assert limitations(facts) == [
        "Recall differs by class: it finds *negative* texts least often (recall 55.0%) and *positive* texts most "
        "often (90.0%)."
    ]
    for name, recall in (("negative", 0.87), ("neutral", 0.88)):  # all within 5 points: not worth a line
        facts["evaluation"][f"recall_{name}"]["value"] = recall
    assert limitations(facts) == []


def test_class_weights_are_shown_when_the_loss_was_weighted(tiny_five_run, tmp_path):
    assert "class-weighted" not in render_card(tiny_five_run)
    assert "| class weights (loss) | none |" in render_card(tiny_five_run)
    weights = [1.4, 0.933333, 0.933333, 0.933333, 0.933333]
    run = copy_run(tiny_five_run, tmp_path, lambda m: m.update(class_weights=dict(zip(FIVE_LABELS, weights))))
    config = (run / "train_config.yaml").read_text()
    (run / "train_config.yaml").write_text(config.replace("class_weights: null", "class_weights:\n- balanced"))

    text = render_card(run)
    listed = "very negative 1.4, negative 0.933, neutral 0.933, positive 0.933, very positive 0.933"
    assert f"| class weights (loss) | balanced ({listed}) |" in text
    assert "The training loss was class-weighted (`balanced`" in text and text.count(listed) == 1
    assert validate_card(text) is None


def test_test_scores_sit_beside_validation_in_the_per_class_table(tiny_five_run, tmp_path):
    def add_test(metrics):
        metrics["test"] = {key: {**score, "value": 0.25} for key, score in metrics["evaluation"].items()}
        metrics["test_samples"] = 30

    run = copy_run(tiny_five_run, tmp_path, add_test)
    with open(run / "train_config.yaml", "a") as config:
        config.write(f"test_file: {tmp_path / 'test5.csv'}\n")  # the later key wins
    text = render_card(run)
    rows = table(text, "| class | dev5 precision | dev5 recall | dev5 F1 | test5 precision | test5 recall | test5 F1 |")
    assert [row[0] for row in rows] == FIVE_LABELS
    assert all(len(row) == 7 and all(cell.startswith("0.250 (") for cell in row[4:]) for row in rows)
    results = {r.metric_type: r for r in ModelCard(text).data.eval_results}
    assert results["mae"].dataset_split == "test5" and results["mae"].metric_value == 0.25


def test_topic_labels_read_as_a_text_classifier_with_skipped_tests_explained(tiny_five_run, tmp_path):
    topics = dict(zip(FIVE_LABELS, ["sports", "politics", "tech", "film", "music"]))

    def as_topics(metrics):
        renamed = {}
        for key, score in metrics["evaluation"].items():
            metric, _, name = key.partition("_")
            if key in {"mae", "within_one", "off_by_one", "polarity_flips", "qwk"}:
                continue  # only ordered labels have these
            renamed[f"{metric}_{topics[name]}" if name in topics else key] = score
        metrics["evaluation"] = renamed
        metrics["label_set"] = {"names": list(topics.values()), "ordinal": False, "scale": None, "positive": [],
                                "negative": []}  # fmt: skip
        metrics["label_counts"] = {split: {topics[n]: c for n, c in counts.items()}
                                   for split, counts in metrics["label_counts"].items()}  # fmt: skip

    run = copy_run(tiny_five_run, tmp_path, as_topics)
    model_config = json.loads((run / "config.json").read_text())
    model_config["id2label"] = {i: topics[name] for i, name in model_config["id2label"].items()}
    (run / "config.json").write_text(json.dumps(model_config))
    reason = "the label names carry no polarity"
    (run / "behavioral_tests.json").write_text(json.dumps({"tests": [], "skipped": [
        {"name": "clear_positive", "type": "MFT", "description": "d", "reason": reason},
        {"name": "add_not_great", "type": "DIR", "description": "d", "reason": reason},
    ]}))  # fmt: skip

    text = render_card(run)
    assert validate_card(text) is None
    results = ModelCard(text).data.eval_results
    assert {r.task_name for r in results} == {"Text classification"} and not ORDINAL_TYPES & {
        r.metric_type for r in results
    }
    assert "A BERT text classifier (sports / politics / tech / film / music)" in text
    assert [row[0] for row in table(text, "| class | precision |")] == list(topics.values())
    assert "these labels carry no sentiment" in text and BINARY_CLAIM not in text
    assert f"Not run: clear_positive (MFT), add_not_great (DIR), because {reason}." in text


def test_skipped_behavioural_tests_group_by_reason_and_read_older_runs():
    assert skipped_tests("behavioural tests need a binary negative/positive model") == [
        ("behavioural tests need a binary negative/positive model", [])
    ]
    tests = [{"name": "a", "type": "MFT", "reason": "r1"}, {"name": "b", "type": "DIR", "reason": "r2"},
             {"name": "c", "type": "MFT", "reason": "r1"}]  # fmt: skip
    assert skipped_tests(tests) == [("r1", ["a (MFT)", "c (MFT)"]), ("r2", ["b (DIR)"])]
    assert skipped_tests(None) == []
