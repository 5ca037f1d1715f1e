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
LINE_HEIGHT = 13  # a wrapped label's lines
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


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, Number]],
    *,
    unit: str = "",
    axis_covers: Sequence[Number] = (),
) -> Markup:
    """Horizontal bars, one per (label, value), each labelled with its value. Long labels wrap
    onto more lines rather than being cut; percentages are drawn on a 0-100 axis. The axis also
    covers `axis_covers`, so that charts to be read side by side share one scale."""
    if not bars:
        return _no_data(title)
    bar_height = 15
    label_width = _label_column(label for label, _ in bars)
    labels = [_wrap(label, label_width) for label, _ in bars]
    rows = [max(24, LINE_HEIGHT * len(lines) + 8) for lines in labels]
    plot_left, plot_right = label_width + 8, WIDTH - 90  # room on the right for the values
    top = TITLE_HEIGHT + 6
    bottom = top + sum(rows)
    ticks = _ticks([float(v) for v in [*(value for _, value in bars), *axis_covers]], unit=unit)

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
    row_top = top
    for (_, value), lines, height in zip(bars, labels, rows, strict=True):
        middle = row_top + height / 2
        row_top += height
        start, end = sorted((x(0), x(float(value))))
        text = _with_unit(value, unit)
        value_x = max(end, x(0)) + 5
        parts.append(
            _lines(lines, plot_left - 8, middle, anchor="end")
            + f'<rect x="{start:.1f}" y="{middle - bar_height / 2:.1f}" '
            f'width="{end - start:.1f}" height="{bar_height}" fill="{SERIES_STYLES[0][0]}"/>'
            # the value sits on a white ground: no gridline runs through it
             + f'<rect x="{value_x - 2:.1f}" y="{middle - 8:.1f}" '
            f'width="{len(text) * CHAR_WIDTH + 4:.1f}" height="16" fill="#ffffff"/>'
            f'<text x="{value_x:.1f}" y="{middle:.1f}" dominant-baseline="central">'
            f"{escape(text)}</text>"
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
    ticks = _ticks([float(value) for points in series.values() for _, value in points], unit=unit)
    plot_left = max(len(_with_unit(tick, unit)) for tick in ticks) * CHAR_WIDTH + 12
    plot_right = WIDTH - 10
    legends = [_wrap(name, WIDTH - 36) for name in series]
    legend_rows = [LINE_HEIGHT * len(lines) + 5 for lines in legends]
    top = TITLE_HEIGHT + sum(legend_rows) + 14
    bottom = top + 180
    step = (plot_right - plot_left) / len(categories)
    # Label every k-th period so axis labels never overlap; the table below names them all.
    every = math.ceil((max(len(c) for c in categories) * CHAR_WIDTH + 8) / step)
    headings = [
        _wrap(name, (WIDTH - _label_column(categories)) / len(series) - 24) for name in series
    ]
    table_top = bottom + 44 + LINE_HEIGHT * (max(len(lines) for lines in headings) - 1)

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
    for n, points in enumerate(values.values()):
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
        legend_y = TITLE_HEIGHT + 6 + sum(legend_rows[:n])
        parts.append(
            f'<line x1="0" y1="{legend_y}" x2="28" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dashes}"/>'
            + _marker(marker, 14, legend_y, colour)
            + _lines(legends[n], 36, legend_y + LINE_HEIGHT * (len(legends[n]) - 1) / 2)
        )
    parts += _value_table(categories, values, unit, table_top, headings)
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
    categories: list[str],
    values: Mapping[str, Mapping[str, Number]],
    unit: str,
    top: float,
    headings: list[list[str]],
) -> list[str]:
    """Every plotted value as text: a period per row, a series per column, named with its marker
    under a heading wrapped onto as many lines as it needs (the last line at `top`)."""
    row_height = 18
    first = _label_column(categories)
    column = (WIDTH - first) / len(values)
    parts = []
    for n, lines in enumerate(headings):
        colour, marker, _ = _style(n)
        right = first + (n + 1) * column - 4
        first_line = top - LINE_HEIGHT * (len(lines) - 1)
        parts.append(
            f'<text x="{right - 14:.1f}" y="{first_line:.1f}" text-anchor="end" '
            f'font-weight="bold">'
            + "".join(
                f'<tspan x="{right - 14:.1f}" y="{first_line + LINE_HEIGHT * i:.1f}">'
                f"{escape(line)}</tspan>"
                for i, line in enumerate(lines)
            )
            + "</text>"
            + _marker(marker, right - 4, top - 4, colour)
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


def _ticks(values: Sequence[float], count: int = 5, *, unit: str = "") -> list[float]:
    """About `count` round steps (1, 2 or 5 times a power of ten) covering zero and the values;
    percentages always on 0 to 100, so that no chart of percentages reads beyond the whole."""
    if unit == "%" and all(0 <= value <= 100 for value in values):
        return [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
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
    if unit == "%":
        return number + unit
    if number == "1" and unit.endswith("s"):  # "1 day", not "1 days"
        unit = unit[:-1]
    return f"{number} {unit}"


def _describe(points: Sequence[tuple[str, Number]], unit: str) -> str:
    return ", ".join(f"{label} {_with_unit(value, unit)}" for label, value in points)


def _label_column(labels: Iterable[str]) -> float:
    """A label column wide enough for the longest label, but never more than 40% of the chart."""
    longest = max((len(label) for label in labels), default=0)
    return min(longest * CHAR_WIDTH + 8, WIDTH * 0.4)


def _wrap(text: str, width: float, most: int = 6) -> list[str]:
    """`text` in lines that fit `width`, broken between words (a word longer than a line is
    split): a label is printed whole, not cut at the edge. Only beyond `most` lines, which no
    real label reaches, does the last line end with an ellipsis."""
    room = max(int(width / CHAR_WIDTH), 4)
    lines: list[str] = []
    for word in text.split():
        while len(word) > room:
            lines.append(word[:room])
            word = word[room:]
        if lines and len(lines[-1]) + 1 + len(word) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > most:
        lines = [*lines[: most - 1], lines[most - 1][: room - 1] + "…"]
    return lines or [""]


def _lines(lines: Sequence[str], x: float, middle: float, *, anchor: str = "start") -> str:
    """One text element, its lines centred on `middle`, each line escaped."""
    first = middle - LINE_HEIGHT * (len(lines) - 1) / 2
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{first + LINE_HEIGHT * i:.1f}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return (
        f'<text x="{x:.1f}" y="{first:.1f}" text-anchor="{anchor}" '
        f'dominant-baseline="central">{spans}</text>'
    )


def _fit(text: str, width: float) -> Markup:
    """Escaped text, cut with an ellipsis where it would overflow `width`."""
    room = max(int(width / CHAR_WIDTH), 2)
    return escape(text if len(text) <= room else text[: room - 1] + "…")


def frontier_chart(points: Sequence[tuple[int, Number | None]], places: int) -> Markup | None:
    """The selection frontier: for each budget in pence, the best total score within it (the sum
    of the chosen places' percentages), drawn as a share of the most `places` places could score,
    so the axis runs from 0 to 100%; budgets no selection fits within are left out. None when
    there is nothing to draw."""
    line = [
        (
            f"£{Decimal(pence) / 100_000_000:,.2f}m",
            (Decimal(str(total)) / max(places, 1)).quantize(Decimal("0.01")),
        )
        for pence, total in points
        if total is not None
    ]
    if not line:
        return None
    return line_chart(
        "Best selection within each budget",
        {f"Its score, as a share of the most {places} places could score": line},
        unit="%",
    )


def assessor_charts(rows: Sequence[tuple[str, Number, Number]]) -> list[Markup]:
    """Each assessor's mean score, as given and after normalisation: (name, mean, normalised
    mean) for each, as two charts on one scale, the values to two decimals."""
    shown = [(name, _hundredths(mean), _hundredths(evened)) for name, mean, evened in rows]
    every = [value for _, mean, evened in shown for value in (mean, evened)]
    return [
        bar_chart(
            "Mean score each assessor gave",
            [(name, mean) for name, mean, _ in shown],
            axis_covers=every,
        ),
        bar_chart(
            "Mean score each assessor gave, after normalisation",
            [(name, evened) for name, _, evened in shown],
            axis_covers=every,
        ),
    ]


def _hundredths(value: Number) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
