"""CheckList-style behavioural tests for sentiment models: capabilities, invariances, directional change.

Any number of labels: the capability (MFT) and directional (DIR) tests run against polarity groups, so with SST-5's
five labels a clear positive passes when it lands in `positive` or `very positive`, and P(positive) is the summed
probability of the positive classes. Labels whose names carry no polarity skip those tests and say why; the
invariance (INV) tests run for any label set. A multi-label model is tested through the polarity of its labels
(GoEmotions' emotions have one, `trainer.labels`): its answer for a text is the side of the labels it chooses
(positive, negative, or neutral for neutral, mixed or no labels) and P(positive) its most probable positive label's
probability; with labels without polarity every test is skipped, with the reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from trainer.labels import LabelSet

CLEAR_POSITIVE = [
    "This movie was absolutely wonderful.",
    "A brilliant, moving film with superb acting.",
    "I loved every minute of it.",
    "The best film I have seen this year.",
    "The performances are excellent and the story is gripping.",
    "A delightful and charming comedy.",
    "Beautifully shot and wonderfully acted.",
    "An enjoyable ride from start to finish.",
    "The script is clever and genuinely funny.",
    "A masterpiece of modern cinema.",
    "I would happily watch it again.",
    "Great characters, great music, great fun.",
]
CLEAR_NEGATIVE = [
    "This movie was a complete waste of time.",
    "The plot was dull and predictable.",
    "A boring, lifeless film.",
    "The acting was terrible throughout.",
    "I hated every minute of it.",
    "The worst film I have seen this year.",
    "The jokes fall flat and the pacing is awful.",
    "A tedious mess with a pointless ending.",
    "Poorly written and badly acted.",
    "The dialogue is clumsy and the characters are bland.",
    "I walked out halfway through, it was so bad.",
    "An ugly, painful and forgettable experience.",
]
NEGATED_POSITIVE = [
    "The film was not good.",
    "I did not enjoy it at all.",
    "The acting was not convincing.",
    "It was never funny.",
    "This is not a movie I would recommend.",
    "The story was not interesting.",
    "I didn't like the characters.",
    "The soundtrack was not memorable.",
    "The script is not clever at all.",
    "It was not worth the ticket price.",
]
NEGATED_NEGATIVE = [
    "The movie was not bad at all.",
    "It was never boring.",
    "I didn't find it dull.",
    "The acting was not terrible.",
    "This film is not a waste of time.",
    "The ending was not disappointing.",
    "I would not call it boring.",
    "The jokes were never tiresome.",
    "Not a single dull moment in the film.",
    "The plot was never confusing.",
]
NAMES = ["John", "Maria", "Wei", "Aisha", "Dmitri", "Priya", "Kwame", "Sofia"]
NAME_TEMPLATES = [
    "{name} was brilliant in this film.",
    "{name}'s performance was dreadful.",
    "I loved every scene with {name}.",
    "{name} gave a flat, lifeless performance.",
    "{name} made this movie worth watching.",
    "{name} was wasted on this boring script.",
]
LOCATIONS = ["Paris", "Lagos", "Mumbai", "Tokyo", "Mexico", "Brazil", "Chicago", "Norway"]
LOCATION_TEMPLATES = [
    "The scenes shot in {place} were breathtaking.",
    "This film set in {place} was a tedious mess.",
    "Audiences in {place} will love this movie.",
    "The premiere in {place} was a disappointment.",
    "A charming story about growing up in {place}.",
    "The story set in {place} was dull and forgettable.",
]
MAX_SENTENCES = 100
MAX_EXAMPLES = 5
DIR_SUFFIX = " Not great."
DIR_TOLERANCE = 0.02
DESCRIPTIONS = {
    "clear_positive": "Clearly positive movie-review sentences should be predicted positive.",
    "clear_negative": "Clearly negative movie-review sentences should be predicted negative.",
    "negated_positive": "Sentences negating a positive word ('not good') should be predicted negative.",
    "negated_negative": "Sentences negating a negative word ('not bad') should be predicted positive.",
    # with a neutral class, a negated word may land there: the test asks only that it leaves its own side
    "negated_positive_k": "Sentences negating a positive word ('not good') should not be predicted positive.",
    "negated_negative_k": "Sentences negating a negative word ('not bad') should not be predicted negative.",
    "names": f"Review templates filled with {len(NAMES)} first names should get the same label whatever the name.",
    "locations": f"Review templates filled with {len(LOCATIONS)} places should get the same label whatever the place.",
    "typos": "Swapping two adjacent letters inside one random word of 4+ letters should not flip the label.",
    "punctuation": "Dropping the final punctuation, or ending the sentence in ' .' or ' !', should not flip the label.",
    "add_not_great": f"Appending '{DIR_SUFFIX.strip()}' should not raise P(positive) by more than {DIR_TOLERANCE}.",
}
NO_POLARITY = (
    "the label names ({names}) carry no polarity, so no class is the one a clearly positive or negative sentence "
    "must get: name the labels with negative/neutral/positive words to run it"
)
WORD = re.compile(r"[A-Za-z]{4,}")

# text -> (predicted class index, P(positive) summed over the positive classes, the prediction as the report shows it)
Preds = dict[str, tuple[int, float, str]]
Spec = tuple[str, str, list[tuple[str, ...]], Callable[[tuple[str, ...], Preds, list[str]], "dict | None"]]


def add_typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent, different letters inside one random word of 4+ letters; unchanged if there is none."""
    # First and last letters stay put so the word remains readable to a person, whose label would not change.
    spots = [[i for i in range(m.start() + 1, m.end() - 2) if text[i] != text[i + 1]] for m in WORD.finditer(text)]
    spots = [s for s in spots if s]
    if not spots:
        return text
    i = rng.choice(rng.choice(spots))
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def punctuation_variants(text: str) -> list[str]:
    """The sentence without trailing punctuation, and ending in ' .' or ' !'; the original itself left out."""
    base = text.rstrip().rstrip(".!?").rstrip()
    return [v for v in dict.fromkeys((base, f"{base} .", f"{base} !")) if v != text] if base else []


