"""The storage package's settings: the database, SQLite's knobs, retries of failed commits,
local time for analysts, and privacy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from storage.checkpoints import WRITER_CHECKPOINT_PAGES
from storage.engine import SQLiteOptions, Synchronous, database_url

DEFAULT_DATABASE = "sqlite:///data/meterflow.db"


def _supported(url: str) -> str:
    database_url(url)
    return url


# Checked when the settings load, so that every command refuses a wrong URL the same way
# before anything is created.
DatabaseURL = Annotated[str, AfterValidator(_supported)]


class StorageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: DatabaseURL = DEFAULT_DATABASE
    sqlite_synchronous: Synchronous = "FULL"
    sqlite_busy_timeout_ms: Annotated[int, Field(ge=0)] = 5000
    # The daemon copies SQLite's write-ahead log into the database this often, beside the
    # writer (storage/checkpoints.py).
    sqlite_checkpoint_interval_s: Annotated[float, Field(gt=0)] = 1.0
    retry_initial_s: Annotated[float, Field(gt=0)] = 0.1
    retry_max_s: Annotated[float, Field(gt=0)] = 10.0
    # Partitions for the current month and this many ahead exist from start-up on, and are
    # topped up by the daemon every few hours; other months are created by their first reading.
    partitions_ahead: Annotated[int, Field(ge=0, le=120)] = 3
    # Commits failing (and being retried) for longer than this make the daemon unready;
    # a lock that clears in a moment should not.
    unready_after_s: Annotated[float, Field(ge=0)] = 10.0
    # SQLite: the passphrase the database and its archived months are encrypted with
    # (storage/cipher.py); best given in METERFLOW_STORAGE__ENCRYPTION_KEY, not a file.
    encryption_key: SecretStr | None = None

    @property
    def key(self) -> str | None:
        """The encryption key's text, for the connections that need it."""
        return None if self.encryption_key is None else self.encryption_key.get_secret_value()

    @property
    def sqlite(self) -> SQLiteOptions:
        return SQLiteOptions(self.sqlite_synchronous, self.sqlite_busy_timeout_ms, key=self.key)

    @property
    def writer_sqlite(self) -> SQLiteOptions:
        """The daemon writer's options: checkpoints are the checkpointer's job
        (storage/checkpoints.py), and the writer's own only a safety net."""
        return replace(self.sqlite, wal_autocheckpoint_pages=WRITER_CHECKPOINT_PAGES)


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin, "
            "Asia/Kolkata or UTC"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class AnalyticsSettings(BaseModel):
    """Where analysts' days and months begin: `query energy`, daily figures and bills."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: TimeZoneName = "UTC"
    # A user's own zone, by user id, before `timezone`.
    user_timezones: dict[str, TimeZoneName] = Field(default_factory=dict)

    def zone(self, user_id: str | None = None) -> ZoneInfo:
        """The zone of `user_id`'s figures, or everyone's."""
        return ZoneInfo(self.user_timezones.get(user_id or "", self.timezone))


class PrivacySettings(BaseModel):
    """`[privacy]`: the key of exported pseudonyms (METERFLOW_PRIVACY__PSEUDONYM_KEY), and
    where erasures are logged for restores to apply again (storage/erasure.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pseudonym_key: Annotated[SecretStr, Field(min_length=16)] | None = None
    erasure_log: Path = Path("data/erasures.jsonl")


class BackupSettings(BaseModel):
    """`[backup]`: the age public keys backups are encrypted to (storage/sealed.py), and the
    identity file that opens them for a restore."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: list[str] = Field(default_factory=list)
    identity_file: Path | None = None
