"""The daemon's Prometheus metrics, read from its counters when scraped.

A custom collector instead of prometheus_client's Counter objects: the hot path already
keeps plain counters (`Stats`), and reading them at scrape time costs the path nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ingest.stats import Histogram, Stats
from meterflow.health import Health
from meterflow.upkeep import Facts
from storage import RejectKind
from storage.registry import DeviceStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DaemonCollector(Collector):
    def __init__(
        self, stats: Stats, health: Callable[[], Health], facts: Callable[[], Facts]
    ) -> None:
        self._stats = stats
        self._health = health
        self._facts = facts

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        yield _counter("messages_received", "MQTT messages received", stats.received)
        yield _counter("readings_stored", "Readings committed to the database", stats.stored)
        yield _counter(
            "readings_duplicate",
            "Readings already stored (redeliveries, repeated sends), ignored",
            stats.duplicates,
        )
        yield _counter(
            "status_messages", "Device status (online/offline) messages applied", stats.statuses
        )
        yield _counter(
            "readings_implausible",
            "Readings whose counter gave more energy than the device's maximum power allows, "
            "stored with quality implausible and added to no total",
            stats.implausible,
        )
        yield _counter(
            "messages_ignored",
            "Messages with nothing to store (heartbeats, relay states, unmapped values)",
            stats.ignored,
        )
        rejected = CounterMetricFamily(
            "meterflow_messages_rejected",
            "Messages stored as dead letters, by reason",
            labels=["reason"],
        )
        for kind in get_args(RejectKind):
            rejected.add_metric([kind], stats.rejected[kind])
        yield rejected
        yield _counter("reconnects", "Connections to the broker lost and retried", stats.reconnects)
        yield _histogram("batch_rows", "Messages per committed batch", stats.batch_rows)
        yield _histogram(
            "commit_seconds", "Time to store and commit one batch", stats.commit_seconds
        )
        yield _histogram(
            "lag_seconds",
            "End-to-end lag at commit: commit time minus the reading's own time",
            stats.lag_seconds,
        )
        yield from self._health_metrics()
        yield from self._fact_metrics()

    def _health_metrics(self) -> Iterator[Metric]:
        health = self._health()
        yield _gauge("connected", "1 while connected to the broker", health.connected)
        yield _gauge("ready", "1 while /readyz reports ready", health.ready)
        yield _gauge("in_flight", "Messages received and not yet acknowledged", health.in_flight)
        yield _gauge("queue_depth", "Messages waiting for the writer", health.pending)
        if health.last_commit_age_s is not None:
            yield _gauge(
                "last_commit_age_seconds",
                "Seconds since the last batch committed",
                health.last_commit_age_s,
            )

    def _fact_metrics(self) -> Iterator[Metric]:
        facts = self._facts()
        if not facts.checked:
            return
        yield _gauge("partitions", "Monthly partitions in the live database", facts.partitions)
        devices = GaugeMetricFamily(
            "meterflow_devices", "Registered devices, by status", labels=["status"]
        )
        for status in get_args(DeviceStatus):
            devices.add_metric([status], facts.devices.get(status, 0))
        yield devices
        yield _gauge(
            "devices_low_battery",
            "Devices whose battery is below devices.low_battery_pct",
            facts.low_battery,
        )
        yield _gauge(
            "default_partition_rows",
            "Readings in a PostgreSQL DEFAULT partition (fix: meterflow partitions repair)",
            facts.stray_rows,
        )
        yield _counter("devices_went_inactive", "Devices that turned inactive", facts.went_inactive)
        yield _counter(
            "devices_came_back", "Inactive devices that turned active again", facts.came_back
        )


def metrics_registry(collector: Collector) -> CollectorRegistry:
    """A registry of its own: two daemons in one process (tests) must not share one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"meterflow_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"meterflow_{name}", documentation, value=value)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = [
        ("+Inf" if bound == float("inf") else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]
    return HistogramMetricFamily(
        f"meterflow_{name}", documentation, buckets=buckets, sum_value=histogram.total
    )