def add_suffix(text: str) -> str:
    """Close the sentence if needed, then append DIR_SUFFIX."""
    text = text.rstrip()
    return text + ("" if text.endswith((".", "!", "?")) else ".") + DIR_SUFFIX


def _pair(original: str, perturbed: str, preds: Preds, names: list[str]) -> dict:
    """A failing INV/DIR case with both texts and both predictions."""
    return {
        "original": original,
        "perturbed": perturbed,
        "predicted_original": preds[original][2],
        "predicted_perturbed": preds[perturbed][2],
        "p_positive_original": round(preds[original][1], 4),
        "p_positive_perturbed": round(preds[perturbed][1], 4),
    }


def _check_mft(case: tuple[str], preds: Preds, names: list[str], expected: list[int], wanted: str) -> dict | None:
    """Failing example when the predicted label is not one of the expected classes."""
    (text,) = case
    label, p_pos, shown = preds[text]
    if label in expected:
        return None
    return {"text": text, "expected": wanted, "predicted": shown, "p_positive": round(p_pos, 4)}


def _check_inv(case: tuple[str, ...], preds: Preds, names: list[str]) -> dict | None:
    """Failing example when any variant's label differs from the first text's."""
    flipped = next((t for t in case[1:] if preds[t][0] != preds[case[0]][0]), None)
    return None if flipped is None else _pair(case[0], flipped, preds, names)


def _check_dir(case: tuple[str, str], preds: Preds, names: list[str]) -> dict | None:
    """Failing example when P(positive) rose by more than DIR_TOLERANCE."""
    original, perturbed = case
    rose = preds[perturbed][1] > preds[original][1] + DIR_TOLERANCE
    return _pair(original, perturbed, preds, names) if rose else None


