"""Encrypted backups: a backup file sealed with age (pyrage) to the public keys of its
recipients, so that a copy of the backups is no copy of the data; opened for a restore
with an age identity (`AGE-SECRET-KEY-...`) into a private scratch directory, and nowhere
else.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyrage
from pyrage import x25519

from storage.backup import PREFIX
from storage.errors import StorageError

SEALED_SUFFIX = ".age"


def age_recipients(keys: Sequence[str]) -> list[x25519.Recipient]:
    """The age public keys (age1...) given; StorageError naming one that is not."""
    found = []
    for key in keys:
        try:
            found.append(x25519.Recipient.from_str(key.strip()))
        except pyrage.RecipientError as exc:
            raise StorageError(f"{key!r} is not an age public key (age1...): {exc}") from None
    return found


def seal(backup: Path, recipients: Sequence[x25519.Recipient], keep: int) -> Path:
    """Encrypt `backup` to `recipients` as `<name>.age` (owner-only), remove the plaintext,
    and keep the newest `keep` sealed backups beside it."""
    target = backup.with_name(backup.name + SEALED_SUFFIX)
    partial = target.with_name(target.name + ".partial")
    descriptor = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        with backup.open("rb") as plain, os.fdopen(descriptor, "wb") as out:
            pyrage.encrypt_io(plain, out, list(recipients))
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        backup.unlink()
    for old in sorted(backup.parent.glob(f"{PREFIX}*{SEALED_SUFFIX}"))[:-keep]:
        old.unlink()
    return target


def _identities(identity_file: Path) -> list[x25519.Identity]:
    try:
        lines = identity_file.read_text().splitlines()
    except OSError as exc:
        raise StorageError(f"cannot read the identity {identity_file}: {exc.strerror}") from None
    keys = [line.strip() for line in lines if line.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise StorageError(f"{identity_file} holds no age identity (AGE-SECRET-KEY-...)")
    return [x25519.Identity.from_str(key) for key in keys]


@contextmanager
def opened(backup: Path, identity_file: Path | None) -> Iterator[Path]:
    """`backup` as a plain file: itself, or decrypted into a private scratch directory
    that is removed afterwards."""
    if not backup.name.endswith(SEALED_SUFFIX):
        yield backup
        return
    if identity_file is None:
        raise StorageError(
            f"{backup.name} is encrypted: give the age identity that opens it "
            "(`--identity FILE` or backup.identity_file)"
        )
    identities = _identities(identity_file)
    with tempfile.TemporaryDirectory(prefix="meterflow-restore-") as scratch:
        plain = Path(scratch) / backup.name.removesuffix(SEALED_SUFFIX)
        descriptor = os.open(plain, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with backup.open("rb") as sealed, os.fdopen(descriptor, "wb") as out:
            try:
                pyrage.decrypt_io(sealed, out, identities)
            except pyrage.DecryptError as exc:
                raise StorageError(
                    f"cannot decrypt {backup.name} with {identity_file}: {exc} (it was sealed "
                    "to other keys)"
                ) from None
        yield plain
