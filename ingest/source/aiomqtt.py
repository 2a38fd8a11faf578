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
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.delivery import Delivery
from ingest.errors import BrokerError, ConnectRefusedError, SessionTakenOverError
from ingest.settings import MqttSettings
from ingest.source import packets
from ingest.source.base import connect_in_a_version
from ingest.source.packets import MQTT5, PROTOCOL_NAMES

# Retained messages only when the subscription is new, as on the default path.
_OPTIONS = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)


class AiomqttSource:
    def __init__(self, settings: MqttSettings, subscriptions: Sequence[str]) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._client: aiomqtt.Client | None = None
        self._messages: AsyncIterator[aiomqtt.Message] | None = None
        self._unacked = 0
        self._version = MQTT5

    async def __aenter__(self) -> Self:
        settings = self._settings
        client, version = await connect_in_a_version(settings, self._connect)
        self._version = version
        try:
            for subscription in self._subscriptions:
                if version == MQTT5:
                    await client.subscribe(subscription, options=_OPTIONS)
                else:
                    # paho reads no subscription options in MQTT 3.1.1, only the QoS.
                    await client.subscribe(subscription, qos=1)
        except aiomqtt.MqttError as exc:
            await _close(client)
            raise BrokerError(f"cannot subscribe: {exc}", url=settings.url) from exc
        self._client = client
        self._messages = aiter(client.messages)
        return self

    async def _connect(self, version: int, timeout_s: float) -> aiomqtt.Client:
        """A client connected in `version`, or BrokerError (ConnectRefusedError if the
        broker refused)."""
        client = self._client_for(version, timeout_s)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            # aiomqtt leaves the socket of a failed connection (a refused TLS handshake)
            # open; paho still holds it.
            socket = _paho(client).socket()
            if socket is not None:
                socket.close()
            code = _reason_code(exc)
            if code is not None:
                raise ConnectRefusedError(_refusal(exc), code, url=self._settings.url) from exc
            raise BrokerError(_refusal(exc), url=self._settings.url) from exc
        return client

    def _client_for(self, version: int, timeout_s: float) -> aiomqtt.Client:
        settings = self._settings
        properties = None
        if version == MQTT5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = settings.session_expiry_s
            properties.ReceiveMaximum = settings.receive_maximum
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            protocol=aiomqtt.ProtocolVersion(version),
            # MQTT 3.1.1 keeps the session with clean_session; paho refuses clean_start there.
            clean_start=False if version == MQTT5 else MQTT_CLEAN_START_FIRST_ONLY,
            clean_session=None if version == MQTT5 else False,
            properties=properties,
            keepalive=settings.keepalive_s,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            tls_context=settings.ssl_context(),
            timeout=timeout_s,
        )
        # Before connecting: a resumed session redelivers as soon as the broker accepts us.
        _paho(client).manual_ack_set(on=True)
        return client

    @property
    def protocol(self) -> str:
        """The MQTT version spoken on this connection: "5" or "3.1.1"."""
        return PROTOCOL_NAMES[self._version]

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
            if self._version == MQTT5:
                await client.subscribe(self._subscriptions[0], options=options, timeout=5)
            else:
                # At QoS 1 again: paho ignores options in MQTT 3.1.1, and QoS 0 would
                # downgrade the session's subscription.
                await client.subscribe(self._subscriptions[0], qos=1, timeout=5)

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

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0, not retained."""
        client, _ = self._connected()
        try:
            await client.publish(topic, payload, qos=0)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"connection lost: {exc}", url=self._settings.url) from exc

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


def _reason_code(exc: aiomqtt.MqttError) -> int | None:
    """The broker's refusal of CONNECT, as an MQTT 5 reason code; None if it did not refuse
    (a lost connection's paho error codes are other numbers)."""
    if not isinstance(exc, MqttConnectError):
        return None
    code = getattr(exc, "rc", None)
    code = getattr(code, "value", code)
    if not isinstance(code, int) or code == 0:
        return None
    # paho gives MQTT 3.1.1's CONNACK return codes as they are.
    return code if code >= 0x80 else packets.V311_CONNACK.get(code)


def _refusal(exc: aiomqtt.MqttError) -> str:
    """A failed connection in the words the default path uses, reason code included."""
    code = _reason_code(exc)
    if code is not None:
        return f"connection refused: {packets.reason_text(code)}"
    return f"cannot connect: {exc}"


async def _close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        # Already gone: nothing left to disconnect, and the session stays with the broker.
        await client.__aexit__(None, None, None)


def _paho(client: aiomqtt.Client) -> Any:  # noqa: ANN401
    """The paho client inside aiomqtt: the one private attribute this path relies on."""
    return client._client  # noqa: SLF001
