"""What label names mean: polarity, order and the positive side, read from the names alone."""

import pytest

from trainer.labels import LabelSet, polarity

FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]


@pytest.mark.parametrize(
    "name, value",
    [("very negative", -2), ("Negative", -1), ("neg", -1), ("neutral", 0), ("mixed", 0), ("good", 1),
     ("strongly positive", 2), ("sports", None), ("LABEL_1", None)],
)  # fmt: skip
def test_polarity_of_a_name(name, value):
    assert polarity(name) == value


def test_sst5_is_an_ordered_scale_with_two_sides():
    labels = LabelSet.of(FIVE)
    assert labels.ordinal and labels.rank == (0, 1, 2, 3, 4)
    assert (labels.negative, labels.neutral, labels.positive) == ([0, 1], [2], [3, 4])


def test_a_scale_is_read_in_any_id_order():
    labels = LabelSet.of(["positive", "negative", "neutral"])
    assert labels.ordinal and labels.rank == (2, 0, 1)
    assert labels.ordered_names() == ["negative", "neutral", "positive"]


def test_star_ratings_are_a_scale_whose_middle_is_neutral():
    labels = LabelSet.of(["1 star", "2 stars", "3 stars", "4 stars", "5 stars"])
    assert labels.ordinal and labels.sign == (-1, -1, 0, 1, 1)


@pytest.mark.parametrize(
    "names, positive",
    [(["negative", "positive"], 1), (["POSITIVE", "NEGATIVE"], 0), (["LABEL_0", "LABEL_1"], 1), (["bad", "good"], 1)],
)
def test_binary_sets_always_have_a_positive_class_and_no_order(names, positive):
    labels = LabelSet.of(names)
    assert labels.positive_class == positive and labels.has_polarity and not labels.ordinal


def test_topics_have_neither_order_nor_polarity_and_the_user_can_declare_an_order():
    topics = LabelSet.of(["sports", "politics", "tech"])
    assert not topics.ordinal and not topics.has_polarity and topics.positive == []
    declared = LabelSet.of(["low", "medium", "high"], order="ordinal")
    assert declared.ordinal and declared.rank == (0, 1, 2) and not declared.has_polarity
    assert not LabelSet.of(FIVE, order="nominal").ordinal


def test_names_on_one_side_only_carry_no_polarity_to_test():
    assert not LabelSet.of(["neutral", "positive", "very positive"]).has_polarity
