"""One MQTT connection (5, or 3.1.1) of a QoS 1 subscriber that acknowledges messages itself.

Written on `asyncio.Protocol` rather than taken from a client library for two reasons the
daemon's promises depend on:

- Acknowledgement is ours: a PUBACK goes out only when `ack` is called, after the commit.
- Flow control is ours: the broker may send at most `receive_maximum` unacknowledged
  messages, but Mosquitto 2.0.11 sends a whole window more for every PUBACK once acks
  flow (tests/test_connection.py shows it), and MQTT 3.1.1 has no such limit at all. When
  that many messages are unacknowledged, we hold further messages back unparsed and stop
  reading; TCP pushes back and the broker keeps the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections import deque
from typing import cast

from ingest.delivery import Delivery
from ingest.errors import (
    BrokerError,
    ConnectRefusedError,
    ProtocolError,
    SessionTakenOverError,
)
from ingest.source import packets

# How long CONNACK, SUBACK and the broker's goodbye may take before we give up on them.
HANDSHAKE_TIMEOUT_S = 10.0


class SubscriberProtocol(asyncio.Protocol):
    """Parses the broker's bytes into deliveries; the owner takes them with `take`."""

    def __init__(self, window: int, version: int = packets.MQTT5) -> None:
        self._window = window
        self._version = version
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ready: deque[Delivery] = deque()
        self._held: deque[tuple[int, bytes]] = deque()
        self._discarding = False
        self._unacked = 0
        self._paused = False
        self._wakeup = asyncio.Event()
        self._replies: dict[type[packets.Incoming], asyncio.Future[packets.Incoming]] = {}
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_received = asyncio.get_running_loop().time()

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged, whether taken or not."""
        return self._unacked

    @property
    def paused(self) -> bool:
        """Whether reading is paused because messages beyond the window are held back."""
        return self._paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has asyncio.Transport's methods without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.last_received = asyncio.get_running_loop().time()
        if self._discarding:
            return
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        """Parse what is buffered; hold back PUBLISHes past the window and stop reading.

        Control packets (SUBACK, PINGRESP, DISCONNECT) are handled at once, wherever they
        stand. A PUBLISH that would overfill the window is kept as raw bytes, in order,
        until acknowledgements make room: at most one socket read (256 KiB) of them, far
        cheaper than the Python objects a parsed message becomes.
        """
        buffer = self._buffer
        position = 0
        view = memoryview(buffer)
        try:
            while (found := packets.split_packet(buffer, position)) is not None:
                first, body, position = found
                if first >> 4 == packets.PacketType.PUBLISH and (
                    self._held or self._unacked >= self._window
                ):
                    self._held.append((first, bytes(view[body:position])))
                else:
                    self._handle(packets.parse(first, view[body:position], self._version))
        except ProtocolError as exc:
            view.release()
            self.fail(exc)
            return
        view.release()
        del buffer[:position]
        self._throttle()

    def _release_held(self) -> None:
        try:
            while self._held and self._unacked < self._window:
                first, body = self._held.popleft()
                self._handle(packets.parse(first, memoryview(body), self._version))
        except ProtocolError as exc:
            self.fail(exc)
            return
        self._throttle()

    def _throttle(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        # Only messages beyond the window stop reading. A window that is merely full does
        # not: the broker sends no more PUBLISHes then, and the control packets behind
        # them (SUBACK, PINGRESP) must still be read.
        full = bool(self._held)
        if full and not self._paused:
            transport.pause_reading()
            self._paused = True
        elif not full and self._paused:
            transport.resume_reading()
            self._paused = False

    def _handle(self, packet: packets.Incoming) -> None:
        if isinstance(packet, packets.Publish):
            self._ready.append(Delivery(packet.topic, packet.payload, packet.packet_id, packet.qos))
            if packet.qos:
                self._unacked += 1
            self._wakeup.set()
        elif isinstance(packet, packets.Disconnect):
            reason = packets.reason_text(packet.reason_code, packet.reason_string)
            error = BrokerError
            if packet.reason_code == packets.TAKEN_OVER:
                error = SessionTakenOverError
            self.fail(error(f"broker disconnected us: {reason}"))
        elif not isinstance(packet, packets.Pingresp):
            waiter = self._replies.pop(type(packet), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(packet)

    def expect(self, kind: type[packets.Incoming]) -> asyncio.Future[packets.Incoming]:
        """A future for the next packet of `kind` (CONNACK, SUBACK, PINGRESP)."""
        waiter: asyncio.Future[packets.Incoming] = asyncio.get_running_loop().create_future()
        self._replies[kind] = waiter
        return waiter

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise BrokerError("connection is closed")
        self._transport.write(data)

    def ack(self, deliveries: list[Delivery]) -> None:
        """One write of PUBACKs for every QoS 1 delivery, in the order given."""
        ids = [d.mid for d in deliveries if d.qos]
        if not ids:
            return
        self._unacked -= len(ids)
        if self._transport is None or self._transport.is_closing():
            # Lost already: the broker redelivers whatever we could not acknowledge.
            return
        self._transport.write(packets.pubacks(ids))
        if self._paused:
            self._release_held()

    async def take(self) -> list[Delivery]:
        """Every delivery received so far, waiting for at least one."""
        while not self._ready:
            if self._closed.done():
                self._closed.result()
            self._wakeup.clear()
            waiter = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait((waiter, self._closed), return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Also when the receiver is cancelled at a stop: no task left pending.
                waiter.cancel()
        taken = list(self._ready)
        self._ready.clear()
        return taken

    def fail(self, exc: BrokerError) -> None:
        """End the connection with `exc`, which every waiter then raises."""
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._replies.clear()
        if not self._closed.done():
            self._closed.set_exception(exc)
            # Retrieved by whoever waits; nobody waiting is not an error of its own.
            self._closed.exception()
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(BrokerError(f"connection lost: {exc or 'closed by the broker'}"))

    def discard_incoming(self) -> None:
        """On the way out: read and drop everything, so the socket can close without a reset.

        Nothing dropped here was acknowledged; the broker redelivers it next time.
        """
        self._discarding = True
        self._held.clear()
        self._buffer.clear()
        if self._paused and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False

    async def closed(self) -> None:
        with contextlib.suppress(BrokerError):
            await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Connection:
    """Connect, subscribe, keep alive; hand out deliveries; acknowledge; leave cleanly."""

    def __init__(self, protocol: SubscriberProtocol, keepalive: float, version: int) -> None:
        self._protocol = protocol
        self._keepalive = keepalive
        self.version = version
        self._packet_ids = itertools.cycle(range(1, 65536))
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        keepalive: int,
        session_expiry: int,
        receive_maximum: int,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        version: int = packets.MQTT5,
        timeout_s: float = HANDSHAKE_TIMEOUT_S,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, protocol = await loop.create_connection(
                lambda: SubscriberProtocol(receive_maximum, version), host, port, ssl=tls
            )
            connack = protocol.expect(packets.Connack)
            protocol.send(
                packets.connect(
                    client_id,
                    keepalive=keepalive,
                    clean_start=False,
                    session_expiry=session_expiry,
                    receive_maximum=receive_maximum,
                    username=username,
                    password=password,
                    version=version,
                )
            )
            reply = await connack
        assert isinstance(reply, packets.Connack)
        if reply.reason_code >= 0x80:
            protocol.close()
            reason = packets.reason_text(reply.reason_code, reply.reason_string)
            raise ConnectRefusedError(f"connection refused: {reason}", reply.reason_code)
        connection = cls(protocol, reply.server_keep_alive or keepalive, version)
        connection._pinger = asyncio.create_task(connection._keep_alive(), name="mqtt.keepalive")
        return connection

    async def subscribe(self, topic_filter: str) -> None:
        """Subscribe at QoS 1; retained messages only when the subscription is new."""
        packet_id = next(self._packet_ids)
        suback = self._protocol.expect(packets.Suback)
        self._protocol.send(
            packets.subscribe(packet_id, topic_filter, 1, packets.RETAIN_SEND_IF_NEW, self.version)
        )
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            reply = await suback
        assert isinstance(reply, packets.Suback)
        if not reply.reason_codes or reply.reason_codes[0] >= 0x80:
            raise BrokerError(f"subscription to {topic_filter!r} refused: {reply.reason_codes}")

    @property
    def unacked(self) -> int:
        return self._protocol.unacked

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0 (a keep-alive request a device family waits for)."""
        self._protocol.send(packets.publish_qos0(topic, payload, self.version))

    async def take(self) -> list[Delivery]:
        return await self._protocol.take()

    def ack(self, deliveries: list[Delivery]) -> None:
        self._protocol.ack(deliveries)

    async def _keep_alive(self) -> None:
        """PINGREQ at half the keepalive; a silent broker (while we read) is a lost one."""
        interval = self._keepalive / 2
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            protocol = self._protocol
            silent = loop.time() - protocol.last_received
            if not protocol.paused and silent > 2 * self._keepalive:
                protocol.fail(BrokerError(f"broker silent for {silent:.0f} s despite pings"))
                return
            protocol.send(packets.PINGREQ)

    async def close(self) -> None:
        """DISCONNECT, then read until the broker closes, so our last PUBACKs are processed.

        Closing a socket that still holds unread data makes the kernel reset the
        connection, and the broker would drop the PUBACKs it had not read yet.
        """
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        protocol = self._protocol
        with contextlib.suppress(BrokerError):
            protocol.discard_incoming()
            protocol.send(packets.DISCONNECT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await protocol.closed()
        protocol.close()
