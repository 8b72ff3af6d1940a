"""Behavioural suite checked against fake models whose failures are known in advance."""

import json
import random
import re
import zlib

import numpy as np
import pytest

from trainer.evaluation.behavioral import (
    DIR_SUFFIX,
    MAX_EXAMPLES,
    MAX_SENTENCES,
    NAME_TEMPLATES,
    add_typo,
    punctuation_variants,
    run_behavioral_tests,
)

LABELS = ["negative", "positive"]
POSITIVE = set(
    "good great best brilliant wonderful wonderfully beautifully superb loved love like enjoy enjoyable excellent "
    "gripping delightful charming clever funny fun masterpiece happily convincing recommend interesting memorable "
    "worth breathtaking moving".split()
)
NEGATIVE = set(
    "bad worst awful terrible boring dull lifeless waste hated tedious mess pointless poorly badly clumsy bland ugly "
    "painful forgettable dreadful wasted disappointment disappointing tiresome confusing".split()
)
# 30 lowercase sentences, SST-2 style, each with a word that a typo can change.
SENTENCES = (
    [
        f"{subject} {verb} {adjective} ."
        for subject in ["the film", "this movie", "the story", "the acting", "the script"]
        for verb, adjective in [
            ("was", "wonderful"),
            ("felt", "tedious"),
            ("seemed", "charming"),
            ("looked", "dreadful"),
        ]
    ]
    + [f"the ending was {adjective} ." for adjective in ["moving", "clever", "bland", "painful", "superb", "awful"]]
    + [
        "what a great film !",
        "boring from start to finish",
        "an ugly , pointless mess .",
        "a clever and funny script",
    ]
)


def probs_of(p_positive) -> np.ndarray:
    """(n, 2) probabilities for LABELS from P(positive)."""
    p = np.asarray(list(p_positive), dtype=float)
    return np.stack([1 - p, p], axis=1)


def lexicon_score(text: str) -> int:
    """Positive minus negative words, every word after a negator counted with the opposite sign."""
    score, sign = 0, 1
    for word in re.findall(r"[a-z']+", text.lower()):
        if word in {"not", "never", "no"} or word.endswith("n't"):
            sign = -1
        score += sign * ((word in POSITIVE) - (word in NEGATIVE))
    return score


def lexicon(texts):
    return probs_of(0.9 if lexicon_score(t) > 0 else 0.1 for t in texts)


def always_positive(texts):
    return probs_of(0.8 for _ in texts)


def hashed(texts):
    """Pseudo-random but deterministic P(positive): fails a bit of everything."""
    return probs_of(zlib.crc32(t.encode()) % 1000 / 1000 for t in texts)


def by_name(name: str):
    """Lexicon model that calls everything mentioning `name` positive."""
    return lambda texts: probs_of(0.9 if name in t or lexicon_score(t) > 0 else 0.1 for t in texts)


def by_test(result: dict) -> dict:
    return {t["name"]: t for t in result["tests"]}


def really_fails(test: dict, example: dict) -> bool:
    """Recompute whether an example is a failure from the numbers it reports."""
    if test["type"] == "MFT":
        return example["predicted"] != example["expected"]
    if test["type"] == "INV":
        return example["predicted_original"] != example["predicted_perturbed"]
    return example["p_positive_perturbed"] > example["p_positive_original"] + 0.02 - 1e-4  # 4 dp rounding


def test_suite_has_the_nine_tests_with_their_types():
    result = run_behavioral_tests(lexicon, LABELS, SENTENCES)
    assert [(t["name"], t["type"]) for t in result["tests"]] == [
        ("clear_positive", "MFT"),
        ("clear_negative", "MFT"),
        ("negated_positive", "MFT"),
        ("negated_negative", "MFT"),
        ("names", "INV"),
        ("locations", "INV"),
        ("typos", "INV"),
        ("punctuation", "INV"),
        ("add_not_great", "DIR"),
    ]
    assert result["positive_labels"] == ["positive"] and result["skipped"] == []
    assert all(t["description"].endswith(".") and t["n"] > 0 for t in result["tests"])
    json.dumps(result)  # written to behavioral_tests.json as is


