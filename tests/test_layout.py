"""The layout keeps its promises: layers import downwards only, and commands that ingest
nothing load no MQTT code (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each top-level package may import of the others: data moves one way.
MAY_IMPORT = {
    "partitions": set(),
    "storage": {"partitions"},
    "ingest": {"storage", "partitions"},
    "meterflow": {"ingest", "storage", "partitions"},
}
MQTT_MODULES = ("paho", "aiomqtt", "ingest.source", "ingest.pipeline")


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports, wherever in the module the import stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(package: str) -> None:
    """storage never imports ingest, nothing imports meterflow, partitions stands alone."""
    forbidden = set(MAY_IMPORT) - MAY_IMPORT[package] - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & forbidden)
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_packages(path) & forbidden
    }
    assert offenders == {}


def modules_after(*arguments: str) -> set[str]:
    """The modules loaded by the time `meterflow ARGUMENTS` has run, in a fresh interpreter."""
    script = (
        "import json, sys\n"
        "from meterflow.cli import main\n"
        f"main({list(arguments)!r}, standalone_mode=False)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return set(loaded)


def mqtt_code(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(MQTT_MODULES))


@pytest.mark.parametrize(
    "command",
    [
        ("partitions", "list"),
        ("devices", "list"),
        ("db", "check"),
        ("query", "devices-daily", "--device", "m-1"),
    ],
)
def test_a_command_that_ingests_nothing_loads_no_mqtt_code(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """Neither paho, aiomqtt, the source nor the pipeline: only `run` and `simulate` need them."""
    url = f"sqlite:///{tmp_path / 'meterflow.db'}"
    subprocess.run(
        [sys.executable, "-m", "meterflow", "db", "upgrade", "--db", url], check=True, cwd=ROOT
    )
    loaded = modules_after(*command, "--db", url)
    assert f"meterflow.cli.{command[0]}" in loaded
    assert mqtt_code(loaded) == []


def test_importing_ingest_loads_no_mqtt_code() -> None:
    """`import ingest` (as the settings do) leaves the source and the pipeline unloaded."""
    script = "import json, sys, ingest; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert mqtt_code(set(json.loads(done.stdout))) == []
