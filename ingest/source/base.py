"""What the pipeline needs of a receive path, and the choice between the two there are.

The daemon connects with a fixed client id and `clean_start=False`, so that the broker keeps
its subscription and every unacknowledged message while it is away, and redelivers them.
Two receive paths implement `Source`, chosen by `mqtt.client`: our own subscriber
(ingest/source/subscriber.py, the default) and aiomqtt (ingest/source/aiomqtt.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

import structlog

from ingest.delivery import Delivery
from ingest.errors import BrokerError, ConnectRefusedError
from ingest.settings import MqttSettings
from ingest.source.connection import HANDSHAKE_TIMEOUT_S
from ingest.source.packets import PROTOCOL_NAMES, UNSUPPORTED_PROTOCOL_VERSION, VERSIONS

log = structlog.get_logger("meterflow.source")
T = TypeVar("T")
# An MQTT 5 broker answers CONNECT in milliseconds; one that hangs up on it (RabbitMQ
# before 3.13) is found out this soon and asked again in 3.1.1.
QUICK_HANDSHAKE_S = 3.0


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


# The protocol level each broker accepted under "auto", so that "auto" finds it once per
# process: a broker that hangs up on MQTT 5 without a word costs the aiomqtt path a
# handshake timeout. A version that was set, not found, teaches nothing.
_ACCEPTED: dict[tuple[str, int], int] = {}


def _versions_to_try(settings: MqttSettings) -> tuple[int, ...]:
    """The protocol levels to try, in order: the one this broker accepted last, first."""
    versions = VERSIONS[settings.protocol]
    known = _ACCEPTED.get((settings.host, settings.port))
    if known is None or known not in versions:
        return versions
    return (known, *(v for v in versions if v != known))


def refuses_version(exc: BrokerError) -> bool:
    """Whether a failed handshake may succeed in another MQTT version: the broker said the
    version is not supported, or hung up without a CONNACK (NATS and RabbitMQ 3.10 do)."""
    if isinstance(exc, ConnectRefusedError):
        return exc.reason_code == UNSUPPORTED_PROTOCOL_VERSION
    return True


async def connect_in_a_version(
    settings: MqttSettings, connect: Callable[[int, float], Awaitable[T]]
) -> tuple[T, int]:
    """`connect(version, handshake_timeout_s)` in each version `mqtt.protocol` allows until
    the broker takes one; (what it returned, the version). Both receive paths connect so.
    A version with another to try after it gets a short handshake: paho notices a broker
    hanging up before CONNACK only when the handshake times out."""
    versions = _versions_to_try(settings)
    for version in versions[:-1]:
        try:
            connected = await connect(version, QUICK_HANDSHAKE_S)
        except BrokerError as exc:
            if not refuses_version(exc):
                raise
            log.info(
                "broker refused this MQTT version, trying the next",
                refused=PROTOCOL_NAMES[version],
                error=str(exc),
            )  # the error names the broker
        else:
            _ACCEPTED[(settings.host, settings.port)] = version
            return connected, version
    version = versions[-1]
    connected = await connect(version, HANDSHAKE_TIMEOUT_S)
    if len(versions) > 1:
        _ACCEPTED[(settings.host, settings.port)] = version
    return connected, version


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
