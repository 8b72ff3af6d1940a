"""Texts longer than max_length: cut there (truncate) or read whole in overlapping windows (chunk), on the tiny BERT.

The tiny BERT reads 64 tokens at once (its position embeddings): 62 of text between [CLS] and [SEP]. The default
stride is 64 // 4 = 16 shared tokens, so window k starts at text token 46k.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import WORDS, writable_copy, write_tsv
from trainer.evaluate import main as evaluate_main
from trainer.export.onnx import ensure_onnx
from trainer.inference import Classifier, combine_windows, mean_by_text
from trainer.predict import main as predict_main

# 200 one-token words in a cycle: 4 windows (text tokens 0-61, 46-107, 92-153, 138-199), the last one full.
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(200))
SHORT = ["good film", "the plot was dull and the acting awful", "not bad , really"]


@pytest.fixture(scope="module")
def chunking(tiny_model_dir) -> Classifier:
    return Classifier(tiny_model_dir, device="cpu", long_text="chunk")


@pytest.fixture(scope="module")
def truncating(tiny_model_dir) -> Classifier:
    return Classifier(tiny_model_dir, device="cpu")


def window_logits(classifier: Classifier, text: str) -> np.ndarray:
    """Each window's logits from the model itself, one window per forward pass (no batching, no padding)."""
    enc = classifier.tokenizer(text, truncation=True, max_length=64, stride=16, return_overflowing_tokens=True)
    with torch.inference_mode():
        return np.concatenate([classifier.model(input_ids=torch.tensor([ids])).logits.numpy()
                               for ids in enc["input_ids"]])  # fmt: skip


def test_chunk_windows_cover_the_whole_text_with_the_stride_shared(chunking):
    assert (chunking.max_length, chunking.stride) == (64, 16)
    ids = chunking.tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(ids) == 200
    windows, owner = chunking._windows([LONG])
    cls, sep = chunking.tokenizer.cls_token_id, chunking.tokenizer.sep_token_id
    assert owner.tolist() == [0, 0, 0, 0]
    for k, window in enumerate(windows):
        assert window.tolist() == [cls, *ids[46 * k : 46 * k + 62], sep], k
    assert chunking.score([LONG, "good film"]).windows.tolist() == [4, 1]
    assert chunking.count_long([LONG, "good film", LONG]) == 2


def test_short_texts_score_bit_identical_in_both_modes(chunking, truncating):
    chunked, truncated = chunking.score(SHORT, embeddings=True), truncating.score(SHORT, embeddings=True)
    assert np.array_equal(chunked.logits, truncated.logits)
    assert np.array_equal(chunked.embeddings, truncated.embeddings)
    assert chunked.windows.tolist() == truncated.windows.tolist() == [1, 1, 1]
    # Beside a long text (other batches, other padding) they agree to float precision.
    mixed = chunking.score([SHORT[0], LONG, *SHORT[1:]]).logits
    np.testing.assert_allclose(mixed[[0, 2, 3]], truncated.logits, atol=1e-5)


def test_truncate_reads_the_first_window_only(chunking, truncating):
    first = window_logits(chunking, LONG)[0]
    np.testing.assert_allclose(truncating.score([LONG]).logits[0], first, atol=1e-5)
    assert truncating.score([LONG]).windows.tolist() == [1]


