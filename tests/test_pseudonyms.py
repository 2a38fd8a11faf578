"""`meterflow export --pseudonymize`: device and user ids replaced by keyed hashes, stable
across exports with one key, different with another, the key never in the data."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from storage import BatchWriter, Reading, WriteBatch, open_engine, registry
from storage.pseudonyms import Pseudonyms
from storage.registry import Registration
from tests.cli import meterflow
from tests.databases import Database

KEY = "a-key-of-the-analysts-own-32-chars"
OTHER_KEY = "another-key-entirely-0123456789"


def load(database: Database) -> None:
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await registry.register(conn, [Registration("m-1", "smart_meter", "alice"),
                                               Registration("m-2", "smart_meter", "bob")],
                                        datetime(2026, 3, 1, tzinfo=UTC))  # fmt: skip
            await writer.write(WriteBatch([
                Reading("t", device, "smart_meter", datetime(2026, month, 2, tzinfo=UTC), 0.5,
                        1.0, metadata={"name": f"{device} in the hall"})
                for device in ("m-1", "m-2") for month in (3, 4)
            ]))  # fmt: skip
        await engine.dispose()

    asyncio.run(go())


def export(database: Database, out: Path, key: str) -> list[dict[str, str]]:
    """The rows of a pseudonymized CSV export of March and April, the key from the
    environment as an operator would give it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METERFLOW_PRIVACY__PSEUDONYM_KEY", key)
        done = meterflow("export", "--from", "2026-03", "--to", "2026-04", "--format", "csv",
                         "--pseudonymize", "--out", str(out), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = []
    for name in ("energy_data_2026_03.csv", "energy_data_2026_04.csv"):
        with (out / name).open(newline="") as exported:
            rows += list(csv.DictReader(exported))
    return rows


def test_ids_become_keyed_hashes_the_same_in_every_export_with_the_key(
    database: Database, tmp_path: Path
) -> None:
    """HMAC-SHA256 of 'device:<id>' and 'user:<id>': one pseudonym per id in every month
    and export; another key gives others; neither ids, names nor the key are written."""
    load(database)
    first = export(database, tmp_path / "a", KEY)
    again = export(database, tmp_path / "b", KEY)
    other = export(database, tmp_path / "c", OTHER_KEY)
    expected = hmac.new(KEY.encode(), b"device:m-1", hashlib.sha256).hexdigest()[:32]
    assert {row["device_id"] for row in first} == {
        expected, Pseudonyms(SecretStr(KEY))("device", "m-2")
    }  # fmt: skip
    assert {(r["device_id"], r["user_id"]) for r in first} == {
        (r["device_id"], r["user_id"]) for r in again
    }  # fmt: skip
    assert len({(r["device_id"], r["user_id"]) for r in first}) == 2
    assert not {r["device_id"] for r in first} & {r["device_id"] for r in other}
    for directory in ("a", "c"):
        for file in (tmp_path / directory).iterdir():
            text = file.read_text()
            for secret in ("m-1", "m-2", "alice", "bob", "hall", KEY, OTHER_KEY):
                assert secret not in text, (file, secret)
    assert [float(r["energy_amount"]) for r in first] == [0.5] * 4
    if database.kind == "sqlite":
        assert KEY.encode() not in Path(database.url.removeprefix("sqlite:///")).read_bytes()


def test_without_a_key_pseudonymize_says_how_to_give_one(
    database: Database, tmp_path: Path
) -> None:
    """One line naming the setting, nothing written."""
    load(database)
    done = meterflow("export", "--from", "2026-03", "--to", "2026-03", "--pseudonymize",
                     "--out", str(tmp_path / "x"), "--db", database.url)  # fmt: skip
    assert done.exit_code == 2
    assert "METERFLOW_PRIVACY__PSEUDONYM_KEY" in done.stderr
    assert not (tmp_path / "x").exists()
