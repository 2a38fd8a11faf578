"""Ingest: the MQTT source, decoding, batching, the daemon and the CLI."""

from ingest.batcher import Batch, Batcher
from ingest.connection import Delivery
from ingest.daemon import Daemon
from ingest.decoder import CanonicalDecoder
from ingest.errors import BrokerError, ConfigError, IngestError
from ingest.mqtt import MqttSource
from ingest.payload import SmartMeterPayload, SolarPanelPayload
from ingest.publisher import Publisher
from ingest.settings import Settings, load_settings
from ingest.topics import TelemetryTopic, TopicScheme

__all__ = [
    "Batch",
    "Batcher",
    "BrokerError",
    "CanonicalDecoder",
    "ConfigError",
    "Daemon",
    "Delivery",
    "IngestError",
    "MqttSource",
    "Publisher",
    "Settings",
    "SmartMeterPayload",
    "SolarPanelPayload",
    "TelemetryTopic",
    "TopicScheme",
    "load_settings",
]
