"""Exports read back in the tools analysts use; the plot is a PNG of the promised size."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pyarrow.parquet as pq

from tests.cli import meterflow
from tests.databases import Database, as_utc
from tests.test_analytics import load


def test_parquet_export_round_trips_every_reading_of_each_month(
    database: Database, tmp_path: Path
) -> None:
    """One file per month; reading them back gives exactly the database's rows."""
    load(database)
    result = meterflow(
        "export", "--from", "2026-03", "--to", "2026-04", "--format", "parquet",
        "--out", str(tmp_path), "--db", database.url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.parquet"))
    assert [f.name for f in files] == ["energy_data_2026_03.parquet", "energy_data_2026_04.parquet"]
    exported = sorted(
        (row["device_id"], row["recorded_at"], row["energy_amount"], row["instantaneous_power"])
        for f in files
        for row in pq.read_table(f).to_pylist()
    )
    stored = sorted(
        (device, as_utc(at), energy, power)
        for device, at, energy, power in database.query(
            "SELECT device_id, recorded_at, energy_amount, instantaneous_power FROM energy_data"
        )
    )
    assert exported == stored
    assert len(exported) == 7
    schema = pq.read_schema(files[0])
    assert str(schema.field("recorded_at").type) == "timestamp[us, tz=UTC]"


def test_csv_export_of_one_device_has_a_header_and_iso_times(
    database: Database, tmp_path: Path
) -> None:
    """--device m-1 --format csv: m-1's rows only, spreadsheet-ready."""
    load(database)
    meterflow(
        "export", "--from", "2026-03", "--to", "2026-04", "--device", "m-1", "--format", "csv",
        "--out", str(tmp_path), "--db", database.url,
    )  # fmt: skip
    rows = []
    for name in ("energy_data_2026_03.csv", "energy_data_2026_04.csv"):
        with (tmp_path / name).open(newline="") as file:
            rows += list(csv.DictReader(file))
    assert [(r["device_id"], r["recorded_at"], r["energy_amount"]) for r in rows] == [
        ("m-1", "2026-03-31T22:00:00+00:00", "0.5"),
        ("m-1", "2026-03-31T23:30:00+00:00", "0.25"),
        ("m-1", "2026-04-01T00:15:00+00:00", "1.0"),
        ("m-1", "2026-04-01T10:00:00+00:00", "0.5"),
    ]
    assert rows[3]["instantaneous_power"] == ""


def test_plot_writes_a_png_of_the_expected_size(database: Database, tmp_path: Path) -> None:
    """A 1000 x 500 pixel PNG, whatever the data (here: none in the last 7 days)."""
    load(database)
    out = tmp_path / "m-1.png"
    result = meterflow("plot", "--device", "m-1", "--days", "7", "--out", str(out),
                       "--db", database.url)  # fmt: skip
    assert result.exit_code == 0, result.output
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert header[12:16] == b"IHDR"
    assert struct.unpack(">II", header[16:24]) == (1000, 500)
