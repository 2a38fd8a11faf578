"""The monthly report as one self-contained HTML page: the facts (meterflow/report/facts.py)
in words, tables and the two charts (meterflow/report/charts.py), styled inline."""

from __future__ import annotations

from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from meterflow.report.charts import PRODUCED, USED, daily_chart, heat_map
from meterflow.report.facts import MonthFacts

_ENVIRONMENT = Environment(
    loader=PackageLoader("meterflow.report", "."),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def kwh(value: float) -> str:
    return f"{value:,.2f}"


def money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}".strip()


def percent(ratio: float | None) -> str:
    return "\N{EN DASH}" if ratio is None else f"{ratio * 100:.1f} %"


_ENVIRONMENT.filters.update(kwh=kwh, money=money, percent=percent)


def render(facts: MonthFacts, now: datetime | None = None) -> str:
    """The page of `facts`."""
    return _ENVIRONMENT.get_template("report.html.j2").render(
        facts=facts,
        generated=(now or datetime.now(UTC)).astimezone(facts.zone),
        daily_chart=daily_chart(facts.days),
        heat_map=heat_map(facts.quarters, [day.start.date() for day in facts.days]),
        used_colour=USED,
        produced_colour=PRODUCED,
    )
