"""Settings: a TOML file, overridden by METERFLOW_* variables, overridden by flags.

Nested keys map to variables with a double underscore: `[mqtt] url` is
`METERFLOW_MQTT__URL`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest.errors import ConfigError
from ingest.units import Measure, factor
from partitions import MIN_KEEP_MONTHS, RetentionAction
from storage import DataType, DeviceType, SQLiteOptions, Synchronous, UnknownDevices

DEFAULT_DATABASE = "sqlite:///data/meterflow.db"
DEFAULT_EXPECTED_INTERVAL_S: dict[DeviceType, float] = {"smart_meter": 60.0, "solar_panel": 60.0}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    # The receive path: "meterflow", our own MQTT 5 subscriber (fastest; stops reading
    # when its window is full), or "aiomqtt" (docs/performance.md compares them).
    client: Literal["meterflow", "aiomqtt"] = "meterflow"
    client_id: str = "meterflow-ingest"
    topic_prefix: str = "meterflow"
    # Several daemons sharing the load: each subscribes as $share/<shared_group>/... with a
    # client id of its own (`meterflow run --instance N` appends -N), so a restarted daemon
    # resumes its own session and the messages that were in flight to it.
    shared_group: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    # How long the broker keeps our session (subscriptions and unacknowledged messages)
    # while the daemon is down.
    session_expiry_s: Annotated[int, Field(ge=0, le=4294967295)] = 7 * 24 * 3600
    # MQTT 5 Receive Maximum: the unacknowledged messages the broker may have in flight to
    # us. It bounds the daemon's memory and must exceed a batch so batches can fill.
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 10000
    reconnect_initial_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0
    # TLS (mqtts:// URLs): the CA that signed the broker's certificate (the system's trust
    # store when unset), and a client certificate with its key for brokers that ask for one.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @model_validator(mode="after")
    def _check_url(self) -> Self:
        if urlsplit(self.url).scheme not in {"mqtt", "mqtts", "tcp"}:
            raise ValueError(
                f"mqtt.url must look like mqtt://HOST:PORT or mqtts://HOST:PORT, not {self.url!r}"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("mqtt.tls_cert_file and mqtt.tls_key_file go together")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an mqtts:// URL: server certificate and host name verified."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file is not None:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


class StorageSettings(_Section):
    url: str = DEFAULT_DATABASE
    sqlite_synchronous: Synchronous = "NORMAL"
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

    @property
    def sqlite(self) -> SQLiteOptions:
        return SQLiteOptions(self.sqlite_synchronous, self.sqlite_busy_timeout_ms)


class BatchSettings(_Section):
    max_rows: Annotated[int, Field(ge=1, le=60000)] = 5000
    # p99 publish-to-commit stays within 250 ms at 20,000 readings/s (bench.latency).
    max_delay_ms: Annotated[int, Field(ge=1)] = 50


class IngestSettings(_Section):
    max_payload_bytes: Annotated[int, Field(ge=64)] = 64 * 1024
    max_future_skew_s: Annotated[float, Field(ge=0)] = 300.0
    max_age_days: Annotated[int, Field(ge=1)] = 3650
    unknown_devices: UnknownDevices = "register"
    dead_letter_max_bytes: Annotated[int, Field(ge=0)] = 4096
    # The daemon's event loop: "auto" takes uvloop when the `uvloop` extra is installed
    # (a few to 30 % more readings per second, docs/performance.md), else asyncio's own.
    # The aiomqtt receive path always runs on asyncio's (paho misses disconnects on uvloop).
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    summary_interval_s: Annotated[float, Field(gt=0)] = 10.0


class DevicesSettings(_Section):
    # How often each device type publishes; a device silent for offline_factor times its
    # interval is marked inactive, and turns active again with its next reading.
    expected_interval_s: dict[DeviceType, Annotated[float, Field(gt=0)]] = (
        DEFAULT_EXPECTED_INTERVAL_S
    )
    offline_factor: Annotated[float, Field(ge=1)] = 3.0
    check_interval_s: Annotated[float, Field(gt=0)] = 60.0
    low_battery_pct: Annotated[float, Field(ge=0, le=100)] = 20.0

    @field_validator("expected_interval_s", mode="after")
    @classmethod
    def _every_type_has_an_interval(
        cls, intervals: dict[DeviceType, float]
    ) -> dict[DeviceType, float]:
        # Setting one type's interval must not leave the others without one.
        return {**DEFAULT_EXPECTED_INTERVAL_S, **intervals}


class MetricsSettings(_Section):
    # /metrics, /healthz and /readyz over HTTP; off unless a port is given.
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    host: str = "127.0.0.1"


class RetentionSettings(_Section):
    # Months to keep in the live database, counting the current one; unset keeps them all.
    # The current and the previous month are never touched, so the least is 2.
    keep_months: Annotated[int, Field(ge=MIN_KEEP_MONTHS)] | None = None
    action: RetentionAction = "archive"
    archive_dir: Path = Path("data/archive")
    interval_s: Annotated[float, Field(gt=0)] = 24 * 3600.0


BUILT_IN_DECODERS = ("canonical", "tasmota", "shelly", "zigbee2mqtt")


class GenericField(_Section):
    """How one field of a device family maps onto a reading."""

    measure: Measure
    unit: str
    # Energy only: a counter (kWh since some start) rather than energy per interval.
    cumulative: bool = False
    # consumption or production; by default what the decoder's device type implies.
    kind: DataType | None = None

    @model_validator(mode="after")
    def _known_unit(self) -> Self:
        factor(self.measure, self.unit)
        if self.cumulative and self.measure != "energy":
            raise ValueError("only an energy field can be cumulative")
        return self


class GenericDecoderSettings(_Section):
    """A device family described by configuration alone.

    `topics` are patterns with named levels; `{device_id}` (or `{device_id*}` for ids
    with `/`) is required. With a `{field}` level each message is one plain number and
    `fields` is keyed by that level's value; without one the payload is a JSON object and
    `fields` is keyed by dotted paths into it (`SML.Total_in`).
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    topics: Annotated[list[str], Field(min_length=1)]
    device_type: DeviceType = "smart_meter"
    fields: Annotated[dict[str, GenericField], Field(min_length=1)]
    # A dotted path to the device's own timestamp; unset stamps the receive time.
    timestamp: str | None = None
    timestamp_format: Literal["iso", "epoch_s", "epoch_ms"] = "iso"
    # Patterns of availability topics (online/offline, true/false).
    availability_topics: list[str] = []

    @model_validator(mode="after")
    def _device_id_in_every_topic(self) -> Self:
        for topic in [*self.topics, *self.availability_topics]:
            if "{device_id}" not in topic and "{device_id*}" not in topic:
                raise ValueError(f"decoder {self.name!r}: topic {topic!r} has no {{device_id}}")
        return self