def test_the_windows_are_combined_by_the_mean_of_their_probabilities(chunking):
    rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]], dtype=np.float32)
    assert mean_by_text(rows, np.array([1, 1, 0]), 2).tolist() == [[5.0, 9.0], [2.0, 3.0]]
    # text 0: windows with probabilities (1/4, 3/4) and (1/2, 1/2), mean (3/8, 5/8); text 1: one window, kept as it is
    logits = np.array([[0.0, np.log(3.0)], [1.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    combined = combine_windows(logits, np.array([0, 1, 0]), 2)
    np.testing.assert_allclose(combined[0], np.log([3 / 8, 5 / 8]), rtol=1e-6)
    assert combined[1].tolist() == [1.0, 2.0]
    per_window = window_logits(chunking, LONG)
    assert per_window.shape == (4, 2)
    probs = np.exp(per_window) / np.exp(per_window).sum(1, keepdims=True)
    np.testing.assert_allclose(chunking.score([LONG]).probs[0], probs.mean(0), atol=1e-6)


def test_embeddings_are_the_mean_of_the_windows_pooled_embeddings(chunking):
    scores = chunking.score([SHORT[0], LONG], embeddings=True)
    assert scores.embeddings.shape == (2, 32) and scores.logits.shape == (2, 2)
    _, pooled, owner = chunking.window_scores([LONG], embeddings=True)
    assert pooled.shape == (4, 32) and owner.tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(scores.embeddings[1], pooled.mean(0), atol=1e-5)


def test_windows_are_batched_not_one_batch_per_text(chunking, monkeypatch):
    sizes = []
    pad = chunking._pad
    monkeypatch.setattr(chunking, "_pad", lambda windows, tensors: sizes.append(len(windows)) or pad(windows, tensors))
    chunking.score([LONG, LONG, "good film"], batch_size=3)
    assert sizes == [3, 3, 3]  # 9 windows in length order, never more than batch_size at once


def test_int8_chunk_path_agrees_with_torch_chunk(tiny_model_dir, tmp_path, chunking):
    folder = writable_copy(tiny_model_dir, tmp_path / "model")  # the export is written into the model folder
    ensure_onnx(folder)  # onnx/model_quantized.onnx, where a published repo ships it: the core finds it there
    fast = Classifier(folder, device="cpu", backend="onnx-int8", long_text="chunk")
    texts = [LONG, *SHORT]
    int8, fp32 = fast.score(texts), chunking.score(texts)
    assert int8.windows.tolist() == fp32.windows.tolist() == [4, 1, 1, 1]
    assert np.abs(int8.probs - fp32.probs).max() < 0.02


def test_a_stride_the_window_cannot_hold_is_one_line(tiny_model_dir, capsys):
    assert predict_main(["--model", str(tiny_model_dir), "--long_text", "chunk", "--stride", "62", "good"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the weight-loading progress bar
    assert last == "error: --stride 62: use 0 to 61 (a window of this model holds 62 tokens of text)"


def test_predict_notes_cut_texts_and_reads_them_whole_with_chunk(tiny_model_dir, chunking, capsys):
    args = ["--model", str(tiny_model_dir), "--backend", "torch", LONG, "good film"]
    assert predict_main(args) == 0
    err = capsys.readouterr().err
    assert "note: 1 of 2 texts are longer than the model's 64 tokens and were cut there; --long_text chunk" in err
    assert predict_main([*args, "--long_text", "chunk"]) == 0
    out, err = capsys.readouterr()
    assert "note:" not in err
    expected = chunking.predict([LONG])[0]
    assert out.splitlines()[0].startswith(f"{expected['label']:<10} {expected['score']:.3f}")


def test_evaluate_with_chunk_scores_each_long_text_once(tiny_model_dir, chunking, tmp_path, capsys):
    texts = [LONG, " ".join(reversed(LONG.split())), *SHORT, "bad film"]
    data = write_tsv(pd.DataFrame({"sentence": texts, "label": [1, 0, 1, 0, 1, 0]}), tmp_path / "long.tsv")
    out = tmp_path / "eval"
    args = ["--model", str(tiny_model_dir), "--data", str(data), "--output_dir", str(out), "--n_bootstrap", "5"]
    assert evaluate_main([*args, "--long_text", "chunk"]) == 0
    assert "note:" not in capsys.readouterr().err
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == 6
    expected = chunking.predict(texts)
    assert predictions["predicted"].tolist() == [r["label"] for r in expected]
    recorded = json.loads((out / "metrics.json").read_text())["long_text"]
    assert recorded == {"mode": "chunk", "max_length": chunking.max_length, "stride": chunking.stride,
                        "texts_over_max_length": 2}  # fmt: skip
    capsys.readouterr()
    assert evaluate_main([*args, "--output_dir", str(tmp_path / "cut")]) == 0
    assert capsys.readouterr().err.count("note: 2 of 6 texts are longer than the model's 64 tokens") == 1
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())["long_text"]
    assert (cut["mode"], cut["stride"], cut["texts_over_max_length"]) == ("truncate", None, 2)
