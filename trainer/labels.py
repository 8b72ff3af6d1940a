"""What a label set means: which names carry polarity, whether the labels are ordered, which class is "positive".

Read from the names alone (or the user's word for the order), so training, the analysis, the card and the Space all
agree: `negative, positive` is binary; `negative, neutral, positive` and SST-5's `very negative ... very positive`
are ordered scales whose ends carry polarity; `sports, politics, tech` carries none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LABEL_ORDERS = ("auto", "ordinal", "nominal")  # auto: ordinal when the names form a polarity scale
NEGATIVE = {"negative", "neg", "bad", "terrible", "awful", "poor", "worst", "hate", "dislike", "unfavorable"}
POSITIVE = {"positive", "pos", "good", "great", "excellent", "best", "love", "like", "favorable"}
NEUTRAL = {"neutral", "mixed", "neither", "ok", "okay", "average", "so-so", "meh", "ambiguous"}
# GoEmotions' 27 emotions by the release's sentiment grouping (its mappings/sentiment_mapping.json): emotion names
# carry polarity too, so behavioural tests and polarity mistakes work on emotion labels.
EMOTIONS = {
    1: "amusement excitement joy love desire optimism caring pride admiration gratitude relief approval",
    -1: "fear nervousness remorse embarrassment disappointment sadness grief disgust anger annoyance disapproval",
    0: "realization surprise curiosity confusion",
}
EMOTION_POLARITY = {name: sign for sign, names in EMOTIONS.items() for name in names.split()}
STRONG = {"very", "strongly", "extremely", "most", "really", "highly"}
STARS = re.compile(r"^\s*(\d+)\s*(?:stars?|★)?\s*$", re.I)


def polarity(name: str) -> int | None:
    """A name's place on a sentiment scale: -2 very negative, -1 negative, 0 neutral, 1 positive, 2 very positive;
    None when the name says nothing about sentiment."""
    words = re.findall(r"[a-z][a-z-]*", name.lower())
    if len(words) == 1 and words[0] in EMOTION_POLARITY:
        return EMOTION_POLARITY[words[0]]
    sign = next((s for w in words for s, group in ((-1, NEGATIVE), (1, POSITIVE), (0, NEUTRAL)) if w in group), None)
    if sign is None:
        return None
    return sign * (2 if any(w in STRONG for w in words) else 1)


def emotion_polarity(name: str) -> int | None:
    """+1 / -1 / 0 for a GoEmotions emotion name by the release's sentiment grouping; None for any other name."""
    return EMOTION_POLARITY.get(name.strip().lower())


def scale_of(names: list[str], distinct: bool = True) -> list[float] | None:
    """Each name's value on one sentiment scale when every name has one (and, when `distinct`, no two share it):
    polarity words, or star counts ("1 star" ... "5 stars", whose middle is neutral); None otherwise."""
    stars = [STARS.match(name) for name in names]
    if all(stars) and len(names) > 2:
        counts = [int(match.group(1)) for match in stars]
        middle = (min(counts) + max(counts)) / 2
        values = [count - middle for count in counts]
    else:
        values = [polarity(name) for name in names]
        if any(v is None for v in values):
            return None
    return values if not distinct or len(set(values)) == len(values) else None


@dataclass(frozen=True)
class LabelSet:
    """Label names in id order, with what they mean.

    `rank` is each class's position on the scale when the labels are ordered (distance = |rank difference|);
    `sign` is -1/0/+1 per class when the names carry polarity. A binary set without polarity words reads id 1 as
    positive (the GLUE convention), so binary tests always run.
    """

    names: tuple[str, ...]
    ordinal: bool
    rank: tuple[int, ...] | None
    sign: tuple[int, ...] | None

    @classmethod
    def of(cls, names, order: str = "auto") -> LabelSet:
        names = tuple(str(n) for n in names)
        if order not in LABEL_ORDERS:
            raise ValueError(f"label order {order!r}: use one of {', '.join(LABEL_ORDERS)}")
        values = scale_of(list(names), distinct=False)
        signs = None if values is None else tuple(int((v > 0) - (v < 0)) for v in values)
        if values is not None and len(set(values)) < len(values):
            values = None  # two names in one place (neutral, mixed): polarity, but no order
        if len(names) == 2:
            if signs is None or sorted(signs) != [-1, 1]:
                signs = (-1, 1)  # GLUE convention: id 1 is the positive class
            return cls(names, False, None, signs)
        if signs is not None and not (-1 in signs and 1 in signs):
            signs = None  # all on one side: no polarity to test against
        if order == "ordinal":
            return cls(names, True, tuple(range(len(names))), signs)
        if order == "auto" and values is not None:
            ranks = sorted(range(len(names)), key=lambda i: values[i])
            return cls(names, True, tuple(ranks.index(i) for i in range(len(names))), signs)
        return cls(names, False, None, signs)

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def has_polarity(self) -> bool:
        return self.sign is not None

    @property
    def positive(self) -> list[int]:
        """Class ids on the positive side (empty without polarity)."""
        return [i for i, s in enumerate(self.sign or ()) if s > 0]

    @property
    def negative(self) -> list[int]:
        return [i for i, s in enumerate(self.sign or ()) if s < 0]

    @property
    def neutral(self) -> list[int]:
        return [i for i, s in enumerate(self.sign or ()) if s == 0]

    @property
    def positive_class(self) -> int:
        """The binary positive class: named positive, else id 1 (the one P(positive) and false positives refer to)."""
        return self.positive[-1] if self.positive else self.k - 1

    def ordered_names(self) -> list[str]:
        """Names from one end of the scale to the other (id order when unordered)."""
        if self.rank is None:
            return list(self.names)
        return [self.names[i] for i in sorted(range(self.k), key=lambda i: self.rank[i])]

    def describe(self) -> dict:
        """For metrics.json: the order and polarity the analysis used."""
        return {
            "names": list(self.names),
            "ordinal": self.ordinal,
            "scale": self.ordered_names() if self.ordinal else None,
            "positive": [self.names[i] for i in self.positive],
            "negative": [self.names[i] for i in self.negative],
        }
