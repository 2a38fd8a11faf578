"""Online backups of a SQLite database: consistent while the daemon writes, compressed, private.

SQLite's backup API copies the database page by page under a read transaction, so the copy
is one consistent state even while the writer commits. Backups are gzip files readable by
their owner only; the newest `keep` are kept.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from storage.engine import sqlite_file

PREFIX = "meterflow-"
SUFFIX = ".db.gz"


def backup_sqlite(url: str, directory: Path, keep: int = 7) -> Path:
    """Back up the SQLite database at `url` into `directory`; return the new file."""
    source_path = sqlite_file(url, "backup (on PostgreSQL use pg_dump)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"{PREFIX}{stamp}{SUFFIX}"
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        copy = Path(scratch) / "copy.db"
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
        try:
            destination = sqlite3.connect(copy)
            with contextlib.closing(destination):
                source.backup(destination)
        finally:
            source.close()
        descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with (
            os.fdopen(descriptor, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb") as out,
            copy.open("rb") as data,
        ):
            shutil.copyfileobj(data, out)
    for old in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))[:-keep]:
        old.unlink()
    return target