def _mft(name: str, sentences: list[str], expected: list[int], names: list[str]) -> Spec:
    """A minimum-functionality test: every sentence should get one of the expected labels."""
    wanted = " or ".join(names[i] for i in expected)
    return name, "MFT", [(s,) for s in sentences], partial(_check_mft, expected=expected, wanted=wanted)


def _specs(pool: list[str], rng: random.Random, label_set: LabelSet) -> list[Spec]:
    """(name, type, cases, check) for every test, cases built from the templates and the sentence pool; the MFT and
    DIR tests only when the labels carry polarity."""
    names = [tuple(t.format(name=n) for n in NAMES) for t in NAME_TEMPLATES]
    places = [tuple(t.format(place=p) for p in LOCATIONS) for t in LOCATION_TEMPLATES]
    typos = [(s, t) for s in pool if (t := add_typo(s, rng)) != s]
    punct = [(s, *v) for s in pool if (v := punctuation_variants(s))]
    invariances: list[Spec] = [
        ("names", "INV", names, _check_inv),
        ("locations", "INV", places, _check_inv),
        ("typos", "INV", typos, _check_inv),
        ("punctuation", "INV", punct, _check_inv),
    ]
    if not label_set.has_polarity:
        return invariances
    labels, pos, neg = list(label_set.names), label_set.positive, label_set.negative
    if label_set.k == 2:
        pos, neg = [label_set.positive_class], [1 - label_set.positive_class]
    not_pos = [i for i in range(label_set.k) if i not in pos]
    not_neg = [i for i in range(label_set.k) if i not in neg]
    return [
        _mft("clear_positive", CLEAR_POSITIVE, pos, labels),
        _mft("clear_negative", CLEAR_NEGATIVE, neg, labels),
        _mft("negated_positive", NEGATED_POSITIVE, not_pos, labels),
        _mft("negated_negative", NEGATED_NEGATIVE, not_neg, labels),
        *invariances,
        ("add_not_great", "DIR", [(s, add_suffix(s)) for s in pool], _check_dir),
    ]


POLARITY_TESTS = [("clear_positive", "MFT"), ("clear_negative", "MFT"), ("negated_positive", "MFT"),
                  ("negated_negative", "MFT"), ("add_not_great", "DIR")]  # fmt: skip


def _result(name: str, kind: str, cases: list, check, preds: Preds, label_names: list[str]) -> dict:
    """One test's record: its cases, failures and the first few failing examples."""
    failing = [ex for case in cases if (ex := check(case, preds, label_names)) is not None]
    key = f"{name}_k" if len(label_names) > 2 and f"{name}_k" in DESCRIPTIONS else name
    n = len(cases)
    return {"name": name, "type": kind, "description": DESCRIPTIONS[key], "n": n, "failures": len(failing),
            "failure_rate": len(failing) / n if n else 0.0, "examples": failing[:MAX_EXAMPLES]}  # fmt: skip


SIDES = LabelSet.of(["negative", "neutral", "positive"])  # a multi-label model's answers, read as sides
MULTI_NO_POLARITY = (
    "a multi-label model is tested through the polarity of its labels, and the label names ({names}) carry none: "
    "use sentiment words or GoEmotions' emotion names, or group the labels with --label_map to run it"
)
ALL_TESTS = [*POLARITY_TESTS[:4], ("names", "INV"), ("locations", "INV"), ("typos", "INV"), ("punctuation", "INV"),
             POLARITY_TESTS[4]]  # fmt: skip


