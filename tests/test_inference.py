"""The inference core: one way to tokenise, batch, score and pool, shared by predict, evaluate, bench and the Space."""

import json
import sys

import numpy as np
import pytest
import torch
from scipy.special import softmax
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from tests.conftest import ROOT, make_tiny_data, tiny_args
from trainer import UserError
from trainer.inference import Classifier
from trainer.modeling import load_classifier
from trainer.run_folder import is_hub_id

TEXTS = ["good film , really good", "worst film", "a movie", "the plot is dull but the acting is great !"] * 3


def test_scores_match_pipeline_and_do_not_depend_on_batching(tiny_run):
    classifier = load_classifier(str(tiny_run))
    ours = classifier.predict(TEXTS)
    theirs = pipeline("text-classification", model=str(tiny_run))(TEXTS)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert [o["score"] for o in ours] == pytest.approx([t["score"] for t in theirs], abs=1e-5)
    one_by_one = np.concatenate([classifier.score([t]).logits for t in TEXTS])
    np.testing.assert_allclose(classifier.score(TEXTS, batch_size=5).logits, one_by_one, atol=1e-5)


def test_embeddings_are_the_mean_of_the_last_hidden_state_over_real_tokens(tiny_run):
    scores = load_classifier(str(tiny_run)).score(TEXTS[:2], embeddings=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_run).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(TEXTS[0], return_tensors="pt"), output_hidden_states=True).hidden_states[-1]
    np.testing.assert_allclose(scores.embeddings[0], hidden[0].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.probs, softmax(scores.logits.astype(float), axis=1))
    assert scores.probs.sum(1) == pytest.approx([1.0, 1.0])


def test_texts_are_cut_at_the_runs_own_max_length(tiny_model_dir, tmp_path):
    from trainer.config import load_config
    from trainer.training.loop import train

    args = tiny_args(
        tiny_model_dir, make_tiny_data(tmp_path), tmp_path / "run", "--max_length", "8", "--n_bootstrap", "5"
    )
    run, _ = train(load_config(args))
    assert json.loads((run / "tokenizer_config.json").read_text())["model_max_length"] == 8
    classifier = load_classifier(str(run))
    assert classifier.max_length == 8
    long = "good film , really good and the plot is fun but the acting is dull"
    cut = classifier.tokenizer.decode(classifier.tokenizer(long, truncation=True)["input_ids"][1:-1])
    np.testing.assert_allclose(classifier.score([long]).logits, classifier.score([cut]).logits, atol=1e-5)
    theirs = pipeline("text-classification", model=str(run))([long], truncation=True)[0]
    assert theirs["score"] == pytest.approx(float(classifier.predict_proba([long]).max()), abs=1e-5)


def test_the_space_scores_and_pools_exactly_like_the_trainer(tiny_run):
    sys.path.insert(0, str(ROOT / "space"))
    try:
        import backend
    finally:
        sys.path.remove(str(ROOT / "space"))
    ours = load_classifier(str(tiny_run)).score(TEXTS, embeddings=True)
    space = backend.SentimentModel(backend.locate(str(tiny_run))).score(TEXTS, embeddings=True)
    np.testing.assert_array_equal(space.logits, ours.logits)
    np.testing.assert_array_equal(space.embeddings, ours.embeddings)


def test_missing_model_is_one_line_and_the_core_refuses_an_unknown_backend(tmp_path):
    with pytest.raises(UserError, match="no model at .*: train one with `make train`"):
        load_classifier(str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="unknown backend"):
        Classifier(tmp_path, backend="tensorrt")


def test_hub_ids_are_owner_slash_name_and_not_local_paths(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "model").mkdir()
    assert (
        is_hub_id("alice/sst2-minilm") and is_hub_id("bert-base-uncased") and is_hub_id("google-bert/bert-base-uncased")
    )
    assert not is_hub_id("a/b/c") and not is_hub_id("../model") and not is_hub_id("model dir")
    assert not is_hub_id("./alice/model") and not is_hub_id("/abs/path") and not is_hub_id(None)
    assert not is_hub_id(str(tmp_path / "alice" / "model"))


def test_the_core_asked_for_int8_without_an_export_is_one_line_naming_the_fix(tiny_model_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(FileNotFoundError) as err:  # the core loads the int8 file; it never exports one
        Classifier(folder, device="cpu", backend="onnx-int8")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"no int8 ONNX file at {folder / 'onnx/model_quantized.onnx'}:")
    assert f"ensure_onnx({str(folder)!r})" in message and 'backend="torch"' in message
    assert not (folder / "onnx").exists()


def test_the_core_looks_for_the_int8_file_where_the_run_folder_layout_puts_it(tmp_path):
    from trainer.inference import INT8_FILE
    from trainer.run_folder import onnx_path

    assert tmp_path / INT8_FILE == onnx_path(tmp_path, "int8")  # the core imports nothing, so it spells the name
