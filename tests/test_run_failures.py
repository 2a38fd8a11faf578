"""How `meterflow run` ends when the database fails under it: one line, a documented code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterflow.cli.common import EXIT_DATABASE_FAILED
from meterflow.publisher import Publisher
from partitions import Month
from tests.databases import PostgresDatabase, count_readings
from tests.helpers import payload, recent, wait_until
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

REFUSE = """
CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'partition % is read-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER refuse_writes BEFORE INSERT ON {partition}
    FOR EACH ROW EXECUTE FUNCTION refuse_writes();
"""


async def test_a_partition_made_unwritable_under_a_running_daemon_ends_run_with_one_line(
    broker: Mosquitto,
    postgres: PostgresDatabase,
    publisher: Publisher,
    prefix: str,
    tmp_path: Path,
) -> None:
    """A refusal no retry mends stops `run` with exit code 3 and one line, no traceback;
    the refused reading stays with the broker and is stored once the database is mended."""
    topic = f"{prefix}/smart_meter/m-1/telemetry"
    partition = Month.of(datetime.now(UTC)).table_name
    daemon = DaemonProcess(broker.url, postgres.url, prefix, tmp_path / "daemon.log")
    with daemon:
        publisher.publish(topic, payload("m-1", recent(60)))
        await wait_until(lambda: count_readings(postgres) == 1, what="the first reading")
        postgres.execute(REFUSE.format(partition=partition))
        publisher.publish(topic, payload("m-1", recent(30)))
        code = await asyncio.to_thread(daemon.wait, 60)
        log = daemon.log()
        assert code == EXIT_DATABASE_FAILED, log
        assert "Traceback" not in log
        errors = [line for line in log.splitlines() if line.startswith("Error:")]
        assert errors == [
            f"Error: stopped: a batch could not be stored: partition {partition} is read-only. "
            "Nothing is lost: the broker keeps the unacknowledged messages until meterflow "
            "runs again."
        ]
        postgres.execute("DROP TRIGGER refuse_writes ON " + partition)
        daemon.start()
        await wait_until(lambda: count_readings(postgres) == 2, what="the refused reading")
