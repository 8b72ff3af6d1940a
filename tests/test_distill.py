"""Distillation: the loss, teachers from run folders (cached, checked), out-of-fold fold teachers, and the record."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from model_card import render_card
from tests.conftest import make_tiny_data, tiny_args
from trainer import UserError
from trainer.config import load_config
from trainer.data import fold_rows, read_table
from trainer.inference import Classifier
from trainer.training.loop import distillation_loss, train


def test_the_loss_mixes_kl_at_the_temperature_with_the_hard_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    soft = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    hard = torch.tensor(0.5)
    t = 2.0
    # by hand: batch mean of sum_c p_c (log p_c - log q_c), q = softmax(logits / T), times T^2
    q = torch.softmax(logits / t, dim=-1)
    kl = float((soft * (soft.log() - q.log())).sum(-1).mean()) * t * t
    assert float(distillation_loss(logits, soft, hard, 1.0, t)) == pytest.approx(kl, rel=1e-6)
    assert float(distillation_loss(logits, soft, hard, 0.0, t)) == pytest.approx(0.5)
    assert float(distillation_loss(logits, soft, hard, 0.25, t)) == pytest.approx(0.25 * kl + 0.75 * 0.5, rel=1e-6)
    # a student that matches the teacher at the temperature has no soft loss
    assert float(distillation_loss(torch.log(soft) * t, soft, hard, 1.0, t)) == pytest.approx(0.0, abs=1e-6)


def test_folds_are_stratified_disjoint_and_cover_every_row():
    labels = np.array([0] * 12 + [1] * 6)
    folds = fold_rows(labels, 3, seed=1)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(18))
    for keep, out in folds:
        assert set(keep).isdisjoint(out) and np.bincount(labels[out]).tolist() == [4, 2]
    with pytest.raises(UserError, match="7 folds need at least 7 training rows of every label"):
        fold_rows(labels, 7, seed=1)


def weights(run) -> dict:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.slow  # three tiny trainings, ~15 s
def test_a_teacher_run_teaches_and_its_logits_are_cached_and_recorded(tiny_model_dir, tiny_run, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    data = make_tiny_data(tmp_path)  # the data the teacher (the tiny run) was trained on
    extra = ["--teacher", str(tiny_run), "--distill_alpha", "0.9", "--distill_temperature", "3"]
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "student", *extra)
    calls = []
    original = Classifier.score
    monkeypatch.setattr(Classifier, "score", lambda self, *a, **k: calls.append(len(a[0])) or original(self, *a, **k))
    run_dir, metrics = train(load_config(args))

    # the teacher scored the 64 training texts once, and the cache holds them beside the run folder
    train_texts = read_table(data[0])["sentence"].tolist()
    assert len(train_texts) in calls
    cached = list((tmp_path / "runs" / "teacher_cache").glob("*.npz"))
    assert len(cached) == 1
    teacher = Classifier(tiny_run)
    np.testing.assert_allclose(np.load(cached[0])["logits"], teacher.score(train_texts).logits, atol=1e-5)
    # its validation accuracy is recorded with the settings
    record = metrics["distillation"]
    dev = read_table(data[1])
    expected = float((teacher.predict_proba(dev["sentence"].tolist()).argmax(1) == dev["label"].to_numpy()).mean())
    assert record["teachers"][0]["model"] == str(tiny_run)
    assert record["teachers"][0]["accuracy"]["value"] == pytest.approx(expected)
    assert (record["alpha"], record["temperature"], record["folds"]) == (0.9, 3.0, None)
    saved = json.loads((run_dir / "metrics.json").read_text())["distillation"]
    assert saved["teachers"][0]["accuracy"]["n"] == len(dev)
    # the soft labels changed what the student learned (the tiny run is the plain run: same seed, flags and data)
    assert any(not torch.equal(a, weights(tiny_run)[k]) for k, a in weights(run_dir).items())
    # a rerun reads the cache: the teacher does not score the training texts again, and the run is the same
    calls.clear()
    again, _ = train(load_config(tiny_args(tiny_model_dir, data, tmp_path / "runs" / "again", *extra)))
    assert len(train_texts) not in calls
    assert all(torch.equal(a, weights(again)[k]) for k, a in weights(run_dir).items())
    # the card names the teacher, its accuracy and the loss
    card = render_card(run_dir, "alice/student")
    assert f", distilled from `{tiny_run}`" in card and "**Distillation.**" in card
    assert "0.9 x KL(teacher || student) at temperature 3.0" in card
    assert f"| `{tiny_run}` | {expected:.1%} (" in card


def test_a_teacher_with_another_label_set_is_a_one_line_error(tiny_five_run, tmp_path, tiny_model_dir):
    data = make_tiny_data(tmp_path)
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "student", "--teacher", str(tiny_five_run))
    with pytest.raises(UserError, match=r"predicts very negative, .* the data has negative, positive: a teacher must"):
        train(load_config(args))


def test_distillation_flags_are_checked():
    with pytest.raises(UserError, match="give --teacher or --teacher_folds, not both"):
        load_config(["--teacher", "runs/a", "--teacher_folds", "3"])
    with pytest.raises(UserError, match="teacher_folds=1: use at least 2 folds"):
        load_config(["--teacher_folds", "1"])
    with pytest.raises(UserError, match=r"distill_alpha=1.5 must be in \[0, 1\]"):
        load_config(["--teacher", "runs/a", "--distill_alpha", "1.5"])
    with pytest.raises(UserError, match="distill_temperature=0.0 must be positive"):
        load_config(["--teacher", "runs/a", "--distill_temperature", "0"])
    with pytest.raises(UserError, match="distill_augment=2: give 0, or a number of copies with --teacher"):
        load_config(["--distill_augment", "2"])
    with pytest.raises(UserError, match="teacher 'self:one': a teacher trained here is 'self' or 'self:SEED'"):
        load_config(["--teacher", "self:one"])


@pytest.mark.slow  # two fold teachers and a student, tiny, ~15 s
def test_fold_teachers_label_only_the_fold_they_never_saw(tiny_model_dir, tmp_path):
    data = make_tiny_data(tmp_path)
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "student", "--teacher_folds", "2", "--seed", "7")
    run_dir, metrics = train(load_config(args))
    record = metrics["distillation"]
    assert record["folds"] == 2 and record["soft_labels"] == "out-of-fold"
    (folder,) = (tmp_path / "runs" / "teacher_cache").glob("folds-*")
    texts = read_table(data[0])["sentence"].tolist()
    labels = read_table(data[0])["label"].to_numpy()
    cached = np.load(folder / "logits.npz")["logits"]
    for i, (keep, held) in enumerate(fold_rows(labels, 2, seed=7)):
        teacher_dir = folder / f"fold-{i + 1}-of-2"
        config = json.loads((teacher_dir / "metrics.json").read_text())
        assert config["train_samples"] == len(keep)  # trained without its fold
        np.testing.assert_allclose(cached[held], Classifier(teacher_dir).score([texts[j] for j in held]).logits,
                                   atol=1e-5)  # fmt: skip
    # each fold teacher's own validation accuracy, and theirs together
    dev = read_table(data[1])
    accuracies = []
    for i, teacher in enumerate(record["teachers"]):
        assert teacher["model"].startswith(f"fold {i + 1} of 2 teacher (")
        probs = Classifier(folder / f"fold-{i + 1}-of-2").predict_proba(dev["sentence"].tolist())
        accuracies.append(probs)
        assert teacher["accuracy"]["value"] == pytest.approx(float((probs.argmax(1) == dev["label"]).mean()))
    together = float((np.mean(accuracies, axis=0).argmax(1) == dev["label"]).mean())
    assert record["ensemble_accuracy"]["value"] == pytest.approx(together)
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()  # the student, not a teacher
    card = render_card(run_dir, "alice/student")
    assert "2 teachers trained with this same configuration on 1 of 2 folds" in card
    assert ", distilled from 2 out-of-fold teachers of its own size." in card
    assert "| the teachers together (probabilities averaged) |" in card
    # a student that differs only in its distillation settings reuses the fold teachers
    again = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "warmer", "--teacher_folds", "2", "--seed", "7",
                      "--distill_temperature", "4")  # fmt: skip
    _, metrics = train(load_config(again))
    assert metrics["distillation"]["temperature"] == 4.0
    assert list((tmp_path / "runs" / "teacher_cache").glob("folds-*")) == [folder]


@pytest.mark.slow  # two tiny distilled runs and a resume, ~15 s
def test_a_distilled_run_resumes_bit_exact_and_hpo_trials_keep_the_teacher(tiny_model_dir, tiny_run, tmp_path):
    from trainer.search.flags import trial_config

    data = make_tiny_data(tmp_path)
    extra = ["--teacher", str(tiny_run), "--bf16", "false"]
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "resumed", *extra)
    resumed, _ = train(load_config(args))
    reference = weights(resumed)  # the run uninterrupted
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-6")  # as if it had stopped after step 3
    (resumed / "metrics.json").unlink()
    _, metrics = train(load_config(["--resume", str(resumed), "--disable_tqdm", "true"]))
    assert metrics["global_step"] == 6 and metrics["distillation"]["teachers"][0]["model"] == str(tiny_run)
    assert all(torch.equal(a, reference[k]) for k, a in weights(resumed).items())
    cadence = {"per_device_train_batch_size": 8, "eval_steps": 3, "save_steps": 3}
    trial = trial_config(load_config(args), cadence, {"learning_rate": 1e-4}, tmp_path / "trial", "hpo")
    assert trial.model.teacher == [str(tiny_run)] and trial.model.distill_alpha == 0.5


def long_texts(words: list[str]) -> list[str]:
    """Reviews of 12 words from the tiny vocabulary: long enough for the transfer set."""
    return [f"{w} film , really {w} , the story was {w} and so {w}" for w in words]


def test_a_transfer_set_copies_long_texts_with_their_words_nearest_neighbours(tiny_model_dir):
    from transformers import AutoModel

    from tests.conftest import WORDS
    from trainer.training.distill import NEIGHBOURS, transfer_set, word_neighbours

    texts = [*long_texts(["good", "bad", "dull", "great"]), "good film"]  # the last is too short to copy
    neighbours = word_neighbours(texts, str(tiny_model_dir))
    # by hand: cosine of the input embeddings over the texts' words of 3+ letters that are in the vocabulary
    embeddings = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach().numpy()
    vocab = (tiny_model_dir / "vocab.txt").read_text().split()
    words = sorted({w for t in texts for w in t.split() if len(w) > 2 and w.isalpha() and w in WORDS})
    vectors = embeddings[[vocab.index(w) for w in words]]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2)
    for i, word in enumerate(words):
        assert neighbours[word] == [words[j] for j in np.argsort(-similarity[i], kind="stable")[:NEIGHBOURS]]

    transfer = transfer_set(texts, 3, seed=5, model_name_or_path=str(tiny_model_dir))
    assert 0 < len(transfer.texts) <= 12 and set(transfer.sources) <= {0, 1, 2, 3}
    for text, source in zip(transfer.texts, transfer.sources):
        original = texts[source].split()
        assert text.split() != original and len(text.split()) <= len(original)
        for word in set(text.split()) - set(original):  # every new word stands in for a word of the source
            assert any(word in neighbours.get(w, []) for w in original)
    again = transfer_set(texts, 3, seed=5, model_name_or_path=str(tiny_model_dir))
    assert again.texts == transfer.texts and again.sources.tolist() == transfer.sources.tolist()
    assert transfer_set(texts, 3, seed=6, model_name_or_path=str(tiny_model_dir)).texts != transfer.texts


@pytest.mark.slow  # two fold teachers, two students, tiny, ~20 s
def test_the_transfer_set_is_labelled_by_the_teacher_that_never_saw_its_source(tiny_model_dir, tiny_run, tmp_path):
    from tests.conftest import WORDS, write_tsv
    from trainer.training.distill import transfer_set

    good = {"good", "great", "wonderful", "best"}
    frame = pd.DataFrame([(t, int(w in good)) for w, t in zip(WORDS[:16], long_texts(WORDS[:16]))] * 4,
                         columns=["sentence", "label"])  # fmt: skip
    data = write_tsv(frame, tmp_path / "train.tsv"), write_tsv(frame.head(16), tmp_path / "dev.tsv")
    extra = ["--teacher_folds", "2", "--seed", "7", "--distill_augment", "1", "--max_length", "32"]
    run_dir, metrics = train(load_config(tiny_args(tiny_model_dir, data, tmp_path / "runs" / "student", *extra)))
    texts, labels = frame["sentence"].tolist(), frame["label"].to_numpy()
    transfer = transfer_set(texts, 1, seed=7, model_name_or_path=str(tiny_model_dir))
    record = metrics["distillation"]["transfer_set"]
    assert record["rows"] == len(transfer.texts) > 0 and (record["copies"], record["min_words"]) == (1, 10)
    (folder,) = (tmp_path / "runs" / "teacher_cache").glob("folds-*")
    (cached,) = folder.glob("logits-*.npz")
    logits = np.load(cached)["logits"]
    assert len(logits) == len(texts) + len(transfer.texts)
    copies = logits[len(texts) :]
    for i, (_, held) in enumerate(fold_rows(labels, 2, seed=7)):
        mine = np.flatnonzero(np.isin(transfer.sources, held))
        expected = Classifier(folder / f"fold-{i + 1}-of-2").score([transfer.texts[j] for j in mine]).logits
        np.testing.assert_allclose(copies[mine], expected, atol=1e-5)
    changed = float((copies.argmax(1) != labels[transfer.sources]).mean())
    assert record["label_changed"] == pytest.approx(changed, abs=1e-4)
    assert json.loads((run_dir / "training_summary.json").read_text())  # the run finished its analysis
    card = render_card(run_dir, "alice/student")
    assert f"A transfer set of {len(transfer.texts)} texts joined the training texts: 1 copy of each" in card
    # a run folder as the teacher scores the training texts and the copies, in one cached file
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "taught", "--teacher", str(tiny_run),
                     "--distill_augment", "1", "--seed", "7", "--max_length", "32")  # fmt: skip
    _, metrics = train(load_config(args))
    (scored,) = [f for f in (tmp_path / "runs" / "teacher_cache").glob("*.npz")]
    assert len(np.load(scored)["logits"]) == len(texts) + len(transfer.texts)
    assert metrics["distillation"]["transfer_set"]["rows"] == len(transfer.texts)


@pytest.mark.slow  # a plain run, a self-taught student (and its teacher), and a second student, tiny, ~20 s
def test_a_self_teacher_is_the_plain_run_of_the_same_config_trained_once(tiny_model_dir, tmp_path):
    data = make_tiny_data(tmp_path)
    plain, _ = train(load_config(tiny_args(tiny_model_dir, data, tmp_path / "runs" / "plain", "--seed", "3")))
    args = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "student", "--teacher", "self", "--seed", "3")
    run_dir, metrics = train(load_config(args))
    (teacher,) = (tmp_path / "runs" / "teacher_cache").glob("self-*")
    assert all(torch.equal(a, weights(plain)[k]) for k, a in weights(teacher).items())
    record = metrics["distillation"]["teachers"][0]
    assert record["self"] and record["model"] == str(teacher)
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()  # the student, not its teacher
    card = render_card(run_dir, "alice/student")
    assert ", distilled from a teacher of its own size trained with this same configuration." in card
    assert f"a teacher trained with this same configuration, seed 3, on all the training data (`{teacher}`)" in card
    # a student that differs only in its distillation settings reuses the teacher
    again = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "other", "--teacher", "self", "--seed", "3",
                      "--distill_alpha", "0.8")  # fmt: skip
    _, metrics = train(load_config(again))
    assert metrics["distillation"]["alpha"] == 0.8
    assert list((tmp_path / "runs" / "teacher_cache").glob("self-*")) == [teacher]
    # an ensemble of self teachers by seed: self:3 is the teacher above, self:4 a new one, the plain run of seed 4
    ensemble = tiny_args(tiny_model_dir, data, tmp_path / "runs" / "ensemble", "--teacher", "self:3", "self:4",
                         "--seed", "4")  # fmt: skip
    run_dir, metrics = train(load_config(ensemble))
    first, second = metrics["distillation"]["teachers"]
    assert (first["model"], first["seed"], second["seed"]) == (str(teacher), 3, 4) and second["self"]
    plain4, _ = train(load_config(tiny_args(tiny_model_dir, data, tmp_path / "runs" / "plain4", "--seed", "4")))
    assert all(torch.equal(a, weights(plain4)[k]) for k, a in weights(Path(second["model"])).items())
    card = render_card(run_dir, "alice/ensemble")
    assert ", distilled from 2 teachers of its own size trained with this same configuration (seeds 3, 4)." in card
