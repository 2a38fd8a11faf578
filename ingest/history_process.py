"""A history file decoded beside the import's writer, a batch of rows at a time.

Reading and validating a row takes most of an import's interpreter time. In the
importing process it would take turns with the writer for the interpreter lock; in a
process of its own it runs on the other core, and the batches come back as MessagePack,
which costs the importer a tenth of decoding them (docs/performance.md). A small file is
decoded in a thread instead: it takes less time than a process takes to start.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import signal
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Self

import msgspec

from ingest.errors import IngestError
from ingest.history import HistoryFileError, Meter, RowDecoder, documents
from ingest.settings import IngestSettings
from storage import DeadLetter, Reading

# From this size on a file is decoded in a process: about 50,000 rows of CSV, which take
# longer to decode than the process (a fresh interpreter) takes to start.
PROCESS_FROM_BYTES = 4 * 2**20
# Rows a message from the process holds at most; the importer joins messages into batches.
# It decodes each holding the interpreter lock, which SQLite's thread takes between
# statements: a 50,000-row message kept that thread waiting up to 30 ms, and the import of
# minute readings ran a sixth slower (docs/performance.md).
PIPE_ROWS = 5_000
# Rows decoded in the importer while the process starts (about half a second, most of it
# importing meterflow's modules): about as many as the writer stores meanwhile.
HEAD_ROWS = 40_000


class DecodingProcessError(IngestError):
    """The decoding process stopped without finishing the file: killed, or a bug."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the import's decoding process failed: {what}")


@dataclass(frozen=True, slots=True)
class DecodeJob:
    """What the decoding process needs to know, all of it picklable."""

    path: Path
    meter: Meter | None
    topic_prefix: str
    limits: IngestSettings
    received_at: datetime
    batch_rows: int


class DecodedBatch(msgspec.Struct, tag=True):
    """A batch of rows: their readings, their dead letters, how many rows, and how many of
    them were rejected."""

    readings: list[Reading] = msgspec.field(default_factory=list)
    letters: list[DeadLetter] = msgspec.field(default_factory=list)
    rows: int = 0
    rejected: int = 0


class _Failed(msgspec.Struct, frozen=True, tag=True):
    """The process's error: a HistoryFileError's words, or a bug's traceback."""

    message: str
    file_error: bool


# Batches cross the pipe as MessagePack: encoding one costs the process a sixth of what
# pickling it did, and decoding it the importer about as much as unpickling.
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(DecodedBatch | _Failed | None)


def decoded_batches(
    job: DecodeJob, rows: int | None = None, start: int = 0, stop: int | None = None
) -> Iterator[DecodedBatch]:
    """The file's rows from row `start` to `stop` (the whole file unless given), decoded
    as the canonical decoder decodes a message, in batches of `rows` (the job's batch_rows
    unless given)."""
    decoder = RowDecoder(job.topic_prefix, job.limits, job.path.name)
    source = itertools.islice(documents(job.path, job.meter), start, stop)
    while True:
        batch = DecodedBatch()
        for line, document in itertools.islice(source, rows or job.batch_rows):
            batch.rows += 1
            found, refused = decoder.decode(line, document, job.received_at)
            batch.readings.extend(found)
            if refused:
                batch.rejected += len(refused)
                batch.letters.extend(refused)
        if not batch.rows:
            return
        yield batch


def _produce(job: DecodeJob, start: int, out: Connection) -> None:
    """The process's body: the rows from row `start` in pieces of PIPE_ROWS, then None; or
    what went wrong. Sending waits while the importer has not taken the last piece, so
    little is decoded ahead of it."""
    # Ctrl-C reaches the whole process group: the importer stops this process itself,
    # without a second traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with out:
        try:
            for piece in decoded_batches(job, min(PIPE_ROWS, job.batch_rows), start):
                out.send_bytes(_ENCODER.encode(piece))
        except HistoryFileError as exc:
            out.send_bytes(_ENCODER.encode(_Failed(str(exc), file_error=True)))
        except Exception:  # noqa: BLE001  (the importer raises it: a bug reads as one)
            out.send_bytes(_ENCODER.encode(_Failed(traceback.format_exc(), file_error=False)))
        else:
            out.send_bytes(_ENCODER.encode(None))


