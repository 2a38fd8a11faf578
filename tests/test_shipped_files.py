"""The files meterflow ships for operators stay consistent with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_the_shipped_broker_config_and_points_the_daemon_at_it() -> None:
    """docker-compose.yml parses, mounts config/mosquitto.conf and wires the daemon to it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mosquitto", "meterflow"} <= set(services)
    mounts = [volume.split(":")[0] for volume in services["mosquitto"]["volumes"]]
    assert "./config/mosquitto.conf" in mounts
    for mount in mounts:
        if mount.startswith("./"):
            assert (ROOT / mount).exists(), mount
    assert services["meterflow"]["environment"]["METERFLOW_MQTT__URL"] == "mqtt://mosquitto:1883"
    assert (ROOT / "Dockerfile").exists()


def test_broker_config_sets_every_limit_that_decides_about_loss() -> None:
    """config/mosquitto.conf states the queue, persistence and inflight limits explicitly."""
    settings = {
        line.split()[0]: line.split()[1]
        for line in (ROOT / "config" / "mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert settings["max_queued_messages"] == "0"
    assert int(settings["max_queued_bytes"]) > 0
    assert settings["persistence"] == "true"
    assert int(settings["autosave_interval"]) <= 60
    assert "persistent_client_expiration" in settings
