"""The other receive path: aiomqtt (over paho), with acknowledgements left to us.

Selected by `mqtt.client = "aiomqtt"`. It keeps every delivery promise of the default
path (ack after commit and in order, persistent session, reconnects) with a
widely used client underneath. What it cannot do is stop reading its socket: Mosquitto
2.0.11 sends past our Receive Maximum once acknowledgements flow (tests/test_connection.py),
and aiomqtt queues whatever arrives, so memory is bounded by the broker's backlog rather
than by the window. README ("Design") has the measurements.

aiomqtt 2.x acknowledges every QoS 1 message on arrival and has no public switch to stop it
(aiomqtt issue #345); its paho client has one, `manual_ack`. This module is the one place
that reaches into aiomqtt for it, which is why pyproject.toml pins aiomqtt's major version.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.delivery import Delivery
from ingest.errors import BrokerError, SessionTakenOverError
from ingest.settings import MqttSettings
from ingest.source import packets
from ingest.source.connection import HANDSHAKE_TIMEOUT_S

# Retained messages only when the subscription is new, as on the default path.
_OPTIONS = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)


class AiomqttSource:
    def __init__(self, settings: MqttSettings, subscriptions: Sequence[str]) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._client: aiomqtt.Client | None = None
        self._messages: AsyncIterator[aiomqtt.Message] | None = None
        self._unacked = 0

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
            tls_context=settings.ssl_context(),
            timeout=HANDSHAKE_TIMEOUT_S,
        )
        # Before connecting: a resumed session redelivers as soon as the broker accepts us.
        _paho(client).manual_ack_set(on=True)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            # aiomqtt leaves the socket of a failed connection (a refused TLS handshake)
            # open; paho still holds it.
            socket = _paho(client).socket()
            if socket is not None:
                socket.close()
            raise BrokerError(_refusal(exc), url=settings.url) from exc
        try:
            for subscription in self._subscriptions:
                await client.subscribe(subscription, options=_OPTIONS)
        except aiomqtt.MqttError as exc:
            await _close(client)
            raise BrokerError(f"cannot subscribe: {exc}", url=settings.url) from exc
        self._client = client
        self._messages = aiter(client.messages)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if exc_type is None:
            await self._settle(client)
        await _close(client)

    async def _settle(self, client: aiomqtt.Client) -> None:
        """Make sure the broker has processed our last acknowledgements before we leave.

        Closing a socket that still holds unread data makes the kernel reset the
        connection, and the broker drops the PUBACKs it had not read yet. The broker
        handles one client's packets in order, so once it answers a request sent after
        them, they are all processed: SUBSCRIBE to a filter we hold changes nothing else.
        """
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.subscribe(self._subscriptions[0], options=options, timeout=5)

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return self._unacked

    async def take(self) -> list[Delivery]:
        """The deliveries received since the last call, in arrival order (at least one)."""
        client, messages = self._connected()
        try:
            taken = [_delivery(await anext(messages))]
            # Already queued, so each of these returns without waiting.
            taken.extend([_delivery(await anext(messages)) for _ in range(len(client.messages))])
        except aiomqtt.MqttError as exc:
            rc = getattr(exc, "rc", None)
            error = BrokerError
            if getattr(rc, "value", rc) == packets.TAKEN_OVER:
                error = SessionTakenOverError
            raise error(f"connection lost: {exc}", url=self._settings.url) from exc
        self._unacked += sum(1 for d in taken if d.qos)
        return taken

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries, in the order given, once what they carried is committed."""
        client, _ = self._connected()
        paho = _paho(client)
        for delivery in deliveries:
            if delivery.qos:
                self._unacked -= 1
                # On a dropped connection this does nothing, and the broker redelivers.
                paho.ack(delivery.mid, delivery.qos)

    def _connected(self) -> tuple[aiomqtt.Client, AsyncIterator[aiomqtt.Message]]:
        if self._client is None or self._messages is None:
            raise RuntimeError("AiomqttSource used outside its async with block")
        return self._client, self._messages


def _delivery(message: aiomqtt.Message) -> Delivery:
    payload = message.payload
    body = payload if isinstance(payload, bytes) else str(payload).encode()
    return Delivery(message.topic.value, body, message.mid, message.qos)


def _refusal(exc: aiomqtt.MqttError) -> str:
    """A failed connection in the words the default path uses, reason code included."""
    code = getattr(exc, "rc", None)
    code = getattr(code, "value", code)
    if isinstance(code, int) and code >= 0x80:
        return f"connection refused: {packets.reason_text(code)}"
    return f"cannot connect: {exc}"


async def _close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        # Already gone: nothing left to disconnect, and the session stays with the broker.
        await client.__aexit__(None, None, None)


def _paho(client: aiomqtt.Client) -> Any:  # noqa: ANN401
    """The paho client inside aiomqtt: the one private attribute this path relies on."""
    return client._client  # noqa: SLF001
