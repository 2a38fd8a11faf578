"""A QoS 1 publisher that keeps many messages in flight and can wait for every PUBACK.

It drives the simulator and the benchmark, where one await per PUBACK would measure the
publisher instead of the daemon.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any, Literal, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.errors import BrokerError


class Publisher:
    """Publishes from the calling thread while paho's own thread handles the network.

    At most `max_outstanding` messages wait for their PUBACK at once: paho numbers messages
    with 16-bit ids and refuses a publish whose id is still outstanding.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "",
        max_inflight: int = 1000,
        max_outstanding: int = 20000,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        protocol: Literal["5", "3.1.1"] = "5",
    ) -> None:
        self._url = f"mqtt://{host}:{port}"
        self._host, self._port = host, port
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if protocol == "5" else paho.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._lock = threading.Condition()
        self._connected = False
        self._max_outstanding = max_outstanding
        self.published = 0
        self.acknowledged = 0

    def _on_connect(self, *_args: Any) -> None:  # noqa: ANN401
        with self._lock:
            self._connected = True
            self._lock.notify_all()

    def _on_publish(self, *_args: Any) -> None:  # noqa: ANN401
        with self._lock:
            self.acknowledged += 1
            if self.published - self.acknowledged in {0, self._max_outstanding - 1}:
                self._lock.notify_all()

    def __enter__(self) -> Self:
        try:
            self._client.connect(self._host, self._port)
        except OSError as exc:
            raise BrokerError(f"cannot connect: {exc}", url=self._url) from exc
        self._client.loop_start()
        with self._lock:
            if not self._lock.wait_for(lambda: self._connected, timeout=10):
                raise BrokerError("no CONNACK within 10 s", url=self._url)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        with self._lock:
            self._lock.wait_for(lambda: self.published - self.acknowledged < self._max_outstanding)
            self.published += 1
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # While reconnecting, paho keeps a QoS 1 message and sends it once connected again.
        queued = qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN
        if info.rc != paho.MQTT_ERR_SUCCESS and not queued:
            raise BrokerError(f"publish failed: {paho.error_string(info.rc)}", url=self._url)

    def wait_acknowledged(self, timeout: float = 60.0) -> None:
        """Block until the broker has acknowledged everything published so far."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.acknowledged < self.published:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerError(
                        f"{self.published - self.acknowledged} messages unacknowledged "
                        f"after {timeout} s",
                        url=self._url,
                    )
                self._lock.wait(remaining)