def test_lexicon_model_passes_every_capability_test():
    tests = by_test(run_behavioral_tests(lexicon, LABELS))
    for name in ["clear_positive", "clear_negative", "negated_positive", "negated_negative"]:
        assert tests[name]["failures"] == 0, tests[name]["examples"]
    assert tests["clear_positive"]["n"] >= 10 and tests["negated_negative"]["n"] >= 8


def test_always_positive_model_fails_exactly_the_negative_expectations():
    tests = by_test(run_behavioral_tests(always_positive, LABELS))
    assert tests["clear_positive"]["failure_rate"] == 0.0
    assert tests["negated_negative"]["failure_rate"] == 0.0
    assert tests["clear_negative"]["failure_rate"] == 1.0
    assert tests["negated_positive"]["failure_rate"] == 1.0
    example = tests["clear_negative"]["examples"][0]
    assert (example["expected"], example["predicted"], example["p_positive"]) == ("negative", "positive", 0.8)
    # A constant model is trivially invariant and never raises P(positive).
    assert all(tests[name]["failures"] == 0 for name in ["names", "locations", "typos", "punctuation", "add_not_great"])


@pytest.mark.parametrize("fake", [lexicon, always_positive, hashed, by_name("Maria")])
def test_counts_rates_and_examples_are_consistent(fake):
    result = run_behavioral_tests(fake, LABELS, SENTENCES)
    for test in result["tests"]:
        assert test["failure_rate"] == pytest.approx(test["failures"] / test["n"])
        assert len(test["examples"]) == min(test["failures"], MAX_EXAMPLES)
        assert all(really_fails(test, example) for example in test["examples"])
    total = sum(t["n"] for t in result["tests"])
    assert result["overall_failure_rate"] == pytest.approx(sum(t["failures"] for t in result["tests"]) / total)


def test_hashed_model_fails_tests_of_every_type():
    tests = run_behavioral_tests(hashed, LABELS, SENTENCES)["tests"]
    assert {t["type"] for t in tests if t["failures"]} == {"MFT", "INV", "DIR"}


def test_name_dependent_model_flips_on_names_only():
    tests = by_test(run_behavioral_tests(by_name("Maria"), LABELS))
    assert tests["names"]["failures"] > 0
    assert all("Maria" in e["perturbed"] and "Maria" not in e["original"] for e in tests["names"]["examples"])
    assert tests["locations"]["failures"] == 0
    assert by_test(run_behavioral_tests(lexicon, LABELS))["names"]["failures"] == 0
    assert tests["names"]["n"] == len(NAME_TEMPLATES)  # one case per template, compared across all names


def test_location_dependent_model_flips_on_locations():
    tests = by_test(run_behavioral_tests(by_name("Tokyo"), LABELS))
    assert tests["locations"]["failures"] > 0 and tests["names"]["failures"] == 0


def test_typo_swaps_two_adjacent_inner_letters_of_one_long_word():
    rng = random.Random(0)
    assert add_typo("it is a good film", rng) == "it is a good flim"  # 'good' has no two different inner letters
    assert add_typo("a cat sat on it", rng) == "a cat sat on it"
    for seed in range(20):
        text = "the acting was wonderful"
        typo = add_typo(text, random.Random(seed))
        diff = [i for i, (a, b) in enumerate(zip(text, typo)) if a != b]
        assert len(typo) == len(text) and len(diff) == 2 and diff[1] == diff[0] + 1
        assert typo[diff[0]] == text[diff[1]] and typo[diff[1]] == text[diff[0]]
        assert text[diff[0] - 1].isalpha() and text[diff[1] + 1].isalpha()  # first and last letters untouched


def test_model_that_rejects_misspellings_fails_every_typo_case():
    vocabulary = {w for s in SENTENCES for w in re.findall(r"[a-z]+", s)}

    def spelling(texts):
        return probs_of(0.9 if set(re.findall(r"[a-z]+", t)) <= vocabulary else 0.1 for t in texts)

    tests = by_test(run_behavioral_tests(spelling, LABELS, SENTENCES))
    assert tests["typos"]["n"] == len(SENTENCES) and tests["typos"]["failure_rate"] == 1.0

    def word_count(texts):  # blind to spelling, yet not constant
        return probs_of(0.9 if len(t.split()) % 2 else 0.1 for t in texts)

    assert by_test(run_behavioral_tests(word_count, LABELS, SENTENCES))["typos"]["failures"] == 0


