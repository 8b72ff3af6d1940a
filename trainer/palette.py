"""One colour per class, the same in the run's plots and in every tab of the Space (`space/palette.py` links here).

Ordered labels and two-class sets run along a red-to-blue diverging scale (ColorBrewer RdBu: negative red, neutral
grey, positive blue), unordered labels take the Okabe-Ito palette (past eight labels, 32 distinct colours). Both
stay distinct for the common colour-vision deficiencies (red and blue differ in lightness and hue for deuteranopes
and protanopes alike). Pure Python: the Space imports it without matplotlib.
"""

from __future__ import annotations

# RdBu from its red end to its blue end, with a mid grey for neutral where RdBu has near-white (lost on a white page)
DIVERGING = ["#b2182b", "#d6604d", "#f4a582", "#bdbdbd", "#92c5de", "#4393c3", "#2166ac"]
OKABE_ITO = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442", "#000000"]
# 32 colours that stay apart on a white page, for more unordered labels than Okabe-Ito has (GoEmotions' 28): Plotly's
# Dark24, then eight brighter ones from its Alphabet and Light24; colours repeat only past 32 labels.
MANY_COLOURS = ["#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B",
                "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
                "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038", "#FEAF16", "#1CBE4F", "#2ED9FF",
                "#86CE00", "#FF9616", "#6A76FC", "#C4451C", "#00B5F7"]  # fmt: skip
OUTCOME_COLOURS = {"correct": "#9e9e9e", "incorrect": "#d55e00"}  # the explorer's correct / incorrect view
YOU = "#000000"  # the visitor's sentence in the explorer


def class_colours(names: list[str], ordinal: bool = False) -> dict[str, str]:
    """A colour per class. `names` in scale order (most negative first) for ordered labels; in id order otherwise,
    where two classes read as negative (id 0) and positive (id 1), as the trainer reads them."""
    if ordinal or len(names) == 2:
        return {name: _hex(_along(i / (len(names) - 1))) for i, name in enumerate(names)}
    palette = OKABE_ITO if len(names) <= len(OKABE_ITO) else MANY_COLOURS  # more labels: no two share a colour
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _along(t: float) -> tuple[float, ...]:
    """The diverging scale at t in [0, 1] (red at 0, grey at 0.5, blue at 1), linear between its stops."""
    at = t * (len(DIVERGING) - 1)
    i = min(int(at), len(DIVERGING) - 2)
    start, end = (_rgb(DIVERGING[j]) for j in (i, i + 1))
    return tuple(a + (b - a) * (at - i) for a, b in zip(start, end))


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def rgba(colour: str, alpha: float) -> str:
    """A #rrggbb colour as CSS rgba() with the given opacity."""
    r, g, b = _rgb(colour)
    return f"rgba({r}, {g}, {b}, {alpha:.2f})"
