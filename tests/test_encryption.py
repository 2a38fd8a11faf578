"""Encryption at rest (SQLite): with storage.encryption_key the database, its write-ahead
log, its archived months and its backups hold no plaintext; without the key, or with
another, a command says so in one line; `db encrypt` and `db decrypt` convert a database
and its archives with every reading kept.

Data: test_privacy's two meters (every hour of 2 March and 2 April 2026, 0.25 kWh each).
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from meterflow.publisher import Publisher
from storage.cipher import ENVIRONMENT_KEY, PLAIN_HEADER
from storage.cipher import connect as keyed_connect
from tests import test_privacy
from tests.cli import meterflow
from tests.databases import PostgresDatabase, SQLiteDatabase
from tests.helpers import make_settings, payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto

KEY = "correct horse battery staple"
SECRET, OTHER = "meter-SECRET-4711", "meter-other-2"
# Every device's readings in both months, recomputed from what test_privacy.load stores.
PER_DEVICE = (24 * len(test_privacy.DAYS), 0.25 * 24 * len(test_privacy.DAYS))
TOTALS = "SELECT device_id, count(*), sum(energy_amount) FROM energy_data GROUP BY 1 ORDER BY 1"


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_KEY, KEY)


def plaintext_in(path: Path) -> list[bytes]:
    """What of the devices' ids, or of SQLite's plain header, the file holds."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return [text for text in (SECRET.encode(), OTHER.encode(), PLAIN_HEADER) if text in data]


def totals(url: str, archive: Path) -> list[tuple[str, int, float]]:
    """Readings and kWh per device, live and archived, as `query sql` gives them."""
    done = meterflow("query", "sql", TOTALS, "--include-archive", "--archive-dir", str(archive),
                     "--format", "csv", "--db", url)  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = [line.split(",") for line in done.output.splitlines()[1:]]
    return [(device, int(count), float(kwh)) for device, count, kwh in rows]


def expected() -> list[tuple[str, int, float]]:
    count, kwh = PER_DEVICE
    return [(device, count, kwh) for device in sorted((SECRET, OTHER))]


def load_and_archive(db: Path, archive: Path, key: str | None) -> str:
    url = f"sqlite:///{db}"
    assert meterflow("devices", "list", "--db", url).exit_code == 0  # creates the schema
    test_privacy.load(SQLiteDatabase(db), SECRET, OTHER, key=key)
    archived = meterflow("partitions", "archive", "2026-03", "--to", str(archive), "--db", url)
    assert archived.exit_code == 0, archived.output
    return url


def test_an_encrypted_database_its_log_archives_and_backups_hold_no_plaintext(
    tmp_path: Path, keyed: None
) -> None:
    """Read raw, none of the files holds an id or SQLite's header; the sqlite3 module
    cannot read the database; with the key, the totals are the readings', db verify
    passes, and an encrypted backup restores."""
    db, archive = tmp_path / "data" / "meterflow.db", tmp_path / "archive"
    url = load_and_archive(db, archive, KEY)
    assert meterflow("backup", "--to", str(tmp_path / "backups"), "--db", url).exit_code == 0
    [backup] = (tmp_path / "backups").iterdir()
    # A connection held open, as a running daemon's is, keeps the write-ahead log.
    with closing(keyed_connect(db, KEY)) as daemon:
        daemon.execute("INSERT INTO dead_letters (topic, payload, payload_size, reason, "
                       f"received_at) VALUES ('meters/smart_meter/{SECRET}/telemetry', x'00', "
                       "1, 'late', '2026-04-03 00:00:00.000000')")  # fmt: skip
        daemon.commit()
        wal = db.with_name(db.name + "-wal")
        assert wal.stat().st_size > 0
        files = [db, wal, *archive.iterdir(), backup]
        assert len(files) == 4
        assert {path.name: plaintext_in(path) for path in files} == {p.name: [] for p in files}
    with closing(sqlite3.connect(db)) as plain, pytest.raises(sqlite3.DatabaseError):
        plain.execute("SELECT count(*) FROM energy_data").fetchall()

    assert totals(url, archive) == expected()
    verified = meterflow("db", "verify", "--archive-dir", str(archive), "--db", url)
    assert verified.exit_code == 0, verified.output
    assert meterflow("db", "check", "--db", url).output.startswith("integrity: ok")
    restored = meterflow("restore", str(backup), "--force", "--db", url)
    assert restored.exit_code == 0, restored.output
    assert totals(url, archive) == expected()


