"""Tariffs and grid carbon as configured, and the timeline of prices and intensities that
prices each 15-minute bucket in SQL.

A tariff has a time zone, a validity in local dates, a default import and feed-in price,
and periods by weekday and local time (peak 07:00-21:00 Mon-Fri) with prices of their
own; it applies to the devices it names (a heat pump or a charger on a meter and tariff of
its own), or to the users it names, or to everyone without a tariff of their own. Carbon
is an intensity per grid zone (g CO2 per kWh), users in a zone of their own.

SQL cannot read zoneinfo rules, so `timeline` turns the settings into rows, each in force
from its `since` (UTC) until the next row of its subject: 'device:<id>' for a device named
by a tariff, 'user:<id>' for a user named by a tariff or a carbon zone, '' for everyone
else (as `user_zones` does). A bucket's price is its device's row with the latest `since`
not after it where that row has a tariff, else its owner's subject's (storage/owners.py);
its carbon is always the owner's.
Period bounds are whole quarter hours, so one price holds throughout every bucket. Where
no tariff is valid, the prices are NULL: the bucket has no cost, rather than a wrong one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.owners import BEGINNING
from storage.series import Span
from storage.settings import TimeZoneName

EVERYONE = ""
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# An open-ended tariff is written out this far ahead of the day the timeline is made; the
# daemon makes it again at every start.
HORIZON = timedelta(days=3 * 366)
_QUARTER = timedelta(minutes=15)
Price = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _on_a_quarter_hour(moment: time) -> time:
    if moment.minute % 15 or moment.second or moment.microsecond:
        raise ValueError(f"{moment:%H:%M:%S} is not on a quarter hour (:00, :15, :30, :45)")
    return moment


class TariffPeriod(_Model):
    """Local times on the listed weekdays with prices of their own; `end` at or before
    `start` runs past midnight into the next day."""

    name: Annotated[str, Field(min_length=1, max_length=32)]
    days: Annotated[list[Weekday], Field(min_length=1)] = list(WEEKDAYS)
    start: time
    end: time
    import_price: Price | None = None
    export_price: Price | None = None

    _quarters = field_validator("start", "end")(_on_a_quarter_hour)

    def covers(self, weekday: Weekday, minute: int) -> bool:
        """Whether the local minute of the day `minute` of a `weekday` falls in the period."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        if start < end:
            return weekday in self.days and start <= minute < end
        yesterday = WEEKDAYS[WEEKDAYS.index(weekday) - 1]
        return (weekday in self.days and minute >= start) or (
            yesterday in self.days and minute < end
        )


class Tariff(_Model):
    """What energy costs a user in one span of local dates, `valid_to` excluded."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    time_zone: TimeZoneName = "UTC"
    valid_from: date
    valid_to: date | None = None
    # The users it applies to; none: everyone without a tariff of their own then.
    users: list[str] = Field(default_factory=list)
    # Or the devices it applies to, whoever owns them; their owner's tariffs where it is
    # not valid.
    devices: list[str] = Field(default_factory=list)
    # Per kWh drawn, and per kWh fed in (a credit), outside every period.
    import_price: Price | None = None
    export_price: Price = 0.0
    periods: list[TariffPeriod] = Field(default_factory=list)
    # Import prices from `meterflow prices import` (storage/dynamic_prices.py) instead of
    # import_price and periods; none imported for a time, no price then.
    dynamic: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is not after valid_from {self.valid_from}")
        if self.dynamic and (self.import_price is not None or self.periods):
            raise ValueError(
                f"tariff {self.name!r} is dynamic: its import prices come from `meterflow "
                "prices import`, not import_price or periods"
            )
        if self.users and self.devices:
            raise ValueError(f"tariff {self.name!r} names users and devices: one or the other")
        if not self.dynamic and self.import_price is None:
            raise ValueError(f"tariff {self.name!r} needs an import_price (or dynamic = true)")
        for a, b in itertools.combinations(self.periods, 2):
            for weekday, minute in itertools.product(WEEKDAYS, range(0, 1440, 15)):
                if a.covers(weekday, minute) and b.covers(weekday, minute):
                    raise ValueError(
                        f"periods {a.name!r} and {b.name!r} overlap on {weekday} at "
                        f"{minute // 60:02d}:{minute % 60:02d}"
                    )
        return self

    def period_at(self, weekday: Weekday, minute: int) -> TariffPeriod | None:
        return next((p for p in self.periods if p.covers(weekday, minute)), None)


class CarbonSettings(_Model):
    """Grid carbon intensity in g CO2 per kWh consumed, per grid zone: a constant, or a
    time series imported with `meterflow carbon import` for a zone in `dynamic_zones`."""

    # The zone of everyone without one of their own, and each zone's intensity.
    zone: str | None = None
    intensity_g_per_kwh: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    dynamic_zones: list[str] = Field(default_factory=list)
    user_zones: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _zones_known(self) -> Self:
        for zone in {self.zone, *self.user_zones.values()} - {None}:
            if zone not in self.intensity_g_per_kwh and zone not in self.dynamic_zones:
                raise ValueError(
                    f"carbon zone {zone!r} has no intensity_g_per_kwh (nor is it one of "
                    "dynamic_zones)"
                )
        return self

    def zone_of(self, subject: str) -> str | None:
        if subject.startswith("device:"):
            return None  # a device's carbon is its owner's
        return self.user_zones.get(subject.removeprefix("user:"), self.zone)


def _subjects_of(tariff: Tariff) -> set[str]:
    if tariff.devices:
        return {f"device:{device}" for device in tariff.devices}
    return {f"user:{user}" for user in tariff.users} or {EVERYONE}


def check_tariffs(tariffs: Sequence[Tariff]) -> None:
    """Refuse two tariffs of one name, or two valid for one device, one user or everyone
    at once."""
    names = [t.name for t in tariffs]
    if len(names) != len(set(names)):
        raise ValueError("two tariffs have the same name")
    for a, b in itertools.combinations(tariffs, 2):
        shared = _subjects_of(a) & _subjects_of(b)
        a_end, b_end = a.valid_to or date.max, b.valid_to or date.max
        if shared and a.valid_from < b_end and b.valid_from < a_end:
            who = ", ".join(sorted(s.split(":", 1)[1] for s in shared if s) or ["everyone"])
            raise ValueError(f"tariffs {a.name!r} and {b.name!r} are both valid for {who} at once")


@dataclass(frozen=True, slots=True)
class Rate:
    """What holds from `since` on, until the subject's next rate."""

    subject: str
    since: datetime
    tariff: str | None
    period: str | None
    import_price: float | None
    export_price: float | None
    carbon_g_per_kwh: float | None


