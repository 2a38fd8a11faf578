"""The MQTT packets a QoS 1 subscriber sends and receives, as bytes, in MQTT 5 and 3.1.1.

Only what meterflow needs: it sends CONNECT, SUBSCRIBE, PUBACK, PINGREQ, DISCONNECT and
(QoS 0) PUBLISH, and
reads CONNACK, SUBACK, PUBLISH, PINGRESP and DISCONNECT. Every function here is pure, so
the wire format is tested without a socket (tests/test_packets.py).

MQTT 3.1.1 (protocol level 4) is MQTT 5 without properties, with other CONNACK codes and
no DISCONNECT from the broker; its CONNACK codes are read as their MQTT 5 equivalents, so
the rest of the subscriber knows one set.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from ingest.errors import ProtocolError


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


# Property identifiers (MQTT 5 §2.2.2.2) and the shape of their values.
SESSION_EXPIRY_INTERVAL = 0x11
SERVER_KEEP_ALIVE = 0x13
RECEIVE_MAXIMUM = 0x21
REASON_STRING = 0x1F
# DISCONNECT reason: another client connected with this client id.
TAKEN_OVER = 0x8E
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_SHAPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip

# Reason codes a broker may give for refusing or ending a connection (MQTT 5 §3.2.2.2).
REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x95: "packet too large",
    0x97: "quota exceeded", 0x9C: "use another server", 0x9D: "server moved",
    0x9F: "connection rate exceeded",
}  # fmt: skip


MQTT5 = 5
MQTT311 = 4
UNSUPPORTED_PROTOCOL_VERSION = 0x84
# What `mqtt.protocol` tries, in order, and what each protocol level is called.
VERSIONS = {"5": (MQTT5,), "3.1.1": (MQTT311,), "auto": (MQTT5, MQTT311)}
PROTOCOL_NAMES = {MQTT5: "5", MQTT311: "3.1.1"}
# MQTT 3.1.1 CONNACK return codes (§3.2.2.3), as MQTT 5 reason codes.
V311_CONNACK = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


def reason_text(code: int, detail: str | None = None) -> str:
    """`not authorized (0x87)`, with the broker's own words appended when it sent some."""
    text = f"{REASONS.get(code, 'reason')} (0x{code:02x})"
    return f"{text}: {detail}" if detail else text


