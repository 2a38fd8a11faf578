"""The MQTT source: a persistent-session subscriber whose messages we acknowledge ourselves.

aiomqtt 2.x acknowledges every QoS 1 message as soon as it arrives and has no public
switch to stop it (aiomqtt issue #345). Its paho client does have one, `manual_ack`; this
module is the one place that reaches into aiomqtt for it, which is why pyproject.toml pins
aiomqtt to the versions this adapter is tested with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.errors import BrokerError
from ingest.settings import MqttSettings


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker delivered it, with what it takes to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttSource:
    """Connects with a fixed client id and `clean_start=False`, so that the broker keeps our
    subscription and every unacknowledged message while we are away, and redelivers them.

    The broker sends at most `receive_maximum` unacknowledged messages: that window is
    what stops reading when the writer falls behind, and what bounds our memory.
    """

    def __init__(self, settings: MqttSettings, subscription: str) -> None:
        self._settings = settings
        self._subscription = subscription
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Self:
        settings = self._settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.session_expiry_s
        properties.ReceiveMaximum = settings.receive_maximum
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            keepalive=settings.keepalive_s,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
        )
        # Before connecting: a resumed session redelivers as soon as the broker accepts us.
        _paho(client).manual_ack_set(on=True)
        try:
            await client.__aenter__()
            await client.subscribe(self._subscription, qos=1)
        except aiomqtt.MqttError as exc:
            await self._close(client)
            raise BrokerError(f"cannot subscribe: {exc}", url=settings.url) from exc
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            if exc is None:
                await self._settle(self._client)
            await self._close(self._client)
            self._client = None

    async def _settle(self, client: aiomqtt.Client) -> None:
        """Make sure the broker has processed our last acknowledgements before we leave.

        Closing a socket that still has unread data in it (the broker keeps sending up to the
        in-flight window) makes the kernel reset the connection, and the broker then drops
        the PUBACKs it had not read yet. The broker handles one client's packets in order, so
        once it answers a request sent after them, they have all been processed. SUBSCRIBE
        to the filter we already hold is such a request that changes nothing.
        """
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.subscribe(self._subscription, options=options, timeout=5)

    @staticmethod
    async def _close(client: aiomqtt.Client) -> None:
        try:
            await client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            # Already gone: nothing left to disconnect, and the session stays with the broker.
            return

    @property
    def queued(self) -> int:
        """Messages received from the broker and not yet taken by `deliveries`."""
        return len(self._connected().messages)

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Every message in arrival order, until the connection is lost."""
        client = self._connected()
        try:
            async for message in client.messages:
                payload = message.payload
                yield Delivery(
                    topic=message.topic.value,
                    payload=payload if isinstance(payload, bytes) else str(payload).encode(),
                    mid=message.mid,
                    qos=message.qos,
                )
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"connection lost: {exc}", url=self._settings.url) from exc

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge deliveries, in the order given, once what they carried is committed."""
        paho = _paho(self._connected())
        for delivery in deliveries:
            if delivery.qos:
                # On a dropped connection this does nothing, and the broker redelivers.
                paho.ack(delivery.mid, delivery.qos)

    def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("MqttSource used outside its async with block")
        return self._client


def _paho(client: aiomqtt.Client) -> Any:  # noqa: ANN401
    """The paho client inside aiomqtt: the one private attribute this adapter relies on."""
    return client._client  # noqa: SLF001