def test_a_missing_or_wrong_key_is_one_line_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """No traceback, and not SQLCipher's own complaints on stderr: which of the three it
    is (no key, another key, a key for a plain file), and what to do."""
    encrypted, plain = tmp_path / "encrypted.db", tmp_path / "plain.db"
    monkeypatch.setenv(ENVIRONMENT_KEY, KEY)
    assert meterflow("devices", "list", "--db", f"sqlite:///{encrypted}").exit_code == 0
    monkeypatch.delenv(ENVIRONMENT_KEY)
    assert meterflow("devices", "list", "--db", f"sqlite:///{plain}").exit_code == 0
    capfd.readouterr()

    def refusal(db: Path, key: str | None) -> str:
        if key is None:
            monkeypatch.delenv(ENVIRONMENT_KEY, raising=False)
        else:
            monkeypatch.setenv(ENVIRONMENT_KEY, key)
        done = meterflow("query", "energy", "--device", SECRET, "--db", f"sqlite:///{db}")
        assert done.exit_code == 1
        assert len(done.output.splitlines()) == 1, done.output
        return done.output

    assert f"{encrypted}: it is encrypted" in refusal(encrypted, None)
    assert ENVIRONMENT_KEY in refusal(encrypted, None)
    assert f"{encrypted}: the key is wrong" in refusal(encrypted, "not the key")
    assert "`meterflow db encrypt`" in refusal(plain, KEY)
    monkeypatch.delenv(ENVIRONMENT_KEY)
    backup = meterflow("backup", "--to", str(tmp_path / "b"), "--db", f"sqlite:///{encrypted}")
    assert "it is encrypted" in backup.output
    assert "Traceback" not in backup.output
    assert capfd.readouterr().err == ""


