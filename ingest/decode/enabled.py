"""The decoders a configuration switches on, in the order their topics are tried."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ingest.decode import shelly, tasmota, zigbee2mqtt
from ingest.decode.base import Decoder
from ingest.decode.canonical import CanonicalDecoder
from ingest.decode.generic import GenericDecoder
from ingest.decode.shelly import ShellyDecoder
from ingest.decode.tasmota import TasmotaDecoder
from ingest.decode.zigbee2mqtt import Zigbee2MqttDecoder
from ingest.settings import DecodersSettings, IngestSettings
from storage import DeviceType

DeviceDecoderFactory = Callable[[Sequence[str], DeviceType, IngestSettings], Decoder]

_DEVICE_DECODERS: dict[str, tuple[DeviceDecoderFactory, tuple[str, ...]]] = {
    "tasmota": (TasmotaDecoder, tasmota.TOPICS),
    "shelly": (ShellyDecoder, shelly.TOPICS),
    "zigbee2mqtt": (Zigbee2MqttDecoder, zigbee2mqtt.TOPICS),
}


def build_decoders(
    config: DecodersSettings, limits: IngestSettings, topic_prefix: str
) -> list[Decoder]:
    """The decoders `config` switches on; the canonical one listens under `topic_prefix`."""
    generic = {g.name: g for g in config.generic}
    decoders: list[Decoder] = []
    for name in config.enabled:
        if name == "canonical":
            decoders.append(CanonicalDecoder(topic_prefix, limits))
        elif name in _DEVICE_DECODERS:
            cls, topics = _DEVICE_DECODERS[name]
            device_type = config.device_types.get(name, "smart_meter")
            decoders.append(cls(config.topics.get(name, topics), device_type, limits))
        else:
            decoders.append(GenericDecoder(generic[name], limits))
    return decoders
