"""The report's two charts as inline SVG: energy per day as bars, and a heat map of the
home's use per quarter hour (days down, time of day across). Inline SVG keeps the page one
file that any browser draws, with no script and nothing fetched. Every value enters the
markup through `Markup.format`, which escapes it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup

from storage.bill import HomeBucket, PricedQuarter

USED, PRODUCED = "#3b6fb6", "#f2a900"
# Light to dark, as sequential heat maps run (ColorBrewer's YlOrRd).
_HEAT = ("#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026")
_EMPTY = "#eeeeee"
QUARTERS_PER_DAY = 96

_SVG = Markup(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
    'role="img" aria-label="{label}">{body}</svg>'
)
_TEXT = Markup('<text x="{x:.1f}" y="{y:.1f}" class="tick" text-anchor="{anchor}">{text}</text>')
_RECT = Markup(
    '<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}">{title}</rect>'
)
_TITLE = Markup("<title>{}</title>")


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` ticks to `top`."""
    raw = top / ticks if top > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def daily_chart(days: Sequence[HomeBucket]) -> Markup:
    """Bars of each day's use and production (kWh), side by side, on one scale."""
    width, height = 760, 280
    left, right, top, bottom = 48, 12, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((max(d.used_kwh, d.produced_kwh) for d in days), default=0.0)
    step = _nice_step(highest)
    ticks = max(1, math.ceil(highest / step))
    scale_top = step * ticks
    slot = plot_w / max(1, len(days))
    bar = slot * 0.38
    parts: list[Markup] = []
    for n in range(ticks + 1):
        y = top + plot_h - n * step / scale_top * plot_h
        parts.append(
            Markup('<line x1="{}" x2="{}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>').format(
                left, width - right, y=y
            )
        )
        parts.append(_TEXT.format(x=left - 6, y=y + 4, anchor="end", text=f"{n * step:g}"))
    parts.append(
        Markup(
            '<text x="12" y="{y:.0f}" class="axis" text-anchor="middle" '
            'transform="rotate(-90 12 {y:.0f})">kWh</text>'
        ).format(y=top + plot_h / 2)
    )
    for index, day in enumerate(days):
        x = left + index * slot + (slot - 2 * bar) / 2
        for offset, value, fill, what in (
            (0.0, day.used_kwh, USED, "used"),
            (bar, day.produced_kwh, PRODUCED, "produced"),
        ):
            h = max(0.0, value) / scale_top * plot_h
            title = _TITLE.format(f"{day.start.date().isoformat()}: {value:.2f} kWh {what}")
            parts.append(
                _RECT.format(x=x + offset, y=top + plot_h - h, w=bar, h=h, fill=fill, title=title)
            )
        parts.append(
            _TEXT.format(
                x=left + (index + 0.5) * slot,
                y=height - bottom + 16,
                anchor="middle",
                text=day.start.day,
            )
        )
    return _SVG.format(w=width, h=height, label="Energy per day", body=Markup("").join(parts))


def _heat(value: float, highest: float) -> str:
    """The colour of `value` on a scale from 0 to `highest`, between the palette's stops."""
    share = min(1.0, max(0.0, value / highest)) if highest > 0 else 0.0
    position = share * (len(_HEAT) - 1)
    low = min(int(position), len(_HEAT) - 2)
    a, b = _HEAT[low], _HEAT[low + 1]
    mix = position - low
    channels = (
        round(int(a[i : i + 2], 16) * (1 - mix) + int(b[i : i + 2], 16) * mix) for i in (1, 3, 5)
    )
    return "#" + "".join(f"{channel:02x}" for channel in channels)


def heat_map(quarters: Sequence[PricedQuarter], days: Sequence[date]) -> Markup:
    """A row per local day, a column per quarter hour of the local clock: what the home
    used then. When clocks go back, the repeated hour's two quarter hours share a cell;
    when they go forward, the skipped hour's cells stay empty."""
    cells: dict[tuple[date, int], float] = {}
    for priced_quarter in quarters:
        start = priced_quarter.quarter.start
        key = (start.date(), start.hour * 4 + start.minute // 15)
        cells[key] = cells.get(key, 0.0) + priced_quarter.quarter.used_kwh
    highest = max(cells.values(), default=0.0)
    cell_w, cell_h, left, top = 7, 13, 64, 22
    width = left + QUARTERS_PER_DAY * cell_w + 8
    height = top + len(days) * cell_h + 44
    parts = [
        _TEXT.format(x=left + hour * 4 * cell_w, y=top - 8, anchor="start", text=f"{hour:02d}:00")
        for hour in range(0, 24, 3)
    ]
    for row, day in enumerate(days):
        y = top + row * cell_h
        parts.append(
            _TEXT.format(x=left - 6, y=y + cell_h - 3, anchor="end", text=day.strftime("%a %d"))
        )
        for column in range(QUARTERS_PER_DAY):
            value = cells.get((day, column))
            at = f"{day.isoformat()} {column // 4:02d}:{column % 4 * 15:02d}"
            parts.append(
                _RECT.format(
                    x=left + column * cell_w,
                    y=y,
                    w=cell_w - 1,
                    h=cell_h - 1,
                    fill=_EMPTY if value is None else _heat(value, highest),
                    title="" if value is None else _TITLE.format(f"{at}: {value:.3f} kWh"),
                )
            )
    legend_y = top + len(days) * cell_h + 14
    stops = Markup("").join(
        Markup('<stop offset="{:.2f}" stop-color="{}"/>').format(i / (len(_HEAT) - 1), colour)
        for i, colour in enumerate(_HEAT)
    )
    parts.append(
        Markup(
            '<defs><linearGradient id="heat">{stops}</linearGradient></defs>'
            '<rect x="{x}" y="{y}" width="200" height="10" fill="url(#heat)"/>'
        ).format(stops=stops, x=left, y=legend_y)
    )
    parts.append(_TEXT.format(x=left - 6, y=legend_y + 9, anchor="end", text="0"))
    parts.append(
        _TEXT.format(
            x=left + 206,
            y=legend_y + 9,
            anchor="start",
            text=f"{highest:.2f} kWh per quarter hour",
        )
    )
    return _SVG.format(
        w=width, h=height, label="Energy used per quarter hour", body=Markup("").join(parts)
    )
