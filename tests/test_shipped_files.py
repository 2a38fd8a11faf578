"""The files meterflow ships for operators stay consistent with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_two_daemons_on_postgres_behind_the_shipped_broker_config() -> None:
    """docker-compose.yml: the shipped mosquitto.conf, PostgreSQL, two distinct instances.

    This mirrors tests/test_scale_out.py, which starts the same topology from processes.
    """
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mosquitto", "postgres", "meterflow-1", "meterflow-2", "simulator"} <= set(services)
    mounts = [volume.split(":")[0] for volume in services["mosquitto"]["volumes"]]
    assert "./config/mosquitto.conf" in mounts
    for mount in mounts:
        if mount.startswith("./"):
            assert (ROOT / mount).exists(), mount
    daemons = [services["meterflow-1"], services["meterflow-2"]]
    for number, daemon in enumerate(daemons, start=1):
        environment = daemon["environment"]
        assert environment["METERFLOW_MQTT__URL"] == "mqtt://mosquitto:1883"
        assert environment["METERFLOW_MQTT__SHARED_GROUP"] == "meterflow"
        assert environment["METERFLOW_STORAGE__URL"].startswith("postgresql+asyncpg://")
        assert daemon["command"] == ["run", "--instance", str(number)]
    assert services["simulator"]["profiles"] == ["simulator"]
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
