"""What the pipeline needs of a receive path, and the choice between the two there are.

The daemon connects with a fixed client id and `clean_start=False`, so that the broker keeps
its subscription and every unacknowledged message while it is away, and redelivers them.
Two receive paths implement `Source`, chosen by `mqtt.client`: our own subscriber
(ingest/source/subscriber.py, the default) and aiomqtt (ingest/source/aiomqtt.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ingest.delivery import Delivery
from ingest.settings import MqttSettings
from ingest.source.packets import VERSIONS


class Source(Protocol):
    """What the pipeline needs of a receive path, entered once per broker connection.

    Entering connects and subscribes; leaving disconnects after the last acknowledgements
    reached the broker. Failures of the broker or the connection raise BrokerError.
    """

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        ...

    @property
    def protocol(self) -> str:
        """The MQTT version spoken on this connection: "5" or "3.1.1"."""
        ...

    async def take(self) -> list[Delivery]:
        """The deliveries received since the last call, in arrival order (at least one)."""
        ...

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0, not retained (`mqtt.publish_every`)."""
        ...

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries, in the order given, once what they carried is committed."""
        ...


# The protocol level each broker accepted, so that "auto" finds it once per process: a
# broker that hangs up on MQTT 5 without a word costs the aiomqtt path a handshake timeout.
_ACCEPTED: dict[tuple[str, int], int] = {}


def versions_to_try(settings: MqttSettings) -> tuple[int, ...]:
    """The protocol levels to try, in order: the one this broker accepted last, first."""
    versions = VERSIONS[settings.protocol]
    known = _ACCEPTED.get((settings.host, settings.port))
    if known is None or known not in versions:
        return versions
    return (known, *(v for v in versions if v != known))


def accepted(settings: MqttSettings, version: int) -> None:
    _ACCEPTED[(settings.host, settings.port)] = version


def open_source(
    settings: MqttSettings, subscriptions: Sequence[str]
) -> AbstractAsyncContextManager[Source]:
    """The receive path `settings.client` names, not yet connected."""
    if settings.client == "aiomqtt":
        # Imported on demand: the default path does not need aiomqtt loaded.
        from ingest.source.aiomqtt import AiomqttSource  # noqa: PLC0415

        return AiomqttSource(settings, subscriptions)
    from ingest.source.subscriber import MqttSource  # noqa: PLC0415

    return MqttSource(settings, subscriptions)
