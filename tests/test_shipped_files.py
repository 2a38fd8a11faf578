"""The files meterflow ships for operators stay consistent with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ingest.stats import Stats
from meterflow.health import Health
from meterflow.metrics import DaemonCollector, exposition, metrics_registry
from meterflow.upkeep import Facts

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


def _exported_metric_names() -> set[str]:
    """Every sample name the daemon's /metrics can show, from the real collector."""
    collector = DaemonCollector(
        Stats(),
        lambda: Health(True, True, False, 0, 0, 1.0),
        lambda: Facts(checked=True),
    )
    registry = metrics_registry(collector)
    text = exposition(registry).decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_the_grafana_dashboard_charts_only_metrics_the_daemon_exports() -> None:
    """Every meterflow_* series a panel queries exists; panels answer the operator's questions."""
    dashboard = json.loads((ROOT / "config" / "grafana" / "meterflow-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"meterflow_\w+", expr)}
    assert used, "the dashboard queries no meterflow metric"
    assert used <= _exported_metric_names()
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("ingest rate", "rejected", "lag", "devices online", "battery low"):
        assert topic in titles


def test_compose_monitoring_profile_scrapes_both_daemons_into_grafana() -> None:
    """Prometheus and Grafana run under the monitoring profile; daemons expose :9464."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    for daemon in ("meterflow-1", "meterflow-2"):
        assert services[daemon]["environment"]["METERFLOW_METRICS__PORT"] == "9464"
    prometheus = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["meterflow-1:9464", "meterflow-2:9464"]
