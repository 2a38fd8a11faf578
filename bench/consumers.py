"""The two reference consumers the daemon is measured against.

`aiomqtt-count`: a bare aiomqtt client that only counts (the client library's ceiling).
`naive-paho`: paho, acknowledging on receipt, one INSERT and one COMMIT per message, with
SQLite's default journal and synchronous settings.
Each prints `ready` once subscribed and `done <unix time>` after the last message.
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


async def count_with_aiomqtt(port: int, topic: str, expect: int) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-aiomqtt", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topic, qos=1)
        print("ready", flush=True)
        seen = 0
        async for _ in client.messages:
            seen += 1
            if seen == expect:
                break
    print(f"done {time.time()}", flush=True)


def naive_paho(port: int, topic: str, expect: int, db: str) -> None:
    # Naive on purpose: the sqlite3 module's defaults (rollback journal, synchronous FULL).
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS readings (device_id TEXT NOT NULL, recorded_at TEXT NOT NULL,"
        " energy REAL NOT NULL, power REAL NOT NULL, UNIQUE (device_id, recorded_at))"
    )
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=paho.MQTTv5)
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

    def on_connect(client: paho.Client, *_args: object) -> None:
        client.subscribe(topic, qos=1)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: print("ready", flush=True)
    client.connect("127.0.0.1", port)
    client.loop_forever()
    print(f"done {time.time()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["aiomqtt-count", "naive-paho"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--db", default="")
    args = parser.parse_args()
    if args.kind == "aiomqtt-count":
        asyncio.run(count_with_aiomqtt(args.port, args.topic, args.expect))
    else:
        naive_paho(args.port, args.topic, args.expect, args.db)


if __name__ == "__main__":
    main()
