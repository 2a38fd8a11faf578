"""The decoders a configuration switches on, in the order their topics are tried."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ingest.decoders import shelly, tasmota, zigbee2mqtt
from ingest.decoders.base import Decoder
from ingest.decoders.canonical import CanonicalDecoder
from ingest.decoders.generic import GenericDecoder
from ingest.decoders.shelly import ShellyDecoder
from ingest.decoders.tasmota import TasmotaDecoder
from ingest.decoders.zigbee2mqtt import Zigbee2MqttDecoder
from ingest.settings import IngestSettings, Settings
from ingest.topics import TopicScheme
from storage import DeviceType

DeviceDecoderFactory = Callable[[Sequence[str], DeviceType, IngestSettings], Decoder]

_DEVICE_DECODERS: dict[str, tuple[DeviceDecoderFactory, tuple[str, ...]]] = {
    "tasmota": (TasmotaDecoder, tasmota.TOPICS),
    "shelly": (ShellyDecoder, shelly.TOPICS),
    "zigbee2mqtt": (Zigbee2MqttDecoder, zigbee2mqtt.TOPICS),
}


def build_decoders(settings: Settings) -> list[Decoder]:
    config, limits = settings.decoders, settings.ingest
    generic = {g.name: g for g in config.generic}
    decoders: list[Decoder] = []
    for name in config.enabled:
        if name == "canonical":
            decoders.append(CanonicalDecoder(TopicScheme(settings.mqtt.topic_prefix), limits))
        elif name in _DEVICE_DECODERS:
            cls, topics = _DEVICE_DECODERS[name]
            device_type = config.device_types.get(name, "smart_meter")
            decoders.append(cls(config.topics.get(name, topics), device_type, limits))
        else:
            decoders.append(GenericDecoder(generic[name], limits))
    return decoders
