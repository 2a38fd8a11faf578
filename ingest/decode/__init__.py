"""Decoders: from (topic, payload, receive time) to readings, availability or dead letters.

canonical is meterflow's own JSON; tasmota, shelly and zigbee2mqtt speak what those
devices publish; generic decoders are described in the configuration. `Router` picks the
decoder by topic pattern.
"""

from ingest.decode.base import Decoded, Decoder, Route
from ingest.decode.canonical import CanonicalDecoder
from ingest.decode.clock import ReceiveClock
from ingest.decode.common import availability
from ingest.decode.enabled import build_decoders
from ingest.decode.generic import GenericDecoder
from ingest.decode.patterns import TopicPattern
from ingest.decode.router import Router
from ingest.decode.shelly import ShellyDecoder
from ingest.decode.tasmota import TasmotaDecoder
from ingest.decode.zigbee2mqtt import Zigbee2MqttDecoder

__all__ = [
    "CanonicalDecoder",
    "Decoded",
    "Decoder",
    "GenericDecoder",
    "ReceiveClock",
    "Route",
    "Router",
    "ShellyDecoder",
    "TasmotaDecoder",
    "TopicPattern",
    "Zigbee2MqttDecoder",
    "availability",
    "build_decoders",
]
