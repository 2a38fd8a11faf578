"""The two reference consumers the daemon is measured against.

`aiomqtt-count`: a bare aiomqtt client that only counts (the client library's ceiling).
`naive-paho`: paho, acknowledging on receipt, one INSERT and one COMMIT per message, with
SQLite's default journal and synchronous settings.

Both resume a persistent session (`bench.ingest` primes it), print `ready <unix time>` once
connected and `done <unix time>` after the last expected message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def session_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    return properties


async def count_with_aiomqtt(port: int, client_id: str, topic: str, expect: int) -> None:
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=session_properties(),
    ) as client:
        print(f"ready {time.time()}", flush=True)
        if expect == 0:
            await client.subscribe(topic, qos=1)
            return
        seen = 0
        async for _ in client.messages:
            seen += 1
            if seen == expect:
                break
    print(f"done {time.time()}", flush=True)


def naive_paho(port: int, client_id: str, expect: int, db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS readings (device_id TEXT NOT NULL, recorded_at TEXT NOT NULL,"
        " energy REAL NOT NULL, power REAL NOT NULL, UNIQUE (device_id, recorded_at))"
    )
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    seen = 0

    def on_message(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal seen
        document = json.loads(message.payload)
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO readings VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (document["device_id"], document["ts"], document["energy_kwh"], document["power_kw"]),
        )
        conn.execute("COMMIT")
        seen += 1
        if seen == expect:
            client.disconnect()

    client.on_message = on_message
    client.on_connect = lambda *_args: print(f"ready {time.time()}", flush=True)
    client.connect("127.0.0.1", port, clean_start=False, properties=session_properties())
    client.loop_forever()
    print(f"done {time.time()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["aiomqtt-count", "naive-paho"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="0: only subscribe")
    parser.add_argument("--db", default="")
    args = parser.parse_args()
    if args.kind == "aiomqtt-count" or args.expect == 0:
        asyncio.run(count_with_aiomqtt(args.port, args.client_id, args.topic, args.expect))
    else:
        naive_paho(args.port, args.client_id, args.expect, args.db)


if __name__ == "__main__":
    main()
