"""History import rate: `meterflow import` of a CSV into a new SQLite database.

    python -m bench.history [--rows 500000] [--devices 1000] [--interval-s 900] [--spread]
    python -m bench.history --utility [--rows 175200]

Writes a CSV of canonical rows (every device one reading per `--interval-s`, a quarter
hour by default, the rows in time order as a utility or an old system would export
them), imports it with the command's own function, and prints rows per second against
the issue's target of 100,000, with the CPU time a row took in the importing process and
in its decoding process (ingest/history_process.py): on a busy machine the rate moves
with the neighbours, the CPU time much less; the most rows a second the machine's cores
allow at that CPU a row, however well the import's parts shared them; and the bytes the
import wrote. Then imports it again: nothing is stored twice, and how fast that is.
Last, the importer's peak memory.

A quarter-hourly history is the dearest kind from a fleet: every row opens a 15-minute
bucket of its own, where minute readings share one by fifteen. With `--spread` each
row's energy is that of the interval before it (`interval_s`, the time on its end), as
in a utility's export or a counter's history: it is shared out over the quarter hours it
covers. With `--utility` the file is a utility's export of one meter (`start,end,kwh`,
imported with `--device`), five years of quarter hours by default: every row spreads,
no two share a time, and a batch spans some 35 monthly tables.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.history import UTILITY_COLUMNS, Meter
from meterflow.cli.history import SWITCH_INTERVAL_S, ImportReport, import_file
from meterflow.settings import load_settings

TARGET_ROWS_PER_S = 100_000
QUARTER_HOUR = timedelta(minutes=15)


def write_history(
    path: Path, rows: int, devices: int, interval_s: int = 900, *, spread: bool = False
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    header = ["device_type", "device_id", "ts", "energy_kwh", "power_kw"]
    covers = [str(interval_s)] if spread else []
    with path.open("w", newline="") as target:
        out = csv.writer(target)
        out.writerow([*header, "interval_s"] if spread else header)
        for number in range(rows):
            step, device = divmod(number, devices)
            energy = 0.05 + (number % 97) / 1000
            at = interval_s * (step + 1) if spread else interval_s * step + 7
            ts = (start + timedelta(seconds=at)).isoformat()
            out.writerow(
                ["smart_meter", f"m-{device}", ts, f"{energy:.3f}", f"{energy * 4:.3f}", *covers]
            )


def write_utility_export(path: Path, rows: int) -> None:
    """A meter's quarter hours up to the start of 2026, as a utility exports them."""
    start = datetime(2026, 1, 1, tzinfo=UTC) - rows * QUARTER_HOUR
    with path.open("w", newline="") as target:
        out = csv.writer(target)
        out.writerow(UTILITY_COLUMNS)
        for number in range(rows):
            begins = start + number * QUARTER_HOUR
            energy = 0.05 + (number % 97) / 1000
            out.writerow([begins.isoformat(), (begins + QUARTER_HOUR).isoformat(), f"{energy:.3f}"])


@dataclass(frozen=True)
class TimedImport:
    """An import's report, its seconds, the CPU seconds of the importer and of its
    decoding process, and the bytes the importer wrote (its write calls: the database,
    its log and SQLite's temporary files)."""

    report: ImportReport
    seconds: float
    importer_cpu_s: float
    decoder_cpu_s: float
    written: int


def timed_import(url: str, path: Path, meter: Meter | None = None) -> TimedImport:
    settings = load_settings(None, **{"storage.url": url})
    importer, decoder = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    written = _written()
    started = time.perf_counter()
    report = asyncio.run(import_file(settings, path, meter, lambda _: None))
    seconds = time.perf_counter() - started
    return TimedImport(
        report,
        seconds,
        _cpu(resource.RUSAGE_SELF) - importer,
        _cpu(resource.RUSAGE_CHILDREN) - decoder,
        _written() - written,
    )


def print_cpu_ceiling(timed: TimedImport) -> None:
    """What this machine's cores allow the import, from its own CPU a row.

    The importer (its event loop and SQLite's thread) and the decoding process share the
    cores; at the CPU they spent a row, no schedule stores more than `cores / CPU a row`
    rows a second.
    """
    cores = os.cpu_count() or 1
    cpu = timed.importer_cpu_s + timed.decoder_cpu_s
    ceiling = cores * timed.report.rows / cpu
    print(
        f"{'':12}  kept {cpu / timed.seconds:.2f} of {cores} cores busy: at "
        f"{cpu / timed.report.rows * 1e6:.1f} us of CPU a row the cores allow at most "
        f"{ceiling:,.0f} rows/s = {ceiling / TARGET_ROWS_PER_S:.2f} x the target",
        flush=True,
    )


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _peak_mib() -> float:
    """This process's peak resident memory (Linux counts it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _written() -> int:
    """The bytes this process has passed to write calls (Linux's /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name == "wchar":
            return int(value)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, help="500,000; with --utility 175,200")
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--interval-s", type=int, default=900, help="between a device's rows")
    parser.add_argument(
        "--spread", action="store_true", help="each row's energy covers the interval before it"
    )
    parser.add_argument(
        "--utility", action="store_true", help="a utility's export of one meter (start,end,kwh)"
    )
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-") as scratch:
        path = Path(scratch) / "history.csv"
        meter = None
        if args.utility:
            meter = Meter("meter-1", "smart_meter")
            write_utility_export(path, args.rows or 175_200)
        else:
            rows = args.rows or 500_000
            write_history(path, rows, args.devices, args.interval_s, spread=args.spread)
        url = f"sqlite:///{Path(scratch) / 'data' / 'meterflow.db'}"
        for run in ("first import", "again"):
            timed = timed_import(url, path, meter)
            report = timed.report
            rate = report.rows / timed.seconds
            print(
                f"{run:12}  {report.rows:,} rows in {timed.seconds:5.2f} s: {rate:9,.0f} rows/s "
                f"(stored {report.stored:,}, already there {report.duplicates:,})  "
                f"{rate / TARGET_ROWS_PER_S:.2f} x the {TARGET_ROWS_PER_S:,} target; "
                f"CPU us/row: importer {timed.importer_cpu_s / report.rows * 1e6:.1f}, "
                f"decoding process {timed.decoder_cpu_s / report.rows * 1e6:.1f}; "
                f"written {timed.written / 1e6:,.0f} MB ({timed.written / report.rows:,.0f} B/row)",
                flush=True,
            )
            print_cpu_ceiling(timed)
        print(f"peak memory (RSS) of the importer: {_peak_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
