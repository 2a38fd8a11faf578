"""Encrypted backups: `backup --encrypt-to` seals the copy with age, so the backup
directory holds no plaintext; `restore --identity` opens it, and without the right
identity a restore says so in one line and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from pyrage import x25519

from tests.cli import meterflow

SECRET = "meter-SECRET-9"


def devices(url: str) -> list[str]:
    shown = meterflow("devices", "list", "--db", url, "--format", "json")
    return sorted(d["device_id"] for d in json.loads(shown.output))


def identity_file(path: Path) -> tuple[Path, str]:
    """A new age identity in an owner-only file, and its public key."""
    identity = x25519.Identity.generate()
    path.write_text(f"# test identity\n{identity}\n")
    path.chmod(0o600)
    return path, str(identity.to_public())


def test_an_encrypted_backup_holds_no_plaintext_and_restores_with_its_identity(
    tmp_path: Path,
) -> None:
    """Only `<backup>.age` is written, owner-only, and no byte of a device id is in it; the
    newest `--keep` stay; a wrong or missing identity is refused, the right one restores."""
    url = f"sqlite:///{tmp_path / 'data' / 'meterflow.db'}"
    meterflow("devices", "register", SECRET, "--type", "smart_meter", "--db", url)
    identity, public = identity_file(tmp_path / "identity.txt")
    backups = tmp_path / "backups"
    for _ in range(2):
        made = meterflow("backup", "--to", str(backups), "--keep", "1", "--encrypt-to", public,
                         "--db", url)  # fmt: skip
        assert made.exit_code == 0, made.output
    [sealed] = backups.iterdir()
    assert sealed.name.endswith(".db.gz.age")
    assert sealed.stat().st_mode & 0o077 == 0
    body = sealed.read_bytes()
    assert body.startswith(b"age-encryption.org/v1")
    assert SECRET.encode() not in body

    meterflow("devices", "register", "meter-later-1", "--type", "smart_meter", "--db", url)
    missing = meterflow("restore", str(sealed), "--force", "--db", url)
    assert missing.exit_code == 1
    assert "is encrypted: give the age identity that opens it" in missing.stderr
    wrong, _ = identity_file(tmp_path / "other.txt")
    refused = meterflow("restore", str(sealed), "--force", "--identity", str(wrong), "--db", url)
    assert refused.exit_code == 1
    assert "cannot decrypt" in refused.stderr
    assert devices(url) == sorted(["meter-later-1", SECRET])

    restored = meterflow("restore", str(sealed), "--force", "--identity", str(identity),
                         "--db", url)  # fmt: skip
    assert restored.exit_code == 0, restored.output
    assert devices(url) == [SECRET]


def test_a_key_that_is_not_an_age_key_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """One line naming the key; the plaintext backup it would have sealed is not left."""
    url = f"sqlite:///{tmp_path / 'data' / 'meterflow.db'}"
    meterflow("devices", "register", SECRET, "--type", "smart_meter", "--db", url)
    done = meterflow("backup", "--to", str(tmp_path / "b"), "--encrypt-to", "ssh-rsa AAAA",
                     "--db", url)  # fmt: skip
    assert done.exit_code == 1
    assert "'ssh-rsa AAAA' is not an age public key" in done.stderr
    assert not (tmp_path / "b").exists()
