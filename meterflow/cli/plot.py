"""`meterflow plot`: a device's daily energy and peak power, as a PNG."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import complete, config_option, db_option, settings_for
from meterflow.cli.local_time import energy_of, local_days, zone_for, zone_option

WIDTH_IN, HEIGHT_IN, DPI = 10, 5, 100


@click.command()
@config_option
@db_option
@click.option("--device", "device_id", required=True, help="The device's id.")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 3660))
@zone_option
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The PNG file to write.",
)  # fmt: skip
def plot(
    config_file: Path | None,
    db: str | None,
    device_id: str,
    days: int,
    zone_name: str | None,
    out: Path,
) -> None:
    """Bars of daily energy and a line of daily peak power for the last N local days."""
    try:
        import matplotlib as mpl  # noqa: PLC0415

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(
            "plot needs matplotlib: pip install 'meterflow[analytics]'"
        ) from exc
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name)
    today = datetime.now(zone)
    span = local_days(today - timedelta(days=days - 1), today, zone)
    by_day = complete(energy_of(settings, [device_id], "day", zone, span))
    dates = [d.start.date() for d in by_day]
    energy = [d.energy_kwh for d in by_day]
    peak = [d.peak_power_kw for d in by_day]
    positions = list(range(days))
    figure, energy_axis = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    energy_axis.bar(positions, energy, color="#4c78a8", label="energy (kWh)")
    step = max(1, days // 14)
    energy_axis.set_xticks(positions[::step], labels=[d.isoformat() for d in dates[::step]])
    energy_axis.set_ylabel("energy per day (kWh)")
    power_axis = energy_axis.twinx()
    power_axis.plot(
        positions, [float("nan") if p is None else p for p in peak], color="#e45756",
        marker="o", label="peak power (kW)",
    )  # fmt: skip
    power_axis.set_ylabel("peak power (kW)")
    energy_axis.set_title(f"{device_id}: last {days} days ({zone.key})")
    figure.autofmt_xdate()
    figure.savefig(out, format="png", dpi=DPI)
    plt.close(figure)
    click.echo(f"wrote {out}")
    audited(settings, f"device {device_id}", len(by_day))