def run_behavioral_tests(
    probs_fn: Callable[[list[str]], np.ndarray],
    label_names: list[str],
    sentences: Sequence[str] | None = None,
    seed: int = 0,
    label_set: LabelSet | None = None,
    decide: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Run the behavioural suite against a sentiment model with any number of labels.

    Args:
        probs_fn: maps a list of texts to an array (len(texts), len(label_names)) of class probabilities; called
            once, with every text of every test, so it should batch internally.
        label_names: class names by index.
        sentences: real evaluation sentences for the typo, punctuation and directional tests; at most
            MAX_SENTENCES are sampled with `seed`. None or empty falls back to the built-in clear sentences.
        seed: seeds the sentence sample and the typo positions.
        label_set: what the names mean (default: read from them); its polarity groups are what the MFT and DIR
            tests expect. Two labels without polarity words read id 1 as positive.
        decide: a multi-label model's decisions (`Classifier.decide`: probabilities -> (n, k) bools); the tests
            then read each answer as the side of the labels chosen.

    Returns:
        {"tests": [per-test dicts with name, type, description, n, failures, failure_rate, examples],
        "skipped": [name, type, description, reason of each test that could not run], "overall_failure_rate",
        "positive_labels", "negative_labels"}.
    """
    label_set = label_set or LabelSet.of(label_names)
    k = len(label_names)
    positive = [label_set.positive_class] if k == 2 and decide is None else label_set.positive
    negative = [1 - positive[0]] if k == 2 and decide is None else label_set.negative
    sides = {"positive_labels": [label_names[i] for i in positive],
             "negative_labels": [label_names[i] for i in negative]}  # fmt: skip
    if decide is not None and not label_set.has_polarity:
        reason = MULTI_NO_POLARITY.format(names=", ".join(label_names))
        return {"tests": [], "skipped": _skipped(ALL_TESTS, reason), "overall_failure_rate": 0.0, **sides}
    suite = SIDES if decide is not None else label_set
    rng = random.Random(seed)
    pool = [s for s in (sentences if sentences is not None else []) if isinstance(s, str) and s.strip()]
    pool = rng.sample(pool, min(len(pool), MAX_SENTENCES)) if pool else CLEAR_POSITIVE + CLEAR_NEGATIVE
    specs = _specs(pool, rng, suite)

    # One forward pass over the deduplicated texts of all tests: the model is the expensive part.
    texts = list(dict.fromkeys(t for *_, cases, _ in specs for case in cases for t in case))
    probs = np.asarray(probs_fn(texts), dtype=float)
    if probs.shape != (len(texts), k):
        raise ValueError(f"probs_fn returned shape {probs.shape}, expected {(len(texts), k)}")
    if decide is None:
        preds = {t: (int(row.argmax()), float(row[positive].sum()), label_names[int(row.argmax())])
                 for t, row in zip(texts, probs)}  # fmt: skip
    else:
        preds = _sides_of(texts, probs, decide(probs), label_set, label_names)

    names = list(suite.names)
    tests = [_result(name, kind, cases, check, preds, names) for name, kind, cases, check in specs]
    ran = {t["name"] for t in tests}
    skipped = _skipped([t for t in POLARITY_TESTS if t[0] not in ran], NO_POLARITY.format(names=", ".join(label_names)))
    total = sum(t["n"] for t in tests)
    overall = sum(t["failures"] for t in tests) / total if total else 0.0
    return {"tests": tests, "skipped": skipped, "overall_failure_rate": overall, **sides}


def _skipped(tests: list[tuple[str, str]], reason: str) -> list[dict]:
    """The record of tests that could not run, each with the reason."""
    return [{"name": name, "type": kind, "description": DESCRIPTIONS[name], "reason": reason} for name, kind in tests]


def _sides_of(texts: list[str], probs: np.ndarray, chosen: np.ndarray, label_set: LabelSet, names: list[str]) -> Preds:
    """A multi-label model's answers as SIDES ids: positive when it chooses a positive label and no negative one,
    negative the reverse, neutral otherwise; P(positive) is its most probable positive label's probability."""
    sign = np.asarray(label_set.sign)
    side = 1 + chosen[:, sign > 0].any(1).astype(int) - chosen[:, sign < 0].any(1).astype(int)
    p_pos = probs[:, sign > 0].max(1)
    shown = [";".join(n for n, on in zip(names, row) if on) or "(none)" for row in chosen]
    return {t: (int(s), float(p), label) for t, s, p, label in zip(texts, side, p_pos, shown)}