def test_same_seed_same_result_and_seed_changes_the_sample():
    first = run_behavioral_tests(hashed, LABELS, SENTENCES, seed=3)
    assert run_behavioral_tests(hashed, LABELS, SENTENCES, seed=3) == first
    assert run_behavioral_tests(hashed, LABELS, SENTENCES, seed=4) != first


def test_punctuation_variants_and_a_punctuation_sensitive_model():
    assert punctuation_variants("Great film!") == ["Great film", "Great film .", "Great film !"]
    assert punctuation_variants("the film is dull .") == ["the film is dull", "the film is dull !"]
    assert punctuation_variants(" ... ") == []
    tests = by_test(run_behavioral_tests(lambda ts: probs_of(0.9 if "!" in t else 0.1 for t in ts), LABELS, SENTENCES))
    assert tests["punctuation"]["failure_rate"] == 1.0
    assert by_test(run_behavioral_tests(lexicon, LABELS, SENTENCES))["punctuation"]["failures"] == 0


@pytest.mark.parametrize(("change", "failure_rate"), [(0.3, 1.0), (0.01, 0.0), (-0.3, 0.0)])
def test_appending_not_great_must_not_raise_p_positive(change, failure_rate):
    def fake(texts):
        return probs_of(0.5 + change * (DIR_SUFFIX.strip() in t) for t in texts)

    test = by_test(run_behavioral_tests(fake, LABELS, SENTENCES))["add_not_great"]
    assert test["n"] == len(SENTENCES) and test["failure_rate"] == failure_rate
    for example in test["examples"]:
        assert example["perturbed"].startswith(example["original"].rstrip())
        assert example["perturbed"].endswith(DIR_SUFFIX)


def test_sentences_are_sampled_and_empty_input_falls_back_to_templates():
    many = [f"sentence number {i} was wonderful ." for i in range(250)]
    assert by_test(run_behavioral_tests(lexicon, LABELS, many))["add_not_great"]["n"] == MAX_SENTENCES
    builtin = by_test(run_behavioral_tests(lexicon, LABELS))["add_not_great"]["n"]
    assert builtin > 0
    assert by_test(run_behavioral_tests(lexicon, LABELS, []))["add_not_great"]["n"] == builtin
    assert by_test(run_behavioral_tests(lexicon, LABELS, ["", "  "]))["add_not_great"]["n"] == builtin


def test_probs_fn_is_called_once_with_distinct_texts():
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return lexicon(texts)

    run_behavioral_tests(counting, LABELS, SENTENCES)
    assert len(calls) == 1  # the brief allows a few; the suite batches everything into one
    assert len(calls[0]) == len(set(calls[0]))


FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]


def five_class(score_to_class):
    """A five-label model: one-hot-ish probabilities on the class `score_to_class(lexicon_score(text))`."""

    def probs(texts):
        out = np.full((len(texts), 5), 0.02)
        for row, text in enumerate(texts):
            out[row, score_to_class(lexicon_score(text))] = 0.92
        return out

    return probs


def test_five_labels_are_tested_against_polarity_groups():
    lexicon5 = five_class(lambda score: int(np.clip(score, -2, 2)) + 2)  # -2 very negative ... 2 very positive
    result = run_behavioral_tests(lexicon5, FIVE, SENTENCES)
    tests = by_test(result)
    assert result["positive_labels"] == ["positive", "very positive"]
    assert result["negative_labels"] == ["very negative", "negative"] and result["skipped"] == []
    assert list(tests) == ["clear_positive", "clear_negative", "negated_positive", "negated_negative", "names",
                           "locations", "typos", "punctuation", "add_not_great"]  # fmt: skip
    # "A brilliant, moving film with superb acting." scores 3: very positive, which is on the positive side
    assert tests["clear_positive"]["failures"] == 0 and tests["clear_negative"]["failures"] == 0
    assert tests["negated_positive"]["description"].endswith("should not be predicted positive.")


