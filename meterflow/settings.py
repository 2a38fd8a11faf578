"""Settings: a TOML file, overridden by METERFLOW_* variables, overridden by flags.

Nested keys map to variables with a double underscore: `[mqtt] url` is
`METERFLOW_MQTT__URL`. Each package owns the sections of its own part (ingest/settings.py,
storage/settings.py, partitions/settings.py); this module adds the application's own
(logging, device status checks, the metrics endpoint) and composes them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest.errors import ConfigError
from ingest.settings import BatchSettings, DecodersSettings, IngestSettings, MqttSettings
from partitions.settings import RetentionSettings
from storage import DeviceType
from storage.counters import DEFAULT_MAX_POWER_KW
from storage.prices import Prices
from storage.settings import (
    AnalyticsSettings,
    BackupSettings,
    PrivacySettings,
    StorageSettings,
)
from storage.tariffs import CarbonSettings, Tariff, check_tariffs

DEFAULT_EXPECTED_INTERVAL_S: dict[DeviceType, float] = dict.fromkeys(get_args(DeviceType), 60.0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    # The most power a device of each type can measure, in kW: a counter's energy over an
    # interval beyond it times the interval is implausible (storage/counters.py). A
    # device's own, from `meterflow devices register --max-power-kw`, comes first.
    max_power_kw: dict[DeviceType, Annotated[float, Field(gt=0)]] = DEFAULT_MAX_POWER_KW

    @field_validator("expected_interval_s", mode="after")
    @classmethod
    def _every_type_has_an_interval(
        cls, intervals: dict[DeviceType, float]
    ) -> dict[DeviceType, float]:
        # Setting one type's interval must not leave the others without one.
        return {**DEFAULT_EXPECTED_INTERVAL_S, **intervals}

    @field_validator("max_power_kw", mode="after")
    @classmethod
    def _every_type_has_a_power(cls, powers: dict[DeviceType, float]) -> dict[DeviceType, float]:
        return {**DEFAULT_MAX_POWER_KW, **powers}


class MetricsSettings(_Section):
    # /metrics, /healthz and /readyz over HTTP; off unless a port is given.
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    host: str = "127.0.0.1"


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
    analytics: AnalyticsSettings = AnalyticsSettings()
    privacy: PrivacySettings = PrivacySettings()
    backup: BackupSettings = BackupSettings()
    # What energy costs and the grid's carbon (storage/tariffs.py): `[[tariffs]]`, `[carbon]`.
    tariffs: list[Tariff] = Field(default_factory=list)
    carbon: CarbonSettings = CarbonSettings()

    @property
    def prices(self) -> Prices:
        return Prices(self.tariffs, self.carbon)

    @model_validator(mode="after")
    def _tariffs_apart(self) -> Self:
        check_tariffs(self.tariffs)
        return self

    @model_validator(mode="after")
    def _window_exceeds_batch(self) -> Self:
        if self.mqtt.receive_maximum <= self.batch.max_messages:
            raise ValueError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must exceed "
                f"batch.max_messages ({self.batch.max_messages}), or batches can never fill"
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
        raise ConfigError(_invalid(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{config_file} is not valid TOML: {exc} (config/meterflow.toml shows every key)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {config_file}: {exc}") from None
    return loaded


def _invalid(exc: ValidationError) -> str:
    """One line per setting refused: its dotted name, why, and what was given."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        reason = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = ""
        if isinstance(given, str | int | float) and repr(given) not in reason:
            shown = f" (given: {given!r})"
        lines.append(f"invalid setting {name}: {reason}{shown}")
    return "\n".join(lines)