def subjects(tariffs: Sequence[Tariff], carbon: CarbonSettings) -> list[str]:
    """Everyone, each user a tariff or a carbon zone names, and each device a tariff names."""
    users = {user for tariff in tariffs for user in tariff.users} | set(carbon.user_zones)
    devices = {device for tariff in tariffs for device in tariff.devices}
    return [EVERYONE, *(f"user:{user}" for user in sorted(users)),
            *(f"device:{device}" for device in sorted(devices))]  # fmt: skip


def timeline(
    tariffs: Sequence[Tariff],
    carbon: CarbonSettings,
    today: date,
    dynamic: Mapping[str, Sequence[Span]] | None = None,
    intensities: Mapping[str, Sequence[Span]] | None = None,
) -> list[Rate]:
    """Every subject's rates, from the beginning on, in order; `dynamic` holds the imported
    prices of dynamic tariffs by name, `intensities` the imported carbon of dynamic zones."""
    rates: list[Rate] = []
    for subject in subjects(tariffs, carbon):
        own = [t for t in tariffs if subject in _subjects_of(t) and subject != EVERYONE]
        # A device's own rows say only when its tariffs hold: its owner's do the rest.
        shared = [] if subject.startswith("device:") else [
            t for t in tariffs if _subjects_of(t) == {EVERYONE}
        ]  # fmt: skip
        steps = _steps(own, shared, today, dynamic or {})
        grid = _carbon_steps(carbon, carbon.zone_of(subject), intensities or {})
        rates.extend(_collapse(subject, _with_carbon(steps, grid)))
    return rates


# (since, tariff, period, import price, export price, carbon g/kWh).
Step = tuple[datetime, str | None, str | None, float | None, float | None, float | None]


def _carbon_steps(
    carbon: CarbonSettings, zone: str | None, intensities: Mapping[str, Sequence[Span]]
) -> list[tuple[datetime, float | None]]:
    """A zone's intensity from each change on: a constant, or what was imported for it
    (none between the spans)."""
    if zone is None:
        return [(BEGINNING, None)]
    if zone not in carbon.dynamic_zones:
        return [(BEGINNING, carbon.intensity_g_per_kwh[zone])]
    steps: list[tuple[datetime, float | None]] = [(BEGINNING, None)]
    for span in intensities.get(zone, ()):
        steps += [(span.start, span.value), (span.until, None)]
    return steps