class DecodersSettings(_Section):
    # Built-in decoders and generic ones (by name) that are switched on.
    enabled: list[str] = ["canonical"]
    # Replace a built-in decoder's topic patterns, e.g. tasmota = ["site/{device_id}/tele/SENSOR"].
    topics: dict[str, list[str]] = {}
    # The device type of a built-in decoder's readings (smart_meter unless given).
    device_types: dict[str, DeviceType] = {}
    generic: list[GenericDecoderSettings] = []

    @model_validator(mode="after")
    def _known_names(self) -> Self:
        generic = [decoder.name for decoder in self.generic]
        if len(generic) != len(set(generic)):
            raise ValueError("two generic decoders share a name")
        known = [*BUILT_IN_DECODERS, *generic]
        unknown = sorted(set(self.enabled) - set(known))
        if unknown:
            raise ValueError(f"unknown decoders {unknown}: known are {known}")
        for name in [*self.topics, *self.device_types]:
            if name not in BUILT_IN_DECODERS or name == "canonical":
                raise ValueError(f"{name!r} is not a built-in device decoder")
        return self


class Settings(BaseSettings):
    """Every setting of the daemon, with its default."""

    model_config = SettingsConfigDict(
        env_prefix="METERFLOW_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: MqttSettings = MqttSettings()
    storage: StorageSettings = StorageSettings()
    batch: BatchSettings = BatchSettings()
    ingest: IngestSettings = IngestSettings()
    log: LogSettings = LogSettings()
    devices: DevicesSettings = DevicesSettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()
    decoders: DecodersSettings = DecodersSettings()

    @model_validator(mode="after")
    def _window_exceeds_batch(self) -> Self:
        if self.mqtt.receive_maximum <= self.batch.max_rows:
            raise ValueError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must exceed "
                f"batch.max_rows ({self.batch.max_rows}), or batches can never fill"
            )
        return self


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:  # noqa: ANN401
    """Settings from `config_file`, the environment and `overrides` (highest first: flags).

    `overrides` takes dotted keys, e.g. `{"mqtt.url": "mqtt://host:1883"}`.
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if config_file is not None:
                sources += (TomlConfigSettingsSource(settings_cls, toml_file=config_file),)
            return sources

    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    try:
        loaded = _Loaded(**nested)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings:\n{exc}") from exc
    return loaded
