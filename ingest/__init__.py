"""Ingest: from MQTT messages to batches the storage writer commits, acknowledged after it.

The stages, in the order a message passes them (docs/architecture.md):

- `ingest.source`: the MQTT connection, which delivers messages and takes their acks;
- `ingest.decode`: each message to readings, availability changes or a dead letter;
- `ingest.batch`: decoded messages gathered into batches by size and age;
- `ingest.pipeline`: the loop that runs them, hands batches to the writer and acks.

Importing `ingest` loads no MQTT code: `ingest.source` and `ingest.pipeline` are imported
by the daemon alone.
"""

from ingest.batch import Batch, Batcher
from ingest.decode import CanonicalDecoder, Router, build_decoders
from ingest.decode.clock import ReceiveClock
from ingest.decode.payload import SmartMeterPayload, SolarPanelPayload
from ingest.decode.topics import DeviceTopic, TopicScheme
from ingest.delivery import Delivery
from ingest.errors import (
    BrokerError,
    ConfigError,
    DecodeError,
    FieldError,
    IngestError,
    PayloadError,
    ProtocolError,
)
from ingest.settings import (
    BatchSettings,
    DecodersSettings,
    GenericDecoderSettings,
    GenericField,
    IngestSettings,
    MqttSettings,
)

__all__ = [
    "Batch",
    "BatchSettings",
    "Batcher",
    "BrokerError",
    "CanonicalDecoder",
    "ConfigError",
    "DecodeError",
    "DecodersSettings",
    "Delivery",
    "DeviceTopic",
    "FieldError",
    "GenericDecoderSettings",
    "GenericField",
    "IngestError",
    "IngestSettings",
    "MqttSettings",
    "PayloadError",
    "ProtocolError",
    "ReceiveClock",
    "Router",
    "SmartMeterPayload",
    "SolarPanelPayload",
    "TopicScheme",
    "build_decoders",
]
