"""The ingest package's settings: the broker, batching, payload limits and decoders.

The application (meterflow/settings.py) composes these sections with the storage and
partition ones into the whole configuration.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ingest.decode.units import Measure, factor
from storage import DataType, DeviceType, UnknownDevices


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodicPublish(_Section):
    """A message meterflow publishes (QoS 0) every `interval_s` while connected: some
    device families send nothing until asked, e.g. a Victron GX device (Venus OS >= 3.20)
    until something publishes to R/<portal id>/keepalive, and again within 60 s."""

    topic: Annotated[str, Field(min_length=1, pattern=r"^[^#+]+$")]
    payload: str = ""
    interval_s: Annotated[float, Field(gt=0)] = 30.0


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    # The receive path: "meterflow", our own MQTT 5 subscriber (fastest; stops reading
    # when its window is full), or "aiomqtt" (docs/performance.md compares them).
    client: Literal["meterflow", "aiomqtt"] = "meterflow"
    # "auto": MQTT 5, and MQTT 3.1.1 when the broker refuses 5 (NATS, RabbitMQ before
    # 3.13, many device gateways).
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
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
    # [[mqtt.publish_every]] tables: topic, payload, interval_s.
    publish_every: list[PeriodicPublish] = Field(default_factory=list)

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


class BatchSettings(_Section):
    # Messages per batch (a message may carry several readings, or none).
    max_messages: Annotated[int, Field(ge=1, le=60000)] = 5000
    # Short enough for the publish-to-commit latency target (bench.latency,
    # docs/performance.md), long enough that batches fill at high rates.
    max_delay_ms: Annotated[int, Field(ge=1)] = 50

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:  # noqa: ANN401  (whatever the sources gave)
        """`max_rows`, the name before, is still read from files and the environment."""
        if isinstance(data, dict) and "max_rows" in data:
            if "max_messages" in data:
                raise ValueError(
                    "batch.max_rows is the old name of batch.max_messages: set only one of them"
                )
            data = {**data, "max_messages": data["max_rows"]}
            del data["max_rows"]
        return data


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


BUILT_IN_DECODERS = ("canonical", "tasmota", "shelly", "zigbee2mqtt")


class GenericField(_Section):
    """How one field of a device family maps onto a reading."""

    measure: Measure
    unit: str
    # Energy only: a counter (kWh since some start) rather than energy per interval.
    cumulative: bool = False
    # consumption or production; by default what the decoder's device type implies.
    kind: DataType | None = None
    # Decimals to keep of the value as sent: float32 artefacts (64.699996948242188) go.
    round: Annotated[int, Field(ge=0, le=12)] | None = None
    # Power (or interval energy) whose sign says the direction, as a grid meter's does:
    # a negative value is production (export), a positive one consumption. Batteries sign
    # either way: Victron's negative is discharge, evcc's positive (positive_is_production).
    negative_is_production: bool = False
    positive_is_production: bool = False

    @model_validator(mode="after")
    def _known_unit(self) -> Self:
        factor(self.measure, self.unit)
        if self.cumulative and self.measure != "energy":
            raise ValueError("only an energy field can be cumulative")
        for signed in ("negative_is_production", "positive_is_production"):
            if getattr(self, signed) and (
                self.measure not in {"power", "energy"} or self.cumulative or self.kind
            ):
                raise ValueError(f"{signed} is for a power or interval energy field without a kind")
        if self.negative_is_production and self.positive_is_production:
            raise ValueError("set one of negative_is_production and positive_is_production")
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
    # What an availability topic's values mean when they are codes: {"1" = true, "0" = false}.
    availability_values: dict[str, bool] = {}
    # With a {field} level: the dotted path to the number when each message is a JSON
    # object ({"value": 210} for "value"); a null there, or an empty message, is "no value"
    # and is skipped (counted as ignored), not a dead letter.
    value_path: str | None = None
    # A topic under this family's subscriptions that no pattern maps: a dead letter, or
    # (broad subscriptions such as N/#) ignored and counted.
    unmatched: Literal["dead_letter", "ignore"] = "dead_letter"
    # One number per topic: a device's values arriving within this many milliseconds of
    # the first become one reading (0: one reading per message). See ingest/merge.py.
    merge_window_ms: Annotated[int, Field(ge=0, le=10_000)] = 0

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
