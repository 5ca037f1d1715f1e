"""Charts as inline SVG for the PDF documents: pure functions of plain data.

Labels may come from users, so every piece of text goes through `escape`. Each chart is an image
with a title and a text description for assistive technology, and prints every value as text:
nothing is told by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from markupsafe import Markup, escape

Number = float | Decimal

WIDTH = 640
FONT_SIZE = 11
CHAR_WIDTH = 6.4  # average advance of an 11px sans-serif character, for fitting labels
TITLE_HEIGHT = 26
INK = "#0b0c0c"
MUTED = "#505a5f"
GRID = "#b1b4b6"
# GOV.UK colours, each series also told apart by its marker shape and line pattern
SERIES_STYLES = (
    ("#1d70b8", "circle", "none"),
    ("#d4351c", "square", "6 3"),
    ("#00703c", "triangle", "2 3"),
    ("#4c2c92", "diamond", "8 3 2 3"),
    ("#f47738", "circle", "1 2"),
)
CURRENCIES = ("£", "$", "€")


def bar_chart(title: str, bars: Sequence[tuple[str, Number]], *, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value), each labelled with its value."""
    if not bars:
        return _no_data(title)
    row_height, bar_height = 24, 15
    label_width = _label_column(label for label, _ in bars)
    plot_left, plot_right = label_width + 8, WIDTH - 90  # room on the right for the values
    top = TITLE_HEIGHT + 6
    bottom = top + len(bars) * row_height
    ticks = _ticks([float(value) for _, value in bars])

    def x(value: float) -> float:
        return _scale(value, ticks, plot_left, plot_right)

    parts = _frame(title, bottom + 30, _describe(bars, unit))
    for tick in ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{bottom}" '
            f'stroke="{GRID}" stroke-width="0.6"/>'
            f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle" fill="{MUTED}">'
            f"{escape(_with_unit(tick, unit))}</text>"
        )
    for i, (label, value) in enumerate(bars):
        middle = top + (i + 0.5) * row_height
        start, end = sorted((x(0), x(float(value))))
        parts.append(
            f'<text x="{plot_left - 8}" y="{middle:.1f}" text-anchor="end" '
            f'dominant-baseline="central">{_fit(label, label_width)}</text>'
            f'<rect x="{start:.1f}" y="{middle - bar_height / 2:.1f}" width="{end - start:.1f}" '
            f'height="{bar_height}" fill="{SERIES_STYLES[0][0]}"/>'
            f'<text x="{max(end, x(0)) + 5:.1f}" y="{middle:.1f}" dominant-baseline="central">'
            f"{escape(_with_unit(value, unit))}</text>"
        )
    parts.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{bottom}" stroke="{INK}"/>')
    return _close(parts)


def line_chart(
    title: str, series: Mapping[str, Sequence[tuple[str, Number]]], *, unit: str = ""
) -> Markup:
    """One line per series over shared categories (periods), above a table of every value."""
    categories = list(dict.fromkeys(label for points in series.values() for label, _ in points))
    if not categories:
        return _no_data(title)
    values = {name: dict(points) for name, points in series.items()}
    ticks = _ticks([float(value) for points in series.values() for _, value in points])
    plot_left = max(len(_with_unit(tick, unit)) for tick in ticks) * CHAR_WIDTH + 12
    plot_right = WIDTH - 10
    legend_row = 18
    top = TITLE_HEIGHT + legend_row * len(series) + 14
    bottom = top + 180
    step = (plot_right - plot_left) / len(categories)
    # Label every k-th period so axis labels never overlap; the table below names them all.
    every = math.ceil((max(len(c) for c in categories) * CHAR_WIDTH + 8) / step)
    table_top = bottom + 44

    def x(index: int) -> float:
        return plot_left + (index + 0.5) * step

    def y(value: float) -> float:
        return _scale(value, ticks, bottom, top)

    description = "; ".join(f"{name}: {_describe(points, unit)}" for name, points in series.items())
    parts = _frame(title, table_top + 18 * len(categories) + 8, description)
    for tick in ticks:
        parts.append(
            f'<line x1="{plot_left}" y1="{y(tick):.1f}" x2="{plot_right}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}" stroke-width="0.6"/>'
            f'<text x="{plot_left - 6}" y="{y(tick):.1f}" text-anchor="end" '
            f'dominant-baseline="central" fill="{MUTED}">{escape(_with_unit(tick, unit))}</text>'
        )
    parts.append(
        f'<line x1="{plot_left}" y1="{bottom}" x2="{plot_right}" y2="{bottom}" stroke="{INK}"/>'
    )
    parts += [
        f'<text x="{x(i):.1f}" y="{bottom + 16}" text-anchor="middle">{escape(category)}</text>'
        for i, category in enumerate(categories)
        if i % every == 0
    ]
    for n, (name, points) in enumerate(values.items()):
        colour, marker, dashes = _style(n)
        coordinates = [
            (x(i), y(float(points[category])))
            for i, category in enumerate(categories)
            if category in points
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coordinates)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dashes}"/>'
        )
        parts += [_marker(marker, px, py, colour) for px, py in coordinates]
        legend_y = TITLE_HEIGHT + 6 + legend_row * n
        parts.append(
            f'<line x1="0" y1="{legend_y}" x2="28" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dashes}"/>'
            + _marker(marker, 14, legend_y, colour)
            + f'<text x="36" y="{legend_y}" dominant-baseline="central">'
            f"{_fit(name, WIDTH - 36)}</text>"
        )
    parts += _value_table(categories, values, unit, table_top)
    return _close(parts)