@asynccontextmanager
async def decoding(job: DecodeJob) -> AsyncIterator[AsyncIterable[DecodedBatch]]:
    """`async with decoding(job) as batches: async for batch in batches: ...`: the file's
    batches, decoded in a process of their own if the file is large, else in a thread.

    For a large file, the first HEAD_ROWS rows are decoded in a thread while the process
    starts, so the writer has work from the start, and its batches grow from one piece of
    PIPE_ROWS rows, each next twice as large up to the job's batch_rows: the writer starts
    on the first while the next are decoded (docs/performance.md, "The import's first
    seconds"). A small file's batches are of batch_rows from the first.
    """
    if job.path.stat().st_size < PROCESS_FROM_BYTES:
        yield _in_thread(decoded_batches(job))
        return
    async with DecodingProcess(job, HEAD_ROWS) as rest:
        head = _in_thread(decoded_batches(job, PIPE_ROWS, stop=HEAD_ROWS))
        yield _growing(_chained(head, rest), job.batch_rows)


async def _in_thread(batches: Iterator[DecodedBatch]) -> AsyncIterator[DecodedBatch]:
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        yield batch


async def _chained(*parts: AsyncIterable[DecodedBatch]) -> AsyncIterator[DecodedBatch]:
    for part in parts:
        async for batch in part:
            yield batch


async def _growing(
    pieces: AsyncIterable[DecodedBatch], batch_rows: int
) -> AsyncIterator[DecodedBatch]:
    """`pieces` joined into batches: the first one piece, each next at least twice as many
    rows, up to `batch_rows`."""
    batch, rows = DecodedBatch(), 1
    async for piece in pieces:
        batch.readings.extend(piece.readings)
        batch.letters.extend(piece.letters)
        batch.rows += piece.rows
        batch.rejected += piece.rejected
        if batch.rows >= rows:
            yield batch
            rows = min(2 * batch.rows, batch_rows)
            batch = DecodedBatch()
    if batch.rows:
        yield batch


class DecodingProcess:
    """`async with DecodingProcess(job, start) as pieces: async for piece in pieces: ...`:
    the file's rows from row `start`, PIPE_ROWS at a time.

    The process is spawned (a fresh interpreter: forking a process with threads can copy
    a held lock) and stopped on leaving, also when the import stops early. Only the
    process holds the pipe's sending end, so its end, however it comes, ends the wait
    for a batch.
    """

    def __init__(self, job: DecodeJob, start: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self._batches, sending = context.Pipe(duplex=False)
        self._process: BaseProcess = context.Process(
            target=_produce, args=(job, start, sending), name="meterflow-import-decoder"
        )
        self._sending = sending

    async def __aenter__(self) -> Self:
        self._process.start()
        self._sending.close()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process.is_alive():
            self._process.terminate()
        await asyncio.to_thread(self._process.join)
        self._batches.close()
        self._process.close()

    async def __aiter__(self) -> AsyncIterator[DecodedBatch]:
        """The pieces the process sends, of PIPE_ROWS rows (the last may be shorter)."""
        while (piece := await asyncio.to_thread(self._next)) is not None:
            yield piece

    def _next(self) -> DecodedBatch | None:
        try:
            found: DecodedBatch | _Failed | None = _DECODER.decode(self._batches.recv_bytes())
        except EOFError:
            self._process.join()
            code = self._process.exitcode
            raise DecodingProcessError(f"it ended with exit code {code}") from None
        if isinstance(found, _Failed):
            if found.file_error:
                raise HistoryFileError(found.message)
            raise DecodingProcessError(found.message)
        return found
