"""The sample-predictions picture: which examples it shows, and that it draws for 2 to 5 labels."""

import numpy as np
from matplotlib.image import imread

from trainer.evaluation.analysis import predictions_frame
from trainer.evaluation.plots import plot_sample_predictions, sample_rows

# p(positive) and labels; predictions and confidences follow:
#   row 0 correct .90 | 1 wrong .80 | 2 correct .99 | 3 wrong .95 | 4 correct .60 | 5 wrong .55 | 6 correct .90
P_POS = np.array([0.90, 0.80, 0.99, 0.05, 0.60, 0.45, 0.10])
LABELS = np.array([1, 0, 1, 1, 1, 1, 0])


def binary_frame():
    texts = [f"review number {i} , a film" for i in range(len(LABELS))]
    return predictions_frame(texts, LABELS, np.stack([1 - P_POS, P_POS], axis=1), ["negative", "positive"])


def test_most_confident_correct_then_most_confident_mistakes_each_label_in_turn():
    chosen = sample_rows(binary_frame(), n_each=2)
    assert chosen.index.tolist() == [2, 6, 3, 1]  # the best positive (2) and negative (6), then mistakes alike
    assert chosen["correct"].tolist() == [True, True, False, False]
    assert chosen.loc[3, ["label", "predicted"]].tolist() == ["positive", "negative"]


def test_fewer_examples_than_asked_gives_all_of_them():
    assert sample_rows(binary_frame(), n_each=10).index.tolist() == [2, 6, 0, 4, 3, 1, 5]
    no_mistakes = binary_frame().query("correct")
    assert sample_rows(no_mistakes, n_each=3).index.tolist() == [2, 6, 0]


def test_png_for_two_and_five_labels_and_for_a_set_without_mistakes(tmp_path):
    two = plot_sample_predictions(binary_frame(), tmp_path / "two.png", n_each=3)
    names = ["very negative", "negative", "neutral", "positive", "very positive"]
    probs = np.array([[0.7, 0.1, 0.1, 0.05, 0.05], [0.1, 0.6, 0.1, 0.1, 0.1], [0.05, 0.05, 0.1, 0.1, 0.7],
                      [0.2, 0.2, 0.2, 0.3, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1]])  # fmt: skip
    texts = ["awful", "rather weak", "a triumph " * 40, "fine, I suppose", "it exists"]
    five = plot_sample_predictions(predictions_frame(texts, [0, 1, 3, 2, 2], probs, names), tmp_path / "five.png",
                                   n_each=3)  # fmt: skip
    clean = plot_sample_predictions(binary_frame().query("correct"), tmp_path / "clean.png", n_each=3)
    for path in (two, five, clean):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(five).shape[0] > imread(two).shape[0]  # a bar per label: five labels make taller panels


def test_the_analysis_after_training_writes_it(tiny_run):
    assert imread(tiny_run / "plots" / "sample_predictions.png").shape[1] > 1000
