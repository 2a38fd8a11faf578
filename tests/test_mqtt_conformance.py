"""The MQTT 5.0 normative statements that bind a QoS 1 subscriber, one test each.

Statement numbers are the OASIS MQTT Version 5.0 specification's. Statements on the
server's side, on QoS 2, on publishing, on UNSUBSCRIBE and on AUTH do not apply to
meterflow's subscriber and are not listed. One deliberate deviation is pinned as well. The
Keep Alive statements are tested against a real Mosquitto, in a few seconds of real time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
from pathlib import Path

import pytest

from ingest.delivery import Delivery
from ingest.errors import BrokerError, ProtocolError
from ingest.source import packets
from ingest.source.connection import Connection, SubscriberProtocol
from tests.mosquitto import Mosquitto, require_mosquitto


def connect_fields(packet: bytes) -> dict[str, object]:
    """The CONNECT packet's header fields and payload, read independently of the encoder."""
    first, (length, body_start) = packet[0], packets.decode_varint(packet, 1) or (0, 0)
    body = packet[body_start:]
    assert len(body) == length
    name_length = struct.unpack_from("!H", body)[0]
    name = body[2 : 2 + name_length]
    position = 2 + name_length
    version, flags = body[position], body[position + 1]
    keepalive = struct.unpack_from("!H", body, position + 2)[0]
    properties_length, position = packets.decode_varint(body, position + 4) or (0, 0)
    position += properties_length
    payload = []
    while position < len(body):
        size = struct.unpack_from("!H", body, position)[0]
        payload.append(bytes(body[position + 2 : position + 2 + size]))
        position += 2 + size
    return {
        "type": first >> 4, "fixed_flags": first & 0x0F, "name": name, "version": version,
        "flags": flags, "keepalive": keepalive, "payload": payload,
    }  # fmt: skip


def meterflow_connect(
    username: str | None = None, password: str | None = None
) -> dict[str, object]:
    return connect_fields(
        packets.connect(
            "meterflow-1",
            keepalive=30,
            clean_start=False,
            session_expiry=600,
            receive_maximum=100,
            username=username,
            password=password,
        )
    )


def test_mqtt_3_1_2_1_and_3_1_2_2_protocol_name_mqtt_version_5() -> None:
    """[MQTT-3.1.2-1] The protocol name is the UTF-8 string "MQTT"; version 5 (3.1.2.2)."""
    fields = meterflow_connect()
    assert (fields["type"], fields["fixed_flags"]) == (1, 0)
    assert (fields["name"], fields["version"]) == (b"MQTT", 5)


def test_mqtt_3_1_2_3_reserved_connect_flag_is_zero() -> None:
    """[MQTT-3.1.2-3] The reserved bit 0 of the Connect Flags is 0."""
    for credentials in ({}, {"username": "u"}, {"username": "u", "password": "p"}):
        flags = meterflow_connect(**credentials)["flags"]
        assert isinstance(flags, int)
        assert flags & 0x01 == 0


def test_mqtt_3_1_3_3_client_identifier_is_the_first_payload_field() -> None:
    """[MQTT-3.1.3-3] The Client Identifier is present and first in the payload."""
    payload = meterflow_connect(username="u", password="p")["payload"]
    assert payload == [b"meterflow-1", b"u", b"p"]


@pytest.mark.parametrize(
    ("credentials", "flag_bits", "fields"),
    [
        ({}, 0x00, 1),
        ({"username": "u"}, 0x80, 2),
        ({"username": "u", "password": "p"}, 0xC0, 3),
    ],
)
def test_mqtt_3_1_2_18_to_21_user_name_and_password_flags_match_the_payload(
    credentials: dict[str, str], flag_bits: int, fields: int
) -> None:
    """[MQTT-3.1.2-18..21] A user name or password is in the payload exactly when flagged."""
    connect = meterflow_connect(**credentials)
    flags = connect["flags"]
    assert isinstance(flags, int)
    assert flags & 0xC0 == flag_bits
    assert len(connect["payload"]) == fields  # type: ignore[arg-type]


def test_mqtt_3_8_1_1_subscribe_fixed_header_flags_are_0010() -> None:
    """[MQTT-3.8.1-1] Bits 3..0 of SUBSCRIBE's fixed header are 0,0,1,0."""
    packet = packets.subscribe(7, "meterflow/+/+/telemetry", 1, packets.RETAIN_SEND_IF_NEW)
    assert packet[0] == 0x82


def test_mqtt_3_8_3_5_reserved_subscription_option_bits_are_zero() -> None:
    """[MQTT-3.8.3-5] Bits 6 and 7 of the Subscription Options byte are 0."""
    for retain_handling in (packets.RETAIN_SEND_ON_SUBSCRIBE, packets.RETAIN_SEND_IF_NEW):
        options = packets.subscribe(7, "a/b", 1, retain_handling)[-1]
        assert options & 0xC0 == 0
        assert options & 0x03 == 1


async def test_mqtt_2_2_1_3_subscribe_packet_identifiers_are_non_zero() -> None:
    """[MQTT-2.2.1-3] Each SUBSCRIBE carries a non-zero Packet Identifier, 1 to 65535."""
    connection = Connection(SubscriberProtocol(window=10), keepalive=30, version=5)
    ids = [next(connection._packet_ids) for _ in range(65536)]  # noqa: SLF001
    assert 0 not in ids
    assert sorted(set(ids)) == list(range(1, 65536))