def test_a_neutral_prediction_fails_the_clear_tests_and_passes_the_negated_ones():
    neutral = five_class(lambda score: 2)
    tests = by_test(run_behavioral_tests(neutral, FIVE, SENTENCES))
    assert tests["clear_positive"]["failure_rate"] == 1.0 and tests["clear_negative"]["failure_rate"] == 1.0
    assert tests["clear_positive"]["examples"][0]["expected"] == "positive or very positive"
    assert tests["clear_positive"]["examples"][0]["predicted"] == "neutral"
    # "not good" may be neutral with five labels: it only has to leave the positive side
    assert tests["negated_positive"]["failures"] == 0 and tests["negated_negative"]["failures"] == 0
    assert tests["add_not_great"]["failures"] == 0  # P(positive) = P(positive) + P(very positive) stays 0.04


def test_the_directional_test_sums_the_positive_classes():
    def shifts(to_class):
        def probs(texts):
            out = np.tile([0.1, 0.1, 0.2, 0.3, 0.3], (len(texts), 1))
            for row, text in enumerate(texts):
                if text.endswith(DIR_SUFFIX):
                    out[row] = [0.1, 0.1, 0.2, 0.3, 0.3]
                    out[row, 3], out[row, to_class] = out[row, 3] - 0.2, out[row, to_class] + 0.2
            return out

        return probs

    within = by_test(run_behavioral_tests(shifts(4), FIVE, SENTENCES))["add_not_great"]
    assert within["failures"] == 0  # mass moved from positive to very positive: P(positive side) unchanged
    from_neutral = by_test(run_behavioral_tests(shifts(2), FIVE, SENTENCES))["add_not_great"]
    assert from_neutral["failures"] == 0  # positive -> neutral lowers it
    rises = shifts(3)

    def up(texts):
        out = rises(texts)
        for row, text in enumerate(texts):
            if text.endswith(DIR_SUFFIX):
                out[row] = [0.05, 0.05, 0.1, 0.4, 0.4]  # P(positive side) 0.6 -> 0.8
        return out

    rising = by_test(run_behavioral_tests(up, FIVE, SENTENCES))["add_not_great"]
    assert rising["failure_rate"] == 1.0
    assert rising["examples"][0]["p_positive_perturbed"] == pytest.approx(0.8)


def test_labels_without_polarity_run_only_the_invariance_tests_and_say_why():
    topics = ["sports", "politics", "tech"]
    result = run_behavioral_tests(lambda texts: np.tile([0.5, 0.3, 0.2], (len(texts), 1)), topics, SENTENCES)
    assert [t["type"] for t in result["tests"]] == ["INV"] * 4
    assert all(t["failures"] == 0 for t in result["tests"])  # a constant model never flips
    assert [t["name"] for t in result["skipped"]] == ["clear_positive", "clear_negative", "negated_positive",
                                                       "negated_negative", "add_not_great"]  # fmt: skip
    assert "sports, politics, tech" in result["skipped"][0]["reason"]
    assert "carry no polarity" in result["skipped"][0]["reason"] and result["positive_labels"] == []


def test_positive_label_is_found_by_name_else_index_one():
    def first_class(texts):
        return np.tile([0.7, 0.3], (len(texts), 1))

    result = run_behavioral_tests(first_class, ["POSITIVE", "NEGATIVE"])
    assert result["positive_labels"] == ["POSITIVE"]
    tests = by_test(result)
    assert tests["clear_positive"]["failures"] == 0 and tests["clear_negative"]["failure_rate"] == 1.0
    assert tests["clear_negative"]["examples"][0]["p_positive"] == 0.7
    assert run_behavioral_tests(first_class, ["bad", "good"])["positive_labels"] == ["good"]
    assert run_behavioral_tests(first_class, ["LABEL_0", "LABEL_1"])["positive_labels"] == ["LABEL_1"]


def test_wrong_probability_shape_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        run_behavioral_tests(lambda texts: np.ones((len(texts), 3)) / 3, LABELS)
