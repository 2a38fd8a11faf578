"""meterflow, the application: the `meterflow` command, its settings, logging, the daemon
that runs the ingest pipeline, and its health and metrics endpoints.

It sits above the three packages that do the work and wires them together: `ingest`
(MQTT to batches), `storage` (the writer, the registry, queries) and `partitions`
(monthly tables). None of them imports it (docs/architecture.md).
"""

from meterflow.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
