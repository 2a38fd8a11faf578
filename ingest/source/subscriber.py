"""The default receive path: our own MQTT 5 subscriber, one connection per `async with`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from ingest.delivery import Delivery
from ingest.errors import BrokerError
from ingest.settings import MqttSettings
from ingest.source.connection import Connection


class MqttSource:
    """Our own subscriber (ingest/source/connection.py), with the settings' connection."""

    def __init__(self, settings: MqttSettings, subscriptions: Sequence[str]) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._connection: Connection | None = None

    async def __aenter__(self) -> Self:
        settings = self._settings
        try:
            connection = await Connection.open(
                settings.host,
                settings.port,
                client_id=settings.client_id,
                keepalive=settings.keepalive_s,
                session_expiry=settings.session_expiry_s,
                receive_maximum=settings.receive_maximum,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                tls=settings.ssl_context(),
            )
        except (OSError, TimeoutError) as exc:
            raise BrokerError(f"cannot connect: {exc or 'timed out'}", url=settings.url) from exc
        try:
            for subscription in self._subscriptions:
                await connection.subscribe(subscription)
        except (BrokerError, TimeoutError) as exc:
            await connection.close()
            raise BrokerError(f"cannot subscribe: {exc}", url=settings.url) from exc
        self._connection = connection
        return self

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

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries, in the order given, once what they carried is committed."""
        self._connected().ack(deliveries)

    def _connected(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("MqttSource used outside its async with block")
        return self._connection