def test_db_encrypt_and_decrypt_convert_the_database_and_its_archives_keeping_every_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain database and archive encrypted in place (no plaintext left, nor the old
    files), every reading kept; converting again changes nothing; decrypted, the sqlite3
    module reads them again."""
    db, archive = tmp_path / "data" / "meterflow.db", tmp_path / "archive"
    url = load_and_archive(db, archive, None)
    assert totals(url, archive) == expected()
    unkeyed = meterflow("db", "encrypt", "--archive-dir", str(archive), "--db", url)
    assert unkeyed.exit_code == 1
    assert f"set {ENVIRONMENT_KEY}" in unkeyed.output

    monkeypatch.setenv(ENVIRONMENT_KEY, KEY)
    done = meterflow("db", "encrypt", "--archive-dir", str(archive), "--db", url)
    assert done.exit_code == 0, done.output
    assert "the database and 1 archived month encrypted" in done.output
    left = sorted(path.name for path in [*db.parent.iterdir(), *archive.iterdir()])
    assert left == ["energy_data_2026_03.db", "meterflow.db", "meterflow.db.lock"]
    for path in (db, archive / "energy_data_2026_03.db"):
        assert plaintext_in(path) == [], path
    assert totals(url, archive) == expected()
    verified = meterflow("db", "verify", "--archive-dir", str(archive), "--db", url)
    assert verified.exit_code == 0, verified.output
    # As a crash between the rename and the shredding would leave it: the next run removes it.
    (db.with_name(db.name + ".old")).write_bytes(SECRET.encode())
    again = meterflow("db", "encrypt", "--archive-dir", str(archive), "--db", url)
    assert "(2 already were)" in again.output, again.output
    assert not db.with_name(db.name + ".old").exists()

    decrypted = meterflow("db", "decrypt", "--archive-dir", str(archive), "--db", url)
    assert decrypted.exit_code == 0, decrypted.output
    assert f"now unset {ENVIRONMENT_KEY}" in decrypted.output
    monkeypatch.delenv(ENVIRONMENT_KEY)
    assert SECRET.encode() in (archive / "energy_data_2026_03.db").read_bytes()
    assert totals(url, archive) == expected()
    assert SQLiteDatabase(db).query("SELECT count(*) FROM energy_data") == [(PER_DEVICE[0],)]


def test_a_persons_data_is_exported_and_erased_from_an_encrypted_database_and_archive(
    tmp_path: Path, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """privacy export and erase reach the encrypted archive too: the export holds both
    months' readings; after the erasure only the other meter's remain, and db verify
    passes."""
    monkeypatch.setenv("METERFLOW_PRIVACY__ERASURE_LOG", str(tmp_path / "erasures.jsonl"))
    db, archive = tmp_path / "data" / "meterflow.db", tmp_path / "archive"
    url = load_and_archive(db, archive, KEY)
    out = tmp_path / "export"
    exported = meterflow("privacy", "export", "--device", SECRET, "--out", str(out),
                         "--archive-dir", str(archive), "--db", url)  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert len(test_privacy.exported(out, "energy_data")) == PER_DEVICE[0]
    erased = meterflow("privacy", "erase", "--device", SECRET, "--archive-dir", str(archive),
                       "--db", url)  # fmt: skip
    assert erased.exit_code == 0, erased.output
    assert f"energy_data_2026_03.db: erased {PER_DEVICE[0] // 2} readings" in erased.output
    assert totals(url, archive) == [row for row in expected() if row[0] == OTHER]
    verified = meterflow("db", "verify", "--archive-dir", str(archive), "--db", url)
    assert verified.exit_code == 0, verified.output


@pytest.mark.postgres
def test_an_encrypted_database_migrates_to_postgresql(
    tmp_path: Path, keyed: None, postgres: PostgresDatabase
) -> None:
    """`meterflow migrate` opens the SQLite side with the key: every live reading arrives
    (April's; March is archived)."""
    db, archive = tmp_path / "data" / "meterflow.db", tmp_path / "archive"
    url = load_and_archive(db, archive, KEY)
    done = meterflow("migrate", "--from", url, "--to", postgres.url)
    assert done.exit_code == 0, done.output
    assert "verified" in done.output
    count, kwh = PER_DEVICE
    live = [(device, count // 2, kwh / 2) for device in sorted((SECRET, OTHER))]
    assert sorted(postgres.query(TOTALS)) == live


@pytest.mark.mqtt
async def test_the_daemon_ingests_into_an_encrypted_database(
    broker: Mosquitto,
    publisher: Publisher,
    tmp_path: Path,
    prefix: str,
    keyed: None,
) -> None:
    """Readings from the broker land encrypted (file and log); `db encrypt` is refused
    while the daemon runs; with the key, every reading is there."""
    db = tmp_path / "data" / "meterflow.db"
    settings = make_settings(broker.url, db, prefix, **{"storage.encryption_key": KEY})
    start = recent(3600).replace(second=0, microsecond=0)
    async with running_daemon(settings) as daemon:
        for minute in range(30):
            at = start + timedelta(minutes=minute)
            publisher.publish(f"{prefix}/smart_meter/{SECRET}/telemetry", payload(SECRET, at))
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 30, what="30 readings")
        for path in (db, db.with_name(db.name + "-wal")):
            assert plaintext_in(path) == [], path
        refused = await asyncio.to_thread(meterflow, "db", "encrypt", "--db", f"sqlite:///{db}")
        assert refused.exit_code == 1
        assert "in use" in refused.output, refused.output
    with closing(keyed_connect(db, KEY)) as conn:
        assert conn.execute("SELECT count(*) FROM energy_data").fetchall() == [(30,)]