def _with_carbon(
    steps: Iterator[Step], grid: Sequence[tuple[datetime, float | None]]
) -> Iterator[Step]:
    """The tariff's steps and the grid's, merged in time: at each change of either, both
    as they stand then (of two steps at one instant, the later holds)."""
    tariff = list(steps)
    t = g = -1
    for at in sorted({step[0] for step in tariff} | {moment for moment, _ in grid}):
        while t + 1 < len(tariff) and tariff[t + 1][0] <= at:
            t += 1
        while g + 1 < len(grid) and grid[g + 1][0] <= at:
            g += 1
        name, period, import_price, export_price = (
            tariff[t][1:5] if t >= 0 else (None, None, None, None)
        )
        yield at, name, period, import_price, export_price, grid[g][1] if g >= 0 else None


def _steps(
    own: Sequence[Tariff],
    shared: Sequence[Tariff],
    today: date,
    dynamic: Mapping[str, Sequence[Span]],
) -> Iterator[Step]:
    """The steps at each change of tariff or period (no carbon yet: `_with_carbon`); a
    user's own tariff before everyone's where both are valid."""
    spans = [(_first(t), _last(t, today), t) for t in (*own, *shared)]
    cuts = sorted({BEGINNING, *(first for first, _, _ in spans), *(last for _, last, _ in spans)})
    for start, end in itertools.pairwise(cuts):
        tariff = next((t for first, last, t in spans if first <= start < last), None)
        if tariff is None:
            yield start, None, None, None, None, None
        elif tariff.dynamic:
            yield from _dynamic_steps(tariff, start, end, dynamic.get(tariff.name, ()))
        else:
            yield from _tariff_steps(tariff, start, end)
    yield cuts[-1], None, None, None, None, None


def _first(tariff: Tariff) -> datetime:
    return _midnight(tariff.valid_from, ZoneInfo(tariff.time_zone))


def _last(tariff: Tariff, today: date) -> datetime:
    end = tariff.valid_to or today + HORIZON
    return _midnight(end, ZoneInfo(tariff.time_zone))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _tariff_steps(tariff: Tariff, start: datetime, end: datetime) -> Iterator[Step]:
    """The tariff's price at `start` and at each bound of a period until `end`, in UTC.

    Bounds are local wall times: each day's are placed in the zone (a bound in the hour
    clocks skip is the first instant after it, in the hour they repeat the first)."""
    zone = ZoneInfo(tariff.time_zone)
    bounds = sorted({p.start for p in tariff.periods} | {p.end for p in tariff.periods})
    day = start.astimezone(zone).date()
    moments = [start]
    while (midnight := _midnight(day, zone)) < end:
        moments.extend(
            _wall(day, bound, zone) for bound in bounds if start < _wall(day, bound, zone) < end
        )
        if start < midnight:
            moments.append(midnight)
        day += timedelta(days=1)
    for moment in sorted(set(moments)):
        local = moment.astimezone(zone)
        period = tariff.period_at(WEEKDAYS[local.weekday()], local.hour * 60 + local.minute)
        import_price: float | None = tariff.import_price
        export_price = tariff.export_price
        if period is not None:
            import_price = (
                tariff.import_price if period.import_price is None else period.import_price
            )
            export_price = (
                tariff.export_price if period.export_price is None else period.export_price
            )
        yield (moment, tariff.name, None if period is None else period.name, import_price,
               export_price, None)  # fmt: skip


def _dynamic_steps(
    tariff: Tariff, start: datetime, end: datetime, prices: Sequence[Span]
) -> Iterator[Step]:
    """The imported prices within [start, end) (in order); none between them."""
    export = tariff.export_price
    yield start, tariff.name, None, None, export, None
    for price in prices:
        if price.until <= start or price.start >= end:
            continue
        yield max(price.start, start), tariff.name, None, price.value, export, None
        if price.until < end:
            yield price.until, tariff.name, None, None, export, None


def _wall(day: date, moment: time, zone: ZoneInfo) -> datetime:
    """A local wall time of a day as an instant: in the hour clocks repeat, the first;
    where clocks skip it, the instant the skipped hour ends."""
    wall = datetime.combine(day, moment)
    instant = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while instant.astimezone(zone).replace(tzinfo=None) < wall:
        instant += _QUARTER
    return min(instant, wall.replace(tzinfo=zone).astimezone(UTC))


def _collapse(subject: str, steps: Iterator[Step]) -> list[Rate]:
    """Rates at the changes only: of two steps at one instant the later holds, and a step
    that repeats the one before it is left out."""
    rates: list[Rate] = []
    for since, *values in steps:
        rate = Rate(subject, since, *values)  # type: ignore[arg-type]
        if rates and rates[-1].since == since:
            rates.pop()
        if rates and _values(rates[-1]) == _values(rate):
            continue
        rates.append(rate)
    return rates


def _values(rate: Rate) -> tuple[object, ...]:
    return (rate.tariff, rate.period, rate.import_price, rate.export_price,
            rate.carbon_g_per_kwh)  # fmt: skip
