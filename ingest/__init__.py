"""Ingest: the MQTT source, decoding, batching, the daemon and the CLI."""

from ingest.batcher import Batch, Batcher
from ingest.connection import Delivery
from ingest.daemon import Daemon
from ingest.decoders import CanonicalDecoder, Router, build_decoders
from ingest.errors import BrokerError, ConfigError, IngestError
from ingest.mqtt import MqttSource
from ingest.payload import SmartMeterPayload, SolarPanelPayload
from ingest.publisher import Publisher
from ingest.settings import Settings, load_settings
from ingest.topics import DeviceTopic, TopicScheme

__all__ = [
    "Batch",
    "Batcher",
    "BrokerError",
    "CanonicalDecoder",
    "ConfigError",
    "Daemon",
    "Delivery",
    "DeviceTopic",
    "IngestError",
    "MqttSource",
    "Publisher",
    "Router",
    "Settings",
    "SmartMeterPayload",
    "SolarPanelPayload",
    "TopicScheme",
    "build_decoders",
    "load_settings",
]
