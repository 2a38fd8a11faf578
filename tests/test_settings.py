"""Settings layer TOML, then environment, then flags; bad settings are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.errors import ConfigError
from ingest.settings import MqttSettings
from ingest.source import MqttSource, open_source
from ingest.source.aiomqtt import AiomqttSource
from meterflow.cli import main
from meterflow.cli.run import event_loop
from meterflow.settings import load_settings

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "meterflow.toml"


def test_shipped_example_config_loads_with_the_defaults() -> None:
    """config/meterflow.toml is valid and documents the defaults, not other values."""
    assert load_settings(SHIPPED).model_dump() == load_settings(None).model_dump()


def test_environment_overrides_file_and_flags_override_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag beats METERFLOW_* which beats the TOML file; untouched keys keep the file's."""
    config = tmp_path / "meterflow.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtt://file:1"\nclient_id = "from-file"\n[batch]\nmax_messages = 10\n'
    )
    monkeypatch.setenv("METERFLOW_MQTT__URL", "mqtt://env:2")
    monkeypatch.setenv("METERFLOW_BATCH__MAX_MESSAGES", "20")
    settings = load_settings(config, **{"mqtt.url": "mqtt://flag:3"})
    assert settings.mqtt.url == "mqtt://flag:3"
    assert settings.mqtt.client_id == "from-file"
    assert settings.batch.max_messages == 20
    assert (settings.mqtt.host, settings.mqtt.port) == ("flag", 3)


def test_batch_max_rows_is_still_read_as_the_old_name_of_max_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file or environment written for an earlier meterflow keeps its batch size."""
    config = tmp_path / "meterflow.toml"
    config.write_text("[batch]\nmax_rows = 10\n")
    assert load_settings(config).batch.max_messages == 10
    monkeypatch.setenv("METERFLOW_BATCH__MAX_ROWS", "20")
    assert load_settings(None).batch.max_messages == 20
    with pytest.raises(ConfigError, match=r"max_rows is the old name of batch\.max_messages"):
        load_settings(None, **{"batch.max_messages": 30})


def test_window_must_exceed_batch_size() -> None:
    """A Receive Maximum no larger than a batch would let batches never fill: refused."""
    with pytest.raises(ConfigError, match=r"receive_maximum \(100\) must exceed"):
        load_settings(None, **{"mqtt.receive_maximum": 100, "batch.max_rows": 100})


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    """A typo in the config file is an error, not a silently ignored setting."""
    config = tmp_path / "meterflow.toml"
    config.write_text("[mqtt]\nulr = 'mqtt://x:1'\n")
    with pytest.raises(ConfigError, match="ulr"):
        load_settings(config)


def test_config_show_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """`meterflow config show` prints effective settings and never the broker password."""
    monkeypatch.setenv("METERFLOW_MQTT__PASSWORD", "hunter2")
    result = CliRunner().invoke(main, ["config", "show", "--db", "sqlite:///x.db"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    shown = json.loads(result.output)
    assert shown["mqtt"]["password"] == "**********"
    assert shown["storage"]["url"] == "sqlite:///x.db"


def test_mqtt_client_chooses_the_receive_path() -> None:
    """Our own subscriber by default; aiomqtt when mqtt.client says so."""
    subscriptions = ["meterflow/+/+/telemetry"]
    assert isinstance(open_source(MqttSettings(), subscriptions), MqttSource)
    chosen = open_source(MqttSettings(client="aiomqtt"), subscriptions)
    assert isinstance(chosen, AiomqttSource)


def test_ingest_event_loop_takes_uvloop_when_installed_unless_told_otherwise() -> None:
    """'auto' and 'uvloop' give uvloop's loop (the dev extra installs it); 'asyncio' none."""
    uvloop = pytest.importorskip("uvloop")
    assert event_loop("auto") is uvloop.new_event_loop
    assert event_loop("uvloop") is uvloop.new_event_loop
    assert event_loop("asyncio") is None


def test_the_aiomqtt_receive_path_keeps_asyncios_loop() -> None:
    """Under uvloop, paho missed a broker restart: aiomqtt runs on asyncio's loop."""
    assert event_loop("auto", "aiomqtt") is None
    with pytest.raises(ConfigError, match=r"does not work with mqtt\.client = 'aiomqtt'"):
        event_loop("uvloop", "aiomqtt")