# ---------------------------------------------------------------------------------------------
# Pieces


def _frame(title: str, height: float, description: str) -> list[str]:
    label = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{label}" '
        f'width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'font-family="Liberation Sans, DejaVu Sans, sans-serif" font-size="{FONT_SIZE}" '
        f'fill="{INK}">'
        f"<title>{label}</title><desc>{escape(description)}</desc>"
        f'<text x="0" y="15" font-size="13" font-weight="bold">{label}</text>'
    ]


def _close(parts: list[str]) -> Markup:
    parts.append("</svg>")
    # Every piece of text above was escaped as it was placed.
    return Markup("".join(parts))


def _no_data(title: str) -> Markup:
    parts = _frame(title, TITLE_HEIGHT + 24, "No data")
    parts.append(f'<text x="0" y="{TITLE_HEIGHT + 12}" fill="{MUTED}">No data</text>')
    return _close(parts)


def _style(n: int) -> tuple[str, str, str]:
    """Colour, marker shape and dash pattern of the n-th series."""
    return SERIES_STYLES[n % len(SERIES_STYLES)]


def _value_table(
    categories: list[str], values: Mapping[str, Mapping[str, Number]], unit: str, top: float
) -> list[str]:
    """Every plotted value as text: a period per row, a series per column, named with its marker."""
    row_height = 18
    first = _label_column(categories)
    column = (WIDTH - first) / len(values)
    parts = []
    for n, name in enumerate(values):
        colour, marker, _ = _style(n)
        right = first + (n + 1) * column - 4
        parts.append(
            f'<text x="{right - 14:.1f}" y="{top}" text-anchor="end" font-weight="bold">'
            f"{_fit(name, column - 24)}</text>" + _marker(marker, right - 4, top - 4, colour)
        )
    for i, category in enumerate(categories):
        y = top + row_height * (i + 1)
        parts.append(
            f'<line x1="0" y1="{y - row_height + 5}" x2="{WIDTH}" y2="{y - row_height + 5}" '
            f'stroke="{GRID}" stroke-width="0.6"/>'
            f'<text x="0" y="{y}">{_fit(category, first - 6)}</text>'
        )
        parts += [
            f'<text x="{first + (n + 1) * column - 4:.1f}" y="{y}" text-anchor="end">'
            f"{escape(_with_unit(points[category], unit) if category in points else '–')}</text>"
            for n, points in enumerate(values.values())
        ]
    return parts


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "triangle":
        return (
            f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}"'
            f' fill="{colour}"/>'
        )
    if shape == "diamond":
        return (
            f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} '
            f'{x - 5:.1f},{y:.1f}" fill="{colour}"/>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


# ---------------------------------------------------------------------------------------------
# Numbers and text


def _ticks(values: Sequence[float], count: int = 5) -> list[float]:
    """About `count` round steps (1, 2 or 5 times a power of ten) covering zero and the values."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if high == low:
        high = low + 1
    rough = (high - low) / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [n * step for n in range(first, last + 1)]


def _scale(value: float, ticks: list[float], start: float, end: float) -> float:
    """Where `value` falls between `start` and `end`, which stand for the first and last tick."""
    return start + (value - ticks[0]) / (ticks[-1] - ticks[0]) * (end - start)


def _number(value: Number) -> str:
    """Thousands separated; floats to at most two decimals, Decimals with the places they have."""
    if isinstance(value, float):
        value = Decimal(repr(round(value, 2))).normalize()
    return format(Decimal(value), ",f")


def _with_unit(value: Number, unit: str) -> str:
    number = _number(value)
    if not unit:
        return number
    if unit in CURRENCIES:
        return f"-{unit}{number[1:]}" if number.startswith("-") else unit + number
    return number + unit if unit == "%" else f"{number} {unit}"


def _describe(points: Sequence[tuple[str, Number]], unit: str) -> str:
    return ", ".join(f"{label} {_with_unit(value, unit)}" for label, value in points)


def _label_column(labels: Iterable[str]) -> float:
    """A label column wide enough for the longest label, but never more than 40% of the chart."""
    longest = max((len(label) for label in labels), default=0)
    return min(longest * CHAR_WIDTH + 8, WIDTH * 0.4)


def _fit(text: str, width: float) -> Markup:
    """Escaped text, cut with an ellipsis where it would overflow `width`."""
    room = max(int(width / CHAR_WIDTH), 2)
    return escape(text if len(text) <= room else text[: room - 1] + "…")


def frontier_chart(points: Sequence[tuple[int, Number | None]]) -> Markup | None:
    """The selection frontier: (budget in pence, the best total score within it) as a line;
    budgets no selection fits within are left out. None when there is nothing to draw."""
    line = [
        (f"£{Decimal(pence) / 100_000_000:,.2f}m", total)
        for pence, total in points
        if total is not None
    ]
    if not line:
        return None
    return line_chart(
        "Best total score within each budget", {"Best total score (sum of the places' %)": line}
    )


def assessor_charts(rows: Sequence[tuple[str, Number, Number]]) -> list[Markup]:
    """Each assessor's mean score, as given and after normalisation: (name, mean, normalised
    mean) for each, as two charts, the values to two decimals."""
    shown = [(name, _hundredths(mean), _hundredths(evened)) for name, mean, evened in rows]
    return [
        bar_chart("Mean score each assessor gave", [(name, mean) for name, mean, _ in shown]),
        bar_chart(
            "Mean score each assessor gave, after normalisation",
            [(name, evened) for name, _, evened in shown],
        ),
    ]


def _hundredths(value: Number) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