def test_mqtt_2_2_1_5_and_3_4_2_1_puback_echoes_the_packet_identifier() -> None:
    """[MQTT-2.2.1-5] A PUBACK carries the PUBLISH's Packet Identifier; success in 2 bytes.

    3.4.2.1: Reason Code and properties may be left out for success, Remaining Length 2.
    """
    assert packets.pubacks([0x1234]) == b"\x40\x02\x12\x34"


def test_mqtt_4_6_0_2_pubacks_go_out_in_the_order_the_publishes_came() -> None:
    """[MQTT-4.6.0-2] PUBACKs are sent in the order the QoS 1 PUBLISHes were received."""
    received = [Delivery("t", b"", mid, 1) for mid in (9, 3, 65535, 1)]
    written = packets.pubacks([d.mid for d in received])
    assert [int.from_bytes(written[i + 2 : i + 4], "big") for i in range(0, 16, 4)] == [
        9,
        3,
        65535,
        1,
    ]


def test_mqtt_3_12_and_3_14_1_1_pingreq_and_disconnect_are_well_formed() -> None:
    """PINGREQ is 0xC0 0x00 (3.12.1); DISCONNECT's reserved bits are 0 [MQTT-3.14.1-1]."""
    assert packets.PINGREQ == b"\xc0\x00"
    assert packets.DISCONNECT == b"\xe0\x00"


def test_mqtt_1_5_5_1_variable_byte_integers_use_the_fewest_bytes() -> None:
    """[MQTT-1.5.5-1] A Variable Byte Integer is encoded in the fewest bytes possible."""
    for value, size in ((127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_152, 4)):
        assert len(packets.encode_varint(value)) == size


def test_mqtt_4_13_1_1_a_malformed_packet_ends_the_connection() -> None:
    """[MQTT-4.13.1-1] A malformed packet is a protocol error, which closes the connection."""
    qos_3 = memoryview(b"\x00\x01t\x00\x01\x00")
    with pytest.raises(ProtocolError):
        packets.parse(0x36, qos_3)


def test_deviation_from_mqtt_1_5_4_1_an_ill_formed_utf8_topic_is_kept_not_fatal() -> None:
    """Deliberate: [MQTT-1.5.4-1] makes ill-formed UTF-8 a Malformed Packet, to disconnect on.

    The broker would redeliver the same message to the next connection, for ever, and stop
    ingestion. The topic is decoded with replacement characters instead; the router then
    turns the message into a dead letter, and the daemon goes on. Mosquitto refuses such
    topics from publishers, so this only guards against a broker that does not.
    """
    body = memoryview(b"\x00\x02\xff\xfe\x00\x05\x00payload")
    publish = packets.parse(0x32, body)
    assert isinstance(publish, packets.Publish)
    assert (publish.topic, publish.packet_id, publish.payload) == ("\ufffd\ufffd", 5, b"payload")


# Keep Alive, against a real Mosquitto: these take a few seconds of real time each.


@pytest.mark.mqtt
@pytest.mark.own_subscriber
async def test_mqtt_3_2_2_21_and_3_1_2_20_server_keep_alive_is_used_and_pings_keep_us_on(
    tmp_path: Path,
) -> None:
    """[MQTT-3.2.2-21] The Server Keep Alive replaces ours; [MQTT-3.1.2-20] with nothing
    else to send, PINGREQs go out within it.

    Mosquitto's max_keepalive makes it answer our 60 s with 10 s: a PINGRESP arriving
    after 5 idle seconds answers a PINGREQ sent on the broker's clock, not ours.
    """
    require_mosquitto()
    with Mosquitto(tmp_path / "mosquitto", extra_config=["max_keepalive 10"]) as broker:
        connection = await Connection.open(
            "127.0.0.1", broker.port, client_id="keepalive-1", keepalive=60,
            session_expiry=0, receive_maximum=10,
        )  # fmt: skip
        protocol = connection._protocol  # noqa: SLF001
        try:
            connected_at = protocol.last_received
            await asyncio.sleep(6.5)
            assert protocol.last_received - connected_at > 4.5
            await connection.subscribe("keepalive/still-here")
        finally:
            await connection.close()


@pytest.mark.mqtt
@pytest.mark.own_subscriber
async def test_mqtt_3_1_2_10_a_broker_that_stops_answering_pings_is_given_up_on(
    tmp_path: Path,
) -> None:
    """3.1.2.10: no PINGRESP within a reasonable time (here twice the Keep Alive) and the
    client closes the connection: the daemon then reconnects instead of waiting for ever.

    The broker is frozen with SIGSTOP, so its socket stays open but nothing comes back.
    """
    require_mosquitto()
    with Mosquitto(tmp_path / "mosquitto") as broker:
        connection = await Connection.open(
            "127.0.0.1", broker.port, client_id="keepalive-2", keepalive=1,
            session_expiry=0, receive_maximum=10,
        )  # fmt: skip
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(10):
                with pytest.raises(BrokerError, match="silent"):
                    await connection.take()
        finally:
            os.kill(broker.pid, signal.SIGCONT)
            await connection.close()


async def test_a_take_cancelled_at_a_stop_leaves_no_task_behind() -> None:
    """The receiver is cancelled while it waits for deliveries (a graceful stop): the
    waiter it started goes with it, rather than being destroyed pending at loop close."""
    protocol = SubscriberProtocol(window=10)
    taking = asyncio.create_task(protocol.take())
    await asyncio.sleep(0)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t for t in others if not t.done()] == []
