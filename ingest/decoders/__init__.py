"""Decoders: from (topic, payload, receive time) to readings, availability or dead letters.

canonical is meterflow's own JSON; tasmota, shelly and zigbee2mqtt speak what those
devices publish; generic decoders are described in the configuration. `Router` picks the
decoder by topic pattern.
"""

from ingest.decoders.base import Decoded, Decoder, Route
from ingest.decoders.canonical import CanonicalDecoder
from ingest.decoders.common import FieldError, availability
from ingest.decoders.generic import GenericDecoder
from ingest.decoders.patterns import TopicPattern
from ingest.decoders.registry import build_decoders
from ingest.decoders.router import Router
from ingest.decoders.shelly import ShellyDecoder
from ingest.decoders.tasmota import TasmotaDecoder
from ingest.decoders.zigbee2mqtt import Zigbee2MqttDecoder

__all__ = [
    "CanonicalDecoder",
    "Decoded",
    "Decoder",
    "FieldError",
    "GenericDecoder",
    "Route",
    "Router",
    "ShellyDecoder",
    "TasmotaDecoder",
    "TopicPattern",
    "Zigbee2MqttDecoder",
    "availability",
    "build_decoders",
]
