"""`meterflow devices`: operators register, import, list and flag devices, on both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from meterflow.cli.output import ago
from tests.cli import meterflow
from tests.databases import Database


def test_ago_says_how_long_ago_in_the_largest_whole_unit() -> None:
    """Seconds, minutes, hours, days: the largest unit that fits, rounded down."""
    assert ago(timedelta(seconds=42)) == "42 s ago"
    assert ago(timedelta(minutes=3, seconds=59)) == "3 min ago"
    assert ago(timedelta(hours=5)) == "5 h ago"
    assert ago(timedelta(days=2, hours=23)) == "2 d ago"
    assert ago(timedelta(seconds=-5)) == "in the future"


def test_devices_registered_and_imported_ahead_of_time_are_listed(
    database: Database, tmp_path: Path
) -> None:
    """register + import fill an empty database's registry; list shows them in id order."""
    registered = meterflow(
        "devices", "register", "m-1", "--type", "smart_meter", "--user", "u-1",
        "--name", "Kitchen meter", "--db", database.url,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    devices_csv = tmp_path / "devices.csv"
    devices_csv.write_text(
        "device_id,device_type,user_id,name,location\n"
        "pv-1,solar_panel,u-1,Roof,Berlin\n"
        "m-2,smart_meter,u-2,,\n"
    )
    imported = meterflow("devices", "import", str(devices_csv), "--db", database.url)
    assert imported.output == "imported 2 devices\n"

    table = meterflow("devices", "list", "--db", database.url).output.splitlines()
    assert table[0].split() == [
        "device_id", "type", "status", "last_seen", "battery_%", "user_id", "name", "location",
    ]  # fmt: skip
    assert [line.split()[0] for line in table[1:]] == ["m-1", "m-2", "pv-1"]
    assert table[1].split()[:4] == ["m-1", "smart_meter", "active", "never"]
    listed = json.loads(meterflow("devices", "list", "--format", "json", "--user", "u-1",
                                  "--db", database.url).output)  # fmt: skip
    assert [(d["device_id"], d["name"], d["location"]) for d in listed] == [
        ("m-1", "Kitchen meter", None),
        ("pv-1", "Roof", "Berlin"),
    ]


def test_an_import_with_an_invalid_row_imports_nothing_and_names_the_lines(
    database: Database, tmp_path: Path
) -> None:
    """One bad row (unknown type, empty id, duplicate) and the whole file is refused."""
    devices_csv = tmp_path / "devices.csv"
    devices_csv.write_text(
        "device_id,device_type\nm-1,smart_meter\nt-1,toaster\n,smart_meter\nm-1,smart_meter\n"
    )
    result = meterflow("devices", "import", str(devices_csv), "--db", database.url)
    assert result.exit_code == 1
    assert "line 3: device_type 'toaster' is not one of smart_meter, solar_panel" in result.stderr
    assert "line 4: device id is empty" in result.stderr
    assert "line 5: device 'm-1' appears twice" in result.stderr
    listed = meterflow("devices", "list", "--format", "json", "--db", database.url)
    assert json.loads(listed.output) == []


def test_set_status_changes_existing_devices_and_names_the_unknown_ones(
    database: Database,
) -> None:
    """set-status maintenance on a known and an unknown id: one changed, one reported."""
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", database.url)
    result = meterflow("devices", "set-status", "maintenance", "m-1", "ghost", "--db", database.url)
    assert result.exit_code == 1
    assert "maintenance: m-1" in result.output
    assert "no such devices: ghost" in result.stderr
    shown = meterflow("devices", "show", "m-1", "--db", database.url).output
    assert "status            maintenance" in shown


def test_low_battery_lists_only_devices_below_the_threshold(database: Database) -> None:
    """--low-battery filters on devices.low_battery_pct (default 20 %)."""
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", database.url)
    meterflow("devices", "register", "m-2", "--type", "smart_meter", "--db", database.url)
    database.execute("UPDATE iot_devices SET battery_level = 12.5 WHERE device_id = 'm-1'")
    database.execute("UPDATE iot_devices SET battery_level = 80 WHERE device_id = 'm-2'")
    listed = meterflow("devices", "list", "--low-battery", "--format", "csv", "--db", database.url)
    assert listed.output.splitlines()[1:] == ["m-1,smart_meter,active,,12.5,,,"]