PINGREQ = bytes([PacketType.PINGREQ << 4, 0])
DISCONNECT = bytes([PacketType.DISCONNECT << 4, 0])
_PUBACK_HEADER = bytes([PacketType.PUBACK << 4, 2])
MAX_REMAINING_LENGTH = 268_435_455


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes | bytearray | memoryview, start: int) -> tuple[int, int] | None:
    """(value, position after it), or None when `data` ends before the integer does."""
    value, shift, position = 0, 0, start
    while position < len(data):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 21:
            raise ProtocolError("variable byte integer longer than four bytes")
    return None


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _binary(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + encode_varint(len(body)) + body


def connect(
    client_id: str,
    *,
    keepalive: int,
    clean_start: bool,
    session_expiry: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
    version: int = MQTT5,
) -> bytes:
    """CONNECT; in MQTT 3.1.1 a session not started clean lasts as long as the broker keeps
    it, and the window (`receive_maximum`) is ours alone to keep."""
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = _utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == MQTT5:
        properties = struct.pack("!BIBH", SESSION_EXPIRY_INTERVAL, session_expiry,
                                 RECEIVE_MAXIMUM, receive_maximum)  # fmt: skip
        body += encode_varint(len(properties)) + properties
    body += _utf8(client_id)
    if username is not None:
        body += _utf8(username)
    if password is not None:
        body += _binary(password.encode())
    return _packet(PacketType.CONNECT, 0, body)


def publish_qos0(topic: str, payload: bytes, version: int = MQTT5) -> bytes:
    """PUBLISH at QoS 0, not retained: a request that needs no answer from the broker."""
    properties = b"\x00" if version == MQTT5 else b""
    return _packet(PacketType.PUBLISH, 0, _utf8(topic) + properties + payload)


RETAIN_SEND_ON_SUBSCRIBE = 0
RETAIN_SEND_IF_NEW = 1


def subscribe(
    packet_id: int, topic_filter: str, qos: int, retain_handling: int, version: int = MQTT5
) -> bytes:
    """SUBSCRIBE; MQTT 3.1.1 has no subscription options beyond the QoS."""
    if version == MQTT5:
        properties, options = b"\x00", qos | retain_handling << 4
    else:
        properties, options = b"", qos
    body = struct.pack("!H", packet_id) + properties + _utf8(topic_filter) + bytes([options])
    return _packet(PacketType.SUBSCRIBE, 0b0010, body)


def pubacks(packet_ids: list[int]) -> bytes:
    """PUBACKs (success, no properties) for many messages, ready for one write."""
    return b"".join(_PUBACK_HEADER + packet_id.to_bytes(2, "big") for packet_id in packet_ids)


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason_code: int
    server_keep_alive: int | None
    reason_string: str | None
    # How many QoS 1 messages the broker takes from us unacknowledged (65,535 if unsaid).
    receive_maximum: int = 65535


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    reason_codes: tuple[int, ...]


# Built for every message: a NamedTuple costs a fifth of a frozen dataclass to build.
class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int
    reason_string: str | None


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


Incoming = Connack | Suback | Publish | Disconnect | Pingresp


def split_packet(buffer: bytearray, start: int) -> tuple[int, int, int] | None:
    """(first byte, body start, body end) of the packet at `start`, if it is complete."""
    if start >= len(buffer):
        return None
    length = decode_varint(buffer, start + 1)
    if length is None:
        return None
    remaining, body = length
    end = body + remaining
    if end > len(buffer):
        return None
    return buffer[start], body, end


def parse(first: int, body: memoryview, version: int = MQTT5) -> Incoming:
    """The packet whose first byte is `first` and whose body is `body`."""
    try:
        return _parse(first, body, version)
    except IndexError as exc:
        raise ProtocolError(f"packet type {first >> 4} ends early") from exc


def _parse(first: int, body: memoryview, version: int) -> Incoming:
    kind = first >> 4
    if kind == PacketType.PUBLISH:
        return _publish(first, body) if version == MQTT5 else _publish_v311(first, body)
    if kind == PacketType.CONNACK:
        return _connack(body) if version == MQTT5 else _connack_v311(body)
    if kind == PacketType.SUBACK:
        return _suback(body) if version == MQTT5 else Suback(_u16(body), tuple(body[2:]))
    if kind == PacketType.PINGRESP:
        return Pingresp()
    if kind == PacketType.DISCONNECT and version == MQTT5:
        return _disconnect(body)
    raise ProtocolError(f"unexpected packet type {kind} from the broker")


def _u16(body: memoryview) -> int:
    return int.from_bytes(body[0:2], "big")


def _publish_v311(first: int, body: memoryview) -> Publish:
    qos = first >> 1 & 0x03
    if qos > 1:
        raise ProtocolError(f"PUBLISH at QoS {qos} on a QoS 1 subscription")
    position = 2 + _u16(body)
    topic = bytes(body[2:position]).decode(errors="replace")
    packet_id = 0
    if qos:
        packet_id = int.from_bytes(body[position : position + 2], "big")
        position += 2
    return Publish(topic, bytes(body[position:]), qos, packet_id, bool(first & 0x08),
                   bool(first & 0x01))  # fmt: skip


def _connack_v311(body: memoryview) -> Connack:
    if len(body) != 2:
        raise ProtocolError("MQTT 3.1.1 CONNACK is not two bytes")
    code = body[1]
    return Connack(bool(body[0] & 0x01), V311_CONNACK.get(code, 0x80 if code else 0), None, None)


def _publish(first: int, body: memoryview) -> Publish:
    qos = first >> 1 & 0x03
    if qos > 1:
        raise ProtocolError(f"PUBLISH at QoS {qos} on a QoS 1 subscription")
    topic_length = int.from_bytes(body[0:2], "big")
    position = 2 + topic_length
    topic = bytes(body[2:position]).decode(errors="replace")
    packet_id = 0
    if qos:
        packet_id = int.from_bytes(body[position : position + 2], "big")
        position += 2
    decoded = decode_varint(body, position)
    if decoded is None:
        raise ProtocolError("PUBLISH properties run past the packet")
    properties_length, position = decoded
    position += properties_length
    if position > len(body):
        raise ProtocolError("PUBLISH properties run past the packet")
    return Publish(topic, bytes(body[position:]), qos, packet_id, bool(first & 0x08),
                   bool(first & 0x01))  # fmt: skip


def _connack(body: memoryview) -> Connack:
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    if len(body) == 2 and body[1]:
        # An MQTT 5 CONNACK always has properties: this is an MQTT 3.1.1 broker refusing,
        # most often the protocol version (return code 1).
        return _connack_v311(body)
    properties = _properties(body, 2) if len(body) > 2 else {}
    keep_alive = properties.get(SERVER_KEEP_ALIVE)
    reason = properties.get(REASON_STRING)
    receive_maximum = properties.get(RECEIVE_MAXIMUM, 65535)
    return Connack(
        session_present=bool(body[0] & 0x01),
        reason_code=body[1],
        server_keep_alive=keep_alive if isinstance(keep_alive, int) else None,
        reason_string=reason if isinstance(reason, str) else None,
        receive_maximum=receive_maximum if isinstance(receive_maximum, int) else 65535,
    )


def _suback(body: memoryview) -> Suback:
    packet_id = int.from_bytes(body[0:2], "big")
    decoded = decode_varint(body, 2)
    if decoded is None:
        raise ProtocolError("SUBACK too short")
    properties_length, position = decoded
    return Suback(packet_id, tuple(body[position + properties_length :]))


def _disconnect(body: memoryview) -> Disconnect:
    if not body:
        return Disconnect(0, None)
    properties = _properties(body, 1) if len(body) > 1 else {}
    reason = properties.get(REASON_STRING)
    return Disconnect(body[0], reason if isinstance(reason, str) else None)


def _properties(body: memoryview, start: int) -> dict[int, int | str | bytes]:
    decoded = decode_varint(body, start)
    if decoded is None:
        raise ProtocolError("properties length runs past the packet")
    length, position = decoded
    end = position + length
    if end > len(body):
        raise ProtocolError("properties run past the packet")
    found: dict[int, int | str | bytes] = {}
    while position < end:
        identifier = body[position]
        shape = _PROPERTY_SHAPES.get(identifier)
        if shape is None:
            raise ProtocolError(f"unknown property 0x{identifier:02x}")
        value, position = _property_value(body, position + 1, shape)
        if value is not None:
            found[identifier] = value
    if position != end:
        raise ProtocolError("properties run past their stated length")
    return found


def _property_value(
    body: memoryview, position: int, shape: int
) -> tuple[int | str | bytes | None, int]:
    """One property's value and the position after it; None for user properties (skipped)."""
    if shape == _BYTE:
        return body[position], position + 1
    if shape in {_U16, _U32}:
        size = 2 if shape == _U16 else 4
        return int.from_bytes(body[position : position + size], "big"), position + size
    if shape == _VARINT:
        decoded = decode_varint(body, position)
        if decoded is None:
            raise ProtocolError("property runs past the packet")
        return decoded
    size = int.from_bytes(body[position : position + 2], "big")
    raw = bytes(body[position + 2 : position + 2 + size])
    position += 2 + size
    if shape == _PAIR:
        return None, position + 2 + int.from_bytes(body[position : position + 2], "big")
    return (raw.decode(errors="replace") if shape == _UTF8 else raw), position
