"""`meterflow run`: the ingest daemon in the foreground."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click
import structlog

from ingest.errors import ConfigError
from meterflow.cli.common import broker_option, complete, config_option, db_option, settings_for
from meterflow.daemon import Daemon
from meterflow.logs import configure_logging
from meterflow.settings import Settings


@click.command()
@config_option
@broker_option
@db_option
@click.option(
    "--instance",
    type=click.IntRange(min=1),
    help="Number of this daemon among several; its MQTT client id gets -N appended.",
)
@click.option(
    "--decoders",
    help="Comma-separated decoders to switch on, e.g. canonical,tasmota,shelly,zigbee2mqtt.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics, /healthz and /readyz on this port (metrics.port).",
)
def run(
    config_file: Path | None,
    broker: str | None,
    db: str | None,
    instance: int | None,
    decoders: str | None,
    metrics_port: int | None,
) -> None:
    """Run the ingest daemon until SIGTERM or SIGINT."""
    enabled = None if decoders is None else [d.strip() for d in decoders.split(",") if d.strip()]
    settings = settings_for(
        config_file,
        **{
            "mqtt.url": broker,
            "storage.url": db,
            "metrics.port": metrics_port,
            "decoders.enabled": enabled,
        },
    )
    if instance is not None:
        mqtt = settings.mqtt.model_copy(
            update={"client_id": f"{settings.mqtt.client_id}-{instance}"}
        )
        settings = settings.model_copy(update={"mqtt": mqtt})
    configure_logging(settings.log.level, settings.log.format)
    tune_interpreter()
    complete(_run(settings), event_loop(settings.ingest.event_loop, settings.mqtt.client))


def event_loop(
    choice: str, receive_path: str = "meterflow"
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory `ingest.event_loop` asks for; None for asyncio's own.

    The aiomqtt receive path stays on asyncio's loop: under uvloop, paho's socket
    handling missed a broker restart and the daemon never reconnected (the broker-restart
    test caught it).
    """
    if receive_path == "aiomqtt":
        if choice == "uvloop":
            raise ConfigError(
                "ingest.event_loop = 'uvloop' does not work with mqtt.client = 'aiomqtt'"
            )
        return None
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415  (an optional extra)
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(
                "ingest.event_loop = 'uvloop' needs uvloop: pip install 'meterflow[uvloop]'"
            ) from exc
        return None
    return uvloop.new_event_loop


def tune_interpreter() -> None:
    """Keep the cyclic garbage collector out of the hot path, and hand the GIL over sooner
    (docs/performance.md).

    Every message allocates a few containers, so with the default threshold of 700 a
    collection ran every hundred messages, and each full one walked the hundreds of
    thousands of objects that imports leave behind, holding the GIL long enough to stall
    the SQLite thread for tens of milliseconds. Those objects live as long as the process:
    freeze them out of every collection. Messages make no reference cycles, so collecting
    young objects 15 times less often costs little memory.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    # The SQLite thread takes the GIL back after every statement; while the event loop
    # runs Python, it gets it only when the loop is made to yield, after the switch
    # interval: at 1 ms rather than the default 5, commits wait far less for it
    # (docs/performance.md has the figures).
    sys.setswitchinterval(0.001)


async def _run(settings: Settings) -> None:
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    structlog.get_logger("meterflow").info(
        "starting",
        database=settings.storage.url,
        broker=settings.mqtt.url,
        event_loop=type(loop).__module__.partition(".")[0],
    )
    await daemon.run()
