"""TLS with verified certificates, client certificates and passwords, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import gc
import shutil
import subprocess
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ingest.decode.topics import TopicScheme
from meterflow.daemon import Daemon
from meterflow.publisher import Publisher
from meterflow.settings import Settings
from tests.helpers import RECEIVE_PATH, make_settings, payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto, mosquitto_binary

pytestmark = pytest.mark.mqtt

PASSWORD = "s3cret-Pa55"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all EC P-256."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=meterflow test CA", cwd=directory)  # fmt: skip
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=meterflow {name}", cwd=directory)  # fmt: skip
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto that speaks only TLS, wants a client certificate and a password."""
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    if mosquitto_binary() is None or mosquitto_passwd is None or shutil.which("openssl") is None:
        pytest.skip(
            "mosquitto, mosquitto_passwd and openssl are needed (scripts/setup installs them)"
        )
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    passwords = certs / "passwords"
    subprocess.run(
        [mosquitto_passwd, "-b", "-c", str(passwords), "meterflow", PASSWORD],
        check=True, capture_output=True,
    )  # fmt: skip
    extra = [
        f"cafile {certs / 'ca.crt'}",
        f"certfile {certs / 'server.crt'}",
        f"keyfile {certs / 'server.key'}",
        "require_certificate true",
        f"password_file {passwords}",
        "allow_anonymous false",
    ]
    with Mosquitto(tmp_path / "mosquitto", extra_config=extra) as mosquitto:
        yield mosquitto


def tls_settings(
    broker: Mosquitto, db_path: Path, prefix: str, *, password: str = PASSWORD, trusted: bool = True
) -> Settings:
    certs = broker.directory.parent / "certs"
    return make_settings(
        f"mqtts://127.0.0.1:{broker.port}",
        db_path,
        prefix,
        **{
            "mqtt.username": "meterflow",
            "mqtt.password": password,
            "mqtt.tls_ca_file": certs / "ca.crt" if trusted else None,
            "mqtt.tls_cert_file": certs / "client.crt",
            "mqtt.tls_key_file": certs / "client.key",
        },
    )


async def test_daemon_ingests_over_tls_with_client_certificate_and_password(
    tls_broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """With the CA, a client certificate and the password, readings flow over TLS."""
    settings = tls_settings(tls_broker, db_path, prefix)
    mqtt = settings.mqtt
    async with running_daemon(settings) as daemon:
        with Publisher(
            mqtt.host, mqtt.port, username="meterflow", password=PASSWORD, tls=mqtt.ssl_context()
        ) as publisher:
            publisher.publish(
                TopicScheme(prefix).telemetry("smart_meter", "m"), payload("m", recent())
            )
            await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 1, what="the reading over TLS")


async def refused(settings: Settings) -> list[MutableMapping[str, Any]]:
    """Run the daemon until it has failed to connect twice; return what it logged."""
    daemon = Daemon(settings)
    with capture_logs() as logs:
        task = asyncio.create_task(daemon.run())
        await wait_until(lambda: daemon.stats.reconnects >= 2, what="two failed attempts")
        daemon.request_stop()
        async with asyncio.timeout(10):
            await task
    assert not daemon.connected
    return logs


async def test_wrong_password_is_refused_with_the_reason_and_never_logged(
    tls_broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """A bad password is a refusal the log explains; no log line contains a password."""
    wrong = "not-the-Pa55word"
    logs = await refused(tls_settings(tls_broker, db_path, prefix, password=wrong))
    refusals = [str(entry["refusal"]) for entry in logs if "refusal" in entry]
    # Mosquitto answers "not authorized" where MQTT 5 would also allow "bad user name or
    # password"; said once, with the fix.
    assert len(refusals) == 1, logs
    assert "connection refused: not authorized (0x87)" in refusals[0]
    assert "check mqtt.username and its ACL" in refusals[0]
    assert not any(wrong in repr(entry) or PASSWORD in repr(entry) for entry in logs)


async def test_broker_certificate_from_an_unknown_ca_is_refused(
    tls_broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """Without the broker's CA the certificate does not verify and no connection is made."""
    with paho_may_leak_the_refused_socket():
        logs = await refused(tls_settings(tls_broker, db_path, prefix, trusted=False))
    errors = [str(entry.get("error")) for entry in logs if "error" in entry]
    assert any("CERTIFICATE_VERIFY_FAILED" in error for error in errors), errors


@contextmanager
def paho_may_leak_the_refused_socket() -> Iterator[None]:
    """On the aiomqtt path, paho drops the socket of a failed TLS handshake unclosed.

    Not ours to fix; collected here so the ResourceWarning cannot land in a later test.
    On our own path a leaked socket still fails the test.
    """
    if RECEIVE_PATH == "meterflow":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto with passwords for the daemon and two devices and the shipped topic ACL."""
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    if mosquitto_binary() is None or mosquitto_passwd is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed (scripts/setup installs them)")
    passwords = tmp_path / "passwords"
    for number, user in enumerate(("meterflow", "meter-1", "meter-2")):
        create = ["-c"] if number == 0 else []
        subprocess.run(
            [mosquitto_passwd, "-b", *create, str(passwords), user, f"{user}-{PASSWORD}"],
            check=True,
            capture_output=True,
        )
    acl = Path(__file__).resolve().parent.parent / "config" / "mosquitto-acl.conf"
    extra = [f"password_file {passwords}", f"acl_file {acl}", "allow_anonymous false"]
    with Mosquitto(tmp_path / "mosquitto", extra_config=extra) as mosquitto:
        yield mosquitto


async def test_the_shipped_acl_lets_a_device_publish_only_under_its_own_id(
    acl_broker: Mosquitto, db_path: Path
) -> None:
    """meter-1 may publish its own telemetry and status; what it sends as meter-2 goes nowhere."""
    settings = make_settings(
        acl_broker.url,
        db_path,
        "meterflow",
        **{"mqtt.username": "meterflow", "mqtt.password": f"meterflow-{PASSWORD}"},
    )
    scheme = TopicScheme("meterflow")
    async with running_daemon(settings) as daemon:
        with Publisher(
            "127.0.0.1", acl_broker.port, username="meter-1", password=f"meter-1-{PASSWORD}"
        ) as device:
            device.publish(scheme.telemetry("smart_meter", "meter-2"), payload("meter-2", recent()))
            device.publish(scheme.telemetry("smart_meter", "meter-1"), payload("meter-1", recent()))
            device.publish(scheme.status("smart_meter", "meter-2"), b"offline")
            device.publish(scheme.status("smart_meter", "meter-1"), b"online")
            await asyncio.to_thread(device.wait_acknowledged)
        await wait_until(lambda: daemon.stats.received >= 2, what="meter-1's two messages")
        await asyncio.sleep(0.3)
    assert (daemon.stats.received, daemon.stats.stored, daemon.stats.statuses) == (2, 1, 1)
