"""The MQTT 5 wire format of the packets a QoS 1 subscriber exchanges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import ProtocolError
from ingest.source import packets


@given(st.integers(min_value=0, max_value=packets.MAX_REMAINING_LENGTH))
def test_variable_byte_integers_round_trip(value: int) -> None:
    """Any remaining length encodes in one to four bytes and decodes back."""
    encoded = packets.encode_varint(value)
    assert 1 <= len(encoded) <= 4
    assert packets.decode_varint(b"\xaa" + encoded, 1) == (value, 1 + len(encoded))


def test_spec_examples_of_variable_byte_integers() -> None:
    """The boundary values from MQTT 5 §1.5.5."""
    assert packets.encode_varint(127) == b"\x7f"
    assert packets.encode_varint(128) == b"\x80\x01"
    assert packets.encode_varint(16_383) == b"\xff\x7f"
    assert packets.encode_varint(2_097_152) == b"\x80\x80\x80\x01"


def test_truncated_and_overlong_integers() -> None:
    """A varint cut short waits for more bytes; a fifth continuation byte is malformed."""
    assert packets.decode_varint(b"\x80", 0) is None
    with pytest.raises(ProtocolError):
        packets.decode_varint(b"\x80\x80\x80\x80\x01", 0)


def test_connect_asks_for_a_persistent_session_with_a_window() -> None:
    """CONNECT: MQTT 5, clean start off, session expiry and receive maximum, credentials."""
    data = packets.connect(
        "meterflow-1",
        keepalive=30,
        clean_start=False,
        session_expiry=3600,
        receive_maximum=10000,
        username="u",
        password="p",
    )
    assert data[0] == 0x10
    body = data[2:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC0  # username and password, clean start off
    assert body[8:10] == (30).to_bytes(2, "big")
    assert body[10:19] == b"\x08\x11\x00\x00\x0e\x10\x21\x27\x10"
    assert body[19:] == b"\x00\x0bmeterflow-1\x00\x01u\x00\x01p"


def test_subscribe_requests_qos1_and_retained_only_for_new_subscriptions() -> None:
    """SUBSCRIBE carries the reserved flags 0b0010 and options QoS 1, retain handling 1."""
    assert packets.subscribe(7, "m/#", 1, packets.RETAIN_SEND_IF_NEW) == (
        b"\x82\x09\x00\x07\x00\x00\x03m/#\x11"
    )


def test_pubacks_for_many_messages_are_one_buffer() -> None:
    """PUBACKs are concatenated four-byte packets, in the order given."""
    assert packets.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def parse_one(data: bytes) -> packets.Incoming:
    buffer = bytearray(data)
    found = packets.split_packet(buffer, 0)
    assert found is not None
    first, start, end = found
    assert end == len(buffer)
    return packets.parse(first, memoryview(buffer)[start:end])


def test_publish_with_properties_gives_topic_payload_and_packet_id() -> None:
    """Properties are skipped; topic, packet id, flags and payload come out intact."""
    topic = b"meterflow/smart_meter/m-1/telemetry"
    properties = b"\x01\x01"  # payload format indicator
    body = len(topic).to_bytes(2, "big") + topic + b"\x12\x34"
    body += bytes([len(properties)]) + properties + b'{"x":1}'
    publish = parse_one(bytes([0x3A]) + packets.encode_varint(len(body)) + body)
    assert publish == packets.Publish(
        topic.decode(), b'{"x":1}', qos=1, packet_id=0x1234, dup=True, retain=False
    )


def test_connack_reports_session_and_refusals() -> None:
    """CONNACK gives session present, the reason code, a server keep alive and a receive
    maximum (65,535 unless the broker says otherwise)."""
    assert parse_one(b"\x20\x06\x01\x00\x03\x13\x00\x3c") == packets.Connack(
        session_present=True, reason_code=0, server_keep_alive=60, reason_string=None
    )
    limited = parse_one(b"\x20\x06\x00\x00\x03\x21\x03\xe8")
    assert isinstance(limited, packets.Connack)
    assert limited.receive_maximum == 1000
    refused = parse_one(b"\x20\x03\x00\x87\x00")
    assert isinstance(refused, packets.Connack)
    assert refused.reason_code == 0x87


def test_suback_and_disconnect() -> None:
    """SUBACK returns its reason codes; a server DISCONNECT its reason."""
    assert parse_one(b"\x90\x04\x00\x07\x00\x01") == packets.Suback(7, (1,))
    assert parse_one(b"\xe0\x02\x8e\x00") == packets.Disconnect(0x8E, None)


def test_incomplete_packets_wait_for_more_bytes() -> None:
    """A packet whose body has not fully arrived is not split off yet."""
    assert packets.split_packet(bytearray(b"\x30\x10abc"), 0) is None
    assert packets.split_packet(bytearray(b""), 0) is None


def test_qos2_publish_and_unknown_packets_are_protocol_errors() -> None:
    """A QoS 2 PUBLISH on a QoS 1 subscription, or a packet a broker never sends, is refused."""
    with pytest.raises(ProtocolError):
        parse_one(b"\x34\x06\x00\x01t\x00\x01\x00")
    with pytest.raises(ProtocolError):
        parse_one(b"\x10\x00")


def test_a_property_cut_off_by_the_packet_end_is_a_protocol_error() -> None:
    """A CONNACK whose last property has no value left is malformed, not an IndexError."""
    with pytest.raises(ProtocolError):
        parse_one(b"\x20\x04\x00\x00\x01\x24")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_split_and_parse_or_raise_protocol_error(data: bytes) -> None:
    """Garbage from the socket never raises anything but ProtocolError."""
    buffer = bytearray(data)
    position = 0
    try:
        while (found := packets.split_packet(buffer, position)) is not None:
            first, start, position = found
            packets.parse(first, memoryview(buffer)[start:position])
    except ProtocolError:
        return


def test_reason_codes_read_as_words() -> None:
    """Refusals are explained in words, with the code and the broker's own text."""
    assert packets.reason_text(0x87) == "not authorized (0x87)"
    assert (
        packets.reason_text(0x8E, "another client") == "session taken over (0x8e): another client"
    )
    assert packets.reason_text(0xF0) == "reason (0xf0)"
