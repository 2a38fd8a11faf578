"""The default receive path: our own MQTT subscriber, one connection per `async with`.

`mqtt.protocol = "auto"` connects with MQTT 5 and, when the broker refuses that version,
at once again with MQTT 3.1.1 (ingest/source/base.py, `connect_in_a_version`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from ingest.delivery import Delivery
from ingest.errors import BrokerError, ConnectRefusedError
from ingest.settings import MqttSettings
from ingest.source.base import connect_in_a_version
from ingest.source.connection import Connection
from ingest.source.packets import PROTOCOL_NAMES


class MqttSource:
    """Our own subscriber (ingest/source/connection.py), with the settings' connection."""

    def __init__(self, settings: MqttSettings, subscriptions: Sequence[str]) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._connection: Connection | None = None

    async def __aenter__(self) -> Self:
        settings = self._settings
        connection, _ = await connect_in_a_version(settings, self._open)
        try:
            for subscription in self._subscriptions:
                await connection.subscribe(subscription)
        except (BrokerError, TimeoutError) as exc:
            await connection.close()
            raise BrokerError(f"cannot subscribe: {exc}", url=settings.url) from exc
        self._connection = connection
        return self

    async def _open(self, version: int, timeout_s: float) -> Connection:
        settings = self._settings
        try:
            return await Connection.open(
                settings.host,
                settings.port,
                client_id=settings.client_id,
                keepalive=settings.keepalive_s,
                session_expiry=settings.session_expiry_s,
                receive_maximum=settings.receive_maximum,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                tls=settings.ssl_context(),
                version=version,
                timeout_s=timeout_s,
            )
        except ConnectRefusedError as exc:
            raise ConnectRefusedError(str(exc), exc.reason_code, url=settings.url) from exc
        except BrokerError as exc:
            raise BrokerError(str(exc), url=settings.url) from exc
        except (OSError, TimeoutError) as exc:
            raise BrokerError(f"cannot connect: {exc or 'timed out'}", url=settings.url) from exc

    @property
    def protocol(self) -> str:
        """The MQTT version spoken on this connection: "5" or "3.1.1"."""
        return PROTOCOL_NAMES[self._connected().version]

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return self._connected().unacked

    async def take(self) -> list[Delivery]:
        """The deliveries received since the last call, in arrival order (at least one)."""
        try:
            return await self._connected().take()
        except BrokerError as exc:
            raise BrokerError(str(exc), url=self._settings.url) from exc

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0, not retained."""
        try:
            self._connected().publish(topic, payload)
        except BrokerError as exc:
            raise BrokerError(str(exc), url=self._settings.url) from exc

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries, in the order given, once what they carried is committed."""
        self._connected().ack(deliveries)

    def _connected(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("MqttSource used outside its async with block")
        return self._connection
