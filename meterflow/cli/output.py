"""Printing rows for people (an aligned table) and for programs (CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import click

OutputFormat = Literal["table", "csv", "json"]

format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Aligned table for people, CSV or JSON for programs.",
)

Cell = str | int | float | bool | datetime | None


def ago(delta: timedelta) -> str:
    """A duration the way a person says how long ago something was: `3 min ago`."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def render(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], output_format: OutputFormat
) -> str:
    if output_format == "json":
        records = [dict(zip(headers, map(_plain, row), strict=True)) for row in rows]
        return json.dumps(records, indent=2)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([[_text(cell) for cell in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    cells = [list(headers), *([_text(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def _plain(cell: Cell) -> str | int | float | bool | None:
    return cell.isoformat() if isinstance(cell, datetime) else cell


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.isoformat()
    if isinstance(cell, float):
        return f"{cell:g}"
    return str(cell)
