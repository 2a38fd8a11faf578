"""`meterflow db encrypt` and `db decrypt`: an existing SQLite database, and its archived
months, rewritten encrypted with `storage.encryption_key`, or plain again.

Each file is exported into a new one beside it (storage/cipher.py, `export`), synced, and
swapped in by a rename, so that a crash leaves either the old file or the new one whole.
The old file is then overwritten with zeros before it is removed: on a plain file system
that leaves no readable copy of what it held (copy-on-write file systems and SSDs may keep
the old blocks; the README says so). A daemon on the database refuses the change, as
it refuses a restore. Run again after a crash, the change finishes: a file already in
the new form is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from partitions.sqlite_store import ARCHIVE_SUFFIX
from partitions.store import archived_months
from storage import cipher
from storage.errors import EncryptionKeyError
from storage.inuse import exclusively

_ZEROS = bytes(1 << 20)


@dataclass(frozen=True, slots=True)
class Converted:
    """The files rewritten, and those found already in the new form."""

    rewritten: Sequence[Path]
    already: Sequence[Path]


def convert(
    database: Path, archive_dir: Path, source_key: str | None, target_key: str | None
) -> Converted:
    """Rewrite `database` and the SQLite month files under `archive_dir` from `source_key`
    to `target_key` (None: plain); DatabaseInUseError while a daemon uses the database,
    EncryptionKeyError for a file neither key opens (and then nothing is changed)."""
    archives = [path for _, path in archived_months(archive_dir, ARCHIVE_SUFFIX)]
    with exclusively(database, "an encryption change"):
        # Every file is checked before the first is changed.
        already = [path for path in (database, *archives) if _opens(path, target_key)]
        pending = [path for path in (database, *archives) if path not in already]
        for path in pending:
            cipher.connect(path, source_key).close()
        for path in pending:
            _rewrite(path, source_key, target_key)
        # An old file a crash left between the rename and its shredding.
        for path in already:
            if _old(path).exists():
                _shred(_old(path))
    return Converted(pending, already)


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _opens(path: Path, key: str | None) -> bool:
    try:
        cipher.connect(path, key).close()
    except EncryptionKeyError:
        return False
    return True


def _rewrite(path: Path, source_key: str | None, target_key: str | None) -> None:
    with closing(cipher.connect(path, source_key, isolation_level=None)) as conn:
        # What the write-ahead log holds goes into the file, and the log to nothing.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    scratch = path.with_name(path.name + ".converting")
    scratch.unlink(missing_ok=True)
    cipher.export(path, source_key, scratch, target_key)
    _sync(scratch)
    old = _old(path)
    old.unlink(missing_ok=True)
    os.link(path, old)
    scratch.replace(path)
    _sync(path.parent)
    for leftover in ("-wal", "-shm"):
        path.with_name(path.name + leftover).unlink(missing_ok=True)
    _shred(old)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _shred(path: Path) -> None:
    """Overwrite the file with zeros, sync, and remove it."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        written = 0
        while written < size:
            written += file.write(_ZEROS[: min(len(_ZEROS), size - written)])
        file.flush()
        os.fsync(file.fileno())
    path.unlink()
