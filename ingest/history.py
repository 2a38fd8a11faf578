"""History from files: each row of a CSV or Parquet file decoded as if it were a message.

A row holds `device_type`, `device_id` and the canonical payload's fields (`ts`,
`energy_kwh`, `power_kw`, and any optional one: README, "For devices"). It becomes the
canonical JSON it stands for, on the topic it would have been published to, and goes
through the canonical decoder: the same validation, readings and reasons as a live
message (`RowDecoder`). A utility's 15-minute export (`start,end,kwh` for one meter) is
read with the device given: each row is the energy of [start, end), as `energy_kwh` with
`interval_s`.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ingest.decode.canonical import CanonicalDecoder
from ingest.decode.payload import vouched_telemetry
from ingest.decode.router import Router
from ingest.decode.topics import DeviceTopic, TopicScheme
from ingest.errors import IngestError
from ingest.settings import DecodersSettings, IngestSettings
from storage import DeadLetter, DeviceType, Reading

# Fields that are text; every other cell is a number where it reads as one (ts: epoch
# seconds or milliseconds, else ISO 8601 text).
_TEXT_FIELDS = frozenset({"device_type", "device_id", "quality"})
_IDENTITY = ("device_type", "device_id")
UTILITY_COLUMNS = ("start", "end", "kwh")
_JSON = msgspec.json.Encoder()


class HistoryFileError(IngestError):
    """A history file that cannot be read at all (its header, its format)."""


@dataclass(frozen=True, slots=True)
class Meter:
    """The one device a utility's export is of."""

    device_id: str
    device_type: DeviceType


Document = dict[str, Any]


def documents(path: Path, meter: Meter | None = None) -> Iterator[tuple[int, Document]]:
    """The file's rows, by line, as canonical payloads that also name `device_type` and
    `device_id`; HistoryFileError for an unreadable file."""
    found = _parquet(path) if path.suffix.lower() == ".parquet" else _csv(path)
    if meter is None:
        return found
    return ((line, _utility(path, document, meter)) for line, document in found)


def count_rows(path: Path) -> int:
    """How many rows the file holds, for a progress bar."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as source:
        return max(0, sum(1 for _ in source) - 1)


def _csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        source = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise HistoryFileError(f"{path}: cannot be read ({exc.strerror})") from None
    with source:
        reader = csv.reader(source)
        header = [name.strip() for name in next(reader, [])]
        _check_header(path, header)
        numbers = [name not in _TEXT_FIELDS for name in header]
        try:
            for cells in reader:
                document: dict[str, Any] = {}
                for name, number, cell in zip(header, numbers, cells, strict=False):
                    text = cell.strip()
                    if text:
                        document[name] = _number(text) if number else text
                yield reader.line_num, document
        except (csv.Error, UnicodeDecodeError) as exc:
            raise HistoryFileError(f"{path} line {reader.line_num}: {exc}") from None


def _number(text: str) -> object:
    """A cell as a number where it is one; otherwise the text, which validation refuses
    with the model's words (as it would refuse "64" in a message)."""
    if ":" in text:
        # No number has a colon, and an ISO 8601 time of day has: spare float() its error.
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise HistoryFileError(
            "reading Parquet needs pyarrow: pip install 'meterflow[analytics]'"
        ) from None
    try:
        source = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise HistoryFileError(f"{path}: not a Parquet file ({exc})") from None
    _check_header(path, source.schema_arrow.names)
    line = 0
    for batch in source.iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            line += 1
            yield line, {name: _plain(value) for name, value in record.items() if value is not None}


def _plain(value: object) -> object:
    """A Parquet value as JSON has it: a timestamp as ISO 8601."""
    return value.isoformat() if isinstance(value, datetime) else value


def _check_header(path: Path, header: list[str]) -> None:
    if list(header) == list(UTILITY_COLUMNS):
        return
    missing = [name for name in (*_IDENTITY, "ts") if name not in header]
    if missing:
        raise HistoryFileError(
            f"{path}: missing columns {', '.join(missing)} (expected device_type, device_id, "
            "ts and the payload's fields, or a utility's start,end,kwh with --device)"
        )


def _utility(path: Path, document: Mapping[str, Any], meter: Meter) -> dict[str, Any]:
    """A row of a utility's export as the canonical payload: the energy of [start, end)."""
    if set(document) - set(UTILITY_COLUMNS):
        raise HistoryFileError(f"{path}: --device takes a utility's export: start,end,kwh")
    converted: dict[str, Any] = {"device_type": meter.device_type, "device_id": meter.device_id}
    try:
        start = datetime.fromisoformat(str(document["start"]))
        end = datetime.fromisoformat(str(document["end"]))
        seconds = (end - start).total_seconds()
    except (KeyError, ValueError, TypeError):
        # Left to validation, which names what is wrong with the row.
        return converted | {"ts": document.get("end"), "energy_kwh": document.get("kwh")}
    energy = document.get("kwh")
    converted |= {"ts": document["end"], "energy_kwh": energy, "interval_s": seconds}
    if isinstance(energy, float) and seconds > 0:
        converted["power_kw"] = energy * 3600 / seconds
    return converted


class RowDecoder:
    """Decodes a file's rows as the router decodes messages: a row becomes the canonical
    JSON it stands for, on the topic it would have been published to, with the same
    readings and dead letters; a dead letter's reason says where in the file it came from.

    What depends on the topic alone (matching it, checking the device's id and type) is
    settled by the first of a device's rows the router accepts; after that, a row whose
    values msgspec vouches for (`vouched_telemetry`) is not decoded from its JSON again.
    Any other row takes the message's own path, whose words a dead letter needs.
    """

    def __init__(self, topic_prefix: str, limits: IngestSettings, source: str) -> None:
        decoders = DecodersSettings(enabled=["canonical"])
        self._router = Router.configured(decoders, limits, topic_prefix)
        self._canonical = CanonicalDecoder(topic_prefix, limits)
        self._scheme = TopicScheme(topic_prefix)
        self._max_payload_bytes = limits.max_payload_bytes
        self._source = source
        self._accepted: dict[tuple[str, str], tuple[str, DeviceTopic]] = {}

    def decode(
        self, line: int, document: Document, received_at: datetime
    ) -> tuple[Sequence[Reading], Sequence[DeadLetter]]:
        """What the row at `line` says; `document` is taken apart."""
        device_type = str(document.pop("device_type", ""))
        device_id = str(document.pop("device_id", ""))
        payload = _JSON.encode(document)
        accepted = self._accepted.get((device_type, device_id))
        if accepted is not None and len(payload) <= self._max_payload_bytes:
            topic, parsed = accepted
            telemetry = vouched_telemetry(device_type, document)
            if telemetry is not None:
                vouched = self._canonical.accepted(topic, parsed, telemetry, received_at)
                if vouched is not None:
                    return vouched, ()
        topic = self._scheme.telemetry(device_type, device_id)  # type: ignore[arg-type]
        readings_and_letters = self._router.decode(topic, payload, received_at)
        readings = [item for item in readings_and_letters if isinstance(item, Reading)]
        if readings and accepted is None:
            self._accepted[device_type, device_id] = (
                topic,
                DeviceTopic(readings[0].device_type, device_id),
            )
        letters = [
            dataclasses.replace(item, reason=f"{self._source} line {line}: {item.reason}")
            for item in readings_and_letters
            if isinstance(item, DeadLetter)
        ]
        return readings, letters
