"""One paced publisher for bench.latency: readings stamped with the moment they are sent.

python -m bench.pace --port P --prefix X --rate 20000 --seconds 20 --offset 0

QoS 1 PUBLISH packets are built here and written straight to the socket, a few at a time,
within the broker's receive maximum. A paho publisher tops out near 5,000 messages/s
here and queues what it cannot send yet: its readings were stamped long before they left,
and the benchmark measured the publisher.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time
from datetime import UTC, datetime

from ingest.decode.topics import TopicScheme
from ingest.source.packets import Connack, PacketType, connect, encode_varint, parse, split_packet

# Messages written together before the pacer checks the clock again: 1 ms at 4,000/s.
BURST = 4
DEVICES = 5000


class RawPublisher:
    """A minimal MQTT 5 QoS 1 publisher on a blocking socket; it counts PUBACKs."""

    def __init__(self, port: int, client_id: str) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()
        self._socket.sendall(
            connect(client_id, keepalive=60, clean_start=True, session_expiry=0,
                    receive_maximum=65535)
        )  # fmt: skip
        connack = self._next_packet()
        if not isinstance(connack, Connack) or connack.reason_code:
            raise RuntimeError(f"broker refused the publisher: {connack!r}")
        self.window = connack.receive_maximum
        self.sent = 0
        self.acknowledged = 0

    def send(self, packets: list[bytes]) -> None:
        while self.sent - self.acknowledged + len(packets) > self.window:
            self._read(block=True)
        self._socket.sendall(b"".join(packets))
        self.sent += len(packets)
        self._read(block=False)

    def wait_acknowledged(self) -> None:
        while self.acknowledged < self.sent:
            self._read(block=True)

    def close(self) -> None:
        self._socket.sendall(bytes([PacketType.DISCONNECT << 4, 0]))
        self._socket.close()

    def _read(self, *, block: bool) -> None:
        try:
            chunk = self._socket.recv(65536, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not chunk:
            raise RuntimeError("broker closed the connection")
        self._buffer += chunk
        start = 0
        while (found := split_packet(self._buffer, start)) is not None:
            first, _, start = found
            if first >> 4 == PacketType.PUBACK:
                self.acknowledged += 1
        del self._buffer[:start]

    def _next_packet(self) -> object:
        while (found := split_packet(self._buffer, 0)) is None:
            self._buffer += self._socket.recv(65536)
        first, body, end = found
        packet = parse(first, memoryview(bytes(self._buffer[body:end])))
        del self._buffer[:end]
        return packet


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """A QoS 1 PUBLISH without properties; `topic` is already length-prefixed."""
    body = topic + struct.pack("!HB", packet_id, 0) + payload
    return b"\x32" + encode_varint(len(body)) + body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    # The daemon keeps timestamps to the millisecond: a device must not come round again
    # within one, even when the pacer catches up on a late start with a burst.
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--offset", type=int, default=0, help="first device number")
    args = parser.parse_args()
    scheme = TopicScheme(args.prefix)
    topics = []
    for n in range(args.devices):
        raw = scheme.telemetry("smart_meter", f"lat-{args.offset + n:05d}").encode()
        topics.append(struct.pack("!H", len(raw)) + raw)
    total = int(args.rate * args.seconds)
    publisher = RawPublisher(args.port, f"bench-pace-{args.offset}")
    started = time.monotonic()
    for first in range(0, total, BURST):
        due = started + first / args.rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        # Stamped as the burst is written: the daemon's lag histogram (commit time minus
        # ts) is then the publish-to-commit latency.
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        publisher.send(
            [
                publish_packet(
                    topics[seq % args.devices],
                    seq % 65535 + 1,
                    b'{"ts":"%s","energy_kwh":0.001,"power_kw":0.5,"seq":%d}' % (ts.encode(), seq),
                )
                for seq in range(first, min(first + BURST, total))
            ]
        )
    publisher.wait_acknowledged()
    elapsed = time.monotonic() - started
    publisher.close()
    print(f"sent {total} in {elapsed:.3f}", flush=True)


if __name__ == "__main__":
    main()
